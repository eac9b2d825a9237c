"""Section 5: the effective configuration and every invalid value."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from clstock_otel_distro.doctor._common import (
    _OTEL_SDK_DISABLED,
    _OTEL_SERVICE_NAME,
    _display,
    _error,
)
from clstock_otel_distro.doctor.findings import Section
from clstock_otel_distro.doctor.selection import _Selection

# --------------------------------------------------------------------------- 5. configuration


def _check_configuration(section: Section, selection: _Selection) -> Any:
    """List the effective configuration; returns the configurator's plan (None if unavailable)."""
    from clstock_otel_distro import config as _config
    from clstock_otel_distro import configurator
    from clstock_otel_distro.environment_variables import (
        DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
        DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT,
        OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES,
        OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT,
    )
    from clstock_otel_distro.instrumentors._machinery.telemetry import CODE_DETAILS

    distro = type(selection.distro).__name__
    for name in sorted(n for n in os.environ if n.startswith("OTEL_")):
        if name in selection.replaced:
            source = f"{distro} default, replacing {_display(name, selection.replaced[name])}"
        elif name in selection.distro_defaults:
            source = f"{distro} default"
        else:
            source = "set"
        section.info(f"{name}={_display(name, os.environ[name])}", source)
    if not selection.ours_distro:
        section.info("defaults", "ClStockDistro does not run: its defaults are not applied")
    if not selection.ours_configurator:
        section.info(
            "validation",
            "another configurator runs; the values are checked as ClStockConfigurator would",
        )
    try:
        plan = configurator._plan({})
    except Exception as exc:
        section.problem(
            "configuration",
            f"could not be checked ({_error(exc)}); ClStockConfigurator would fall back "
            "to its defaults (OTLP over http/protobuf to localhost)",
        )
        plan = None
    if plan is not None and selection.ours_configurator:
        for name, value in sorted(plan.lasting_environ.items()):
            section.info(f"{name}={_display(name, value)}", "set by ClStockConfigurator")
        service = (plan.kwargs.get("resource_attributes") or {}).get("service.name")
        if service is not None:
            section.info(
                f"service.name={service!r}",
                f"ClStockConfigurator's default ({_OTEL_SERVICE_NAME} unset)",
            )
    if plan is not None:
        exporters = "; ".join(
            f"{signal}: {', '.join(sorted(found)) or 'none'}"
            for signal, found in plan.exporters.items()
        )
        if exporters:
            section.info("exporters", exporters)
        if plan.exporters and not plan.exporters.get("traces"):
            section.warning("traces", "no trace exporter is configured: spans go nowhere")
    if _config.env_bool(_OTEL_SDK_DISABLED, False):
        section.warning(
            _OTEL_SDK_DISABLED, "the SDK is disabled: nothing is traced or exported"
        )
    # Read later (at exit, by the configurator, by each instrumentor): checked here so
    # that a bad value is reported like the others.
    _config.env_int(
        OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT, DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT, minimum=0
    )
    _config.env_choice(OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES, DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
                       CODE_DETAILS)
    for switch in _config.SWITCHES:
        _config.switch(switch)
    _report_delivery(section)
    return plan


def _report_delivery(section: Section) -> None:
    """The retry bound and the spool, as the durable delivery will use them."""
    from clstock_otel_distro import config as _config
    from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT
    from clstock_otel_distro.sdk.delivery.settings import read_settings

    if not _config.switch(OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT):
        section.info("delivery", "off: a batch the collector cannot take is given up after "
                     "the exporter's timeout")
        return
    settings = read_settings()
    spool = (f"spooled to {settings.spool_dir} (at most {settings.spool_max_bytes} bytes)"
             if settings.spool_dir else "no spool (OTEL_PYTHON_CLSTOCK_SPOOL_DIR unset)")
    section.info("delivery", f"batches the collector cannot take are kept (at most "
                 f"{settings.buffer_bytes} bytes in memory) and retried every "
                 f"{settings.max_interval:g} s at most; {spool}")


def _check_excluded_urls(section: Section) -> None:
    # Each *_EXCLUDED_URLS list is compiled into one regular expression when its
    # instrumentation starts (opentelemetry.util.http.ExcludeList): a bad pattern
    # makes that instrumentation fail to load.
    # Variables the distro validates itself (falling back to no pattern) are reported
    # from its warning, once; the check here covers the other instrumentations' lists.
    already = {f.subject for f in section.findings}
    for name in sorted(n for n in os.environ if n.endswith("_EXCLUDED_URLS")):
        if f"invalid {name}" in already:
            continue
        patterns = [p.strip() for p in os.environ[name].split(",")] if os.environ[name] else []
        if not patterns:
            continue
        try:
            re.compile("|".join(patterns))
        except re.error as exc:
            section.problem(
                f"invalid {name}",
                f"{name}={_display(name, os.environ[name])} is not a valid regular expression "
                f"({exc}): that instrumentation would not load",
                "escape special characters (e.g. '\\.' for a dot)",
            )


def _report_invalid_values(section: Section, captured: list[logging.LogRecord]) -> None:
    for record in captured:
        message = record.getMessage()
        args = record.args if isinstance(record.args, tuple) else ()
        variable = args[0] if args and isinstance(args[0], str) else "value"
        section.problem(
            f"invalid {variable}", message, "fix the value (the fallback above applies meanwhile)"
        )

