"""ClStockDistro: the ``opentelemetry_distro`` entry point named ``clstock``.

``opentelemetry-instrument`` picks it (``_load_distro``) and calls ``_configure``
before any configurator runs. It only sets defaults for standard variables, so a
value the operator set always wins; the SDK wiring lives in
:mod:`clstock_otel_distro.configurator`.

A default applies when the variable is unset or empty (the spec treats an empty
value as unset; ``os.environ.setdefault`` alone would leave ``OTEL_TRACES_EXPORTER=``
meaning "no exporter"). A variable given a default here whose value is bad, and
which nothing else checks before it is used, logs one warning naming it and the
value and gets the default instead: it is the value the operator gets when the
variable is unset, so it is the documented fallback.

The few variables read before the configurator could check them are checked here
too, the same way: the span and log record limits (importing the SDK's trace module
parses one, and raises on a bad value), the resource detectors (importing its logs
module builds a resource), the configurator's name, and our curl_cffi URL patterns.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from types import ModuleType
from typing import Any

from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.instrumentation.logging.environment_variables import (
    OTEL_PYTHON_LOG_CORRELATION,
)
from opentelemetry.metrics import NoOpMeterProvider, get_meter_provider
from opentelemetry.sdk.environment_variables import (
    OTEL_ATTRIBUTE_COUNT_LIMIT,
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
    OTEL_EXPERIMENTAL_RESOURCE_DETECTORS,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
    OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
    OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_EVENT_COUNT_LIMIT,
    OTEL_SPAN_LINK_COUNT_LIMIT,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.util._importlib_metadata import EntryPoint, entry_points

from clstock_otel_distro import config as _config
from clstock_otel_distro import instrumentation_policy
from clstock_otel_distro import runtime_metrics as _runtime_metrics
from clstock_otel_distro._logging import install_stderr_fallback
from clstock_otel_distro.environment_variables import (
    OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS,
    OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS,
)
from clstock_otel_distro.patches import (
    asgi_server_path,
    fastapi_native_telemetry,
    fastapi_route_cache,
    registry,
    uvicorn_gc_freeze,
    uvicorn_unresolved_targets,
)
from clstock_otel_distro.patches._hooks import when_imported

__all__ = [
    "DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "DEFAULT_SANITIZE_FIELDS",
    "DEFAULT_SEMCONV_STABILITY_OPT_IN",
    "ClStockDistro",
    "distro_ran",
]

_logger = logging.getLogger(__name__)
install_stderr_fallback()

# Upstream keeps these names in private modules (opentelemetry.instrumentation._semconv,
# opentelemetry.util.http).
OTEL_SEMCONV_STABILITY_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS = (
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
)

DEFAULT_SEMCONV_STABILITY_OPT_IN = "http,database"
DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT = 4096
# Regular expressions, searched case-insensitively in header names.
DEFAULT_SANITIZE_FIELDS = (
    "authorization,proxy-authorization,cookie,set-cookie,x-api-key,api-key,apikey,"
    ".*token.*,.*secret.*,.*session.*,.*password.*,.*credential.*"
)

_MAX_LIMIT = 2**31 - 1
_LIMIT_VARIABLES = (
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT,
    OTEL_SPAN_EVENT_COUNT_LIMIT,
    OTEL_SPAN_LINK_COUNT_LIMIT,
    OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
    OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
    OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT,
    OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT,
)

# The stability opt-in values the instrumentations know (upstream's _StabilityMode).
_SEMCONV_OPT_IN_VALUES = ("http", "http/dup", "database", "database/dup",
                          "gen_ai_latest_experimental")

# Set by ClStockDistro._configure; read by the post-instrument start-up check to
# tell whether another distro won the entry-point lookup.
_distro_ran = False


def distro_ran() -> bool:
    """Whether ClStockDistro configured this process."""
    return _distro_ran


def _setdefault(name: str, value: object) -> str:
    """``os.environ.setdefault`` for which an empty value counts as unset, as in the spec."""
    if _config.env_str(name) is None:
        os.environ[name] = str(value)
    return os.environ[name]


def _default_int(name: str, value: int, *, minimum: int, maximum: int) -> int:
    """Set an integer default; a bad value warns once and is replaced by the default."""
    number = _config.env_int(name, None, minimum=minimum, maximum=maximum,
                             fallback=f"the default {value}")
    if number is None:
        os.environ[name] = str(value)
        return value
    return number


def _default_choice(name: str, value: str, choices: list[str]) -> None:
    """Set a default among ``choices``; a bad value warns once and is replaced by it.

    The value is written back as the choice spells it: upstream compares exactly.
    """
    choice = _config.env_choice(name, None, choices, fallback=f"the default {value!r}")
    os.environ[name] = value if choice is None else choice


def _default_bool(name: str, value: bool) -> None:
    """Set a boolean default; a bad value warns once and is replaced by it.

    Written back as ``true``/``false``: upstream takes anything but "true" as false.
    """
    # Different answers for opposite defaults: unset, empty or not a boolean.
    if _config.env_bool(name, value) != _config.env_bool(name, not value):
        os.environ[name] = "true" if value else "false"
    else:
        os.environ[name] = "true" if _config.env_bool(name, value) else "false"


def _default_list(name: str, value: str | None, valid: Any, what: str) -> None:
    """A comma-separated default; bad entries are dropped with one warning (none left: default).

    With ``value`` None there is no default to set: a bad entry is only dropped, and
    when none is left the variable is removed.
    """
    raw = _config.env_str(name)
    if raw is None:
        if value is not None:
            os.environ[name] = value
        return
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    good = [entry for entry in entries if valid(entry)]
    if len(good) == len(entries):
        return
    bad = ", ".join(repr(entry) for entry in entries if entry not in good)
    fallback = ("the other entries" if good else
                "none" if value is None else f"the default {value!r}")
    _config.warn_invalid(name, raw, f"{what} {bad}", fallback)
    if good or value is not None:
        os.environ[name] = ",".join(good) if good else value
    else:
        del os.environ[name]


def _is_regex(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _check_limits() -> None:
    """The attribute value length default, and a check of every span and log record limit.

    Checked here because it cannot wait for the configurator: importing the SDK's
    trace module parses OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, and the SDK raises for
    anything but a non-negative integer or "unset" (no limit), which leaves the
    process untraced. A bad value warns once and is replaced: the attribute value
    length limit by our default, the others by nothing (the SDK's default).
    """
    for name in _LIMIT_VARIABLES:
        raw = _config.env_str(name)
        if raw is not None and raw.lower() == "unset":
            continue
        ours = DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT if name == OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT \
            else None
        fallback = "the default" if ours is None else f"the default {ours}"
        if _config.env_int(name, None, minimum=0, maximum=_MAX_LIMIT, fallback=fallback) is None:
            if ours is not None:
                os.environ[name] = str(ours)
            else:
                os.environ.pop(name, None)


def _default_batch_settings() -> None:
    """Our defaults for the span batch processor; a bad value warns once and gets it."""
    queue = None
    for setting in _config.SPAN_BATCH_SETTINGS:
        default = setting.default
        if setting.argument == "max_export_batch_size" and queue is not None:
            default = min(default, queue)
        value = _default_int(setting.name, default, minimum=setting.minimum,
                             maximum=setting.maximum)
        if setting.argument == "max_queue_size":
            queue = value


def _check_resource_detectors() -> None:
    """Drop the unknown names from OTEL_EXPERIMENTAL_RESOURCE_DETECTORS (one warning)."""
    raw = _config.env_str(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS)
    if raw is None:
        return
    available = {ep.name for ep in entry_points(group="opentelemetry_resource_detector")}
    kept = _config.resource_detectors(available)
    if kept != _config.env_list(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS):
        if kept:
            os.environ[OTEL_EXPERIMENTAL_RESOURCE_DETECTORS] = ",".join(kept)
        else:
            del os.environ[OTEL_EXPERIMENTAL_RESOURCE_DETECTORS]


def _exports_no_metrics() -> bool:
    """Whether the installed MeterProvider is the SDK's with no metric reader.

    Readers are given to an SDK MeterProvider when it is built, never later, so one
    without any exports nothing, ever.
    """
    provider = get_meter_provider()
    if not isinstance(provider, MeterProvider):
        return False
    # Private: SDK 1.45 keeps them on the provider, earlier ones in its _sdk_config.
    readers = getattr(provider, "_metric_readers", None)
    if readers is None:
        readers = getattr(getattr(provider, "_sdk_config", None), "metric_readers", None)
    return readers is not None and len(readers) == 0


class ClStockDistro(BaseDistro):
    """Sets ClStock's defaults for the standard OpenTelemetry variables."""

    def _configure(self, **kwargs: Any) -> None:
        global _distro_ran
        _distro_ran = True
        # Traces are the product: export them, to a collector or `clstock-otel collect`.
        _setdefault(OTEL_TRACES_EXPORTER, "otlp")
        # The span-derived and runtime metrics go the same way as the traces.
        _setdefault(OTEL_METRICS_EXPORTER, "otlp")
        # The spec's recommended default (the SDK alone picks grpc); it also keeps
        # grpc from being imported at start-up.
        _setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")
        # Pin our configurator when others are installed: _load_configurators
        # otherwise runs whichever entry point comes first, and runs none at all
        # for a name no configurator has (checked here, before it looks).
        configurators = sorted({ep.name for ep in entry_points(group="opentelemetry_configurator")})
        _default_choice(OTEL_PYTHON_CONFIGURATOR, "clstock", configurators)
        # Trace and span ids in every log record (the logging instrumentation's
        # record factory and format), so logs join their traces. Upstream reads
        # anything but "true" as false.
        _default_bool(OTEL_PYTHON_LOG_CORRELATION, True)
        # Stable HTTP semantic conventions (http.request.method, url.full, ...)
        # from the FastAPI/requests instrumentations, matching our own spans; and the
        # current database conventions (db.system.name, db.query.text) for whoever
        # turns database spans on (instrumentation_policy). Upstream ignores unknown
        # values, which means the old conventions.
        _default_list(OTEL_SEMCONV_STABILITY_OPT_IN, DEFAULT_SEMCONV_STABILITY_OPT_IN,
                      _SEMCONV_OPT_IN_VALUES.__contains__, "unknown value")

        # The span batch processor (config.SPAN_BATCH_SETTINGS): a queue of 8192 spans
        # (spec: 2048) rides out a collector restart or stall at the busiest rate measured
        # without dropping a span, and is bounded; the spec's 512 spans per export request
        # (never more than the queue holds: the SDK refuses that); an export every second
        # (spec: 5 s), so traces show up while one still looks for them and a process
        # killed without warning loses one second of spans, not five; a 10 s export
        # timeout (spec: 30 s), the OTLP exporters' own, so one stalled export does not
        # hold a full queue for 30 s.
        _default_batch_settings()

        # Attribute values are cut at 4096 characters (spec: unlimited). A huge query
        # string, request body or exception message must not make one span weigh
        # megabytes, nor a batch exceed what the collector accepts (4 MiB by default
        # for gRPC), which would cost the whole batch. The other limits are checked too.
        _check_limits()
        # Should an operator turn on HTTP header capture
        # (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*), credentials in those headers are
        # recorded as "[REDACTED]" (upstream's default masks nothing). A pattern that
        # is not a regular expression would fail every request (the FastAPI middleware
        # compiles the list when the app serves its first request).
        _default_list(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
                      DEFAULT_SANITIZE_FIELDS, _is_regex, "not a regular expression:")
        # No default here (the configurator adds process,os,host), only the check, which
        # cannot wait for the configurator: importing the SDK's logs module already
        # builds a resource, and the SDK logs a traceback for an unknown detector.
        _check_resource_detectors()
        # Only the well-formed entries of OTEL_RESOURCE_ATTRIBUTES, one warning for the
        # others: the SDK logs each malformed one, raw and without naming the variable,
        # whenever it builds a resource (first when the configurator is imported).
        _config.set_environ(_config.resource_attributes_fix())
        # No default (every URL is traced), only the check: the curl_cffi
        # instrumentation compiles these patterns and would fail to load on a bad one.
        _default_list(OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS, None, _is_regex,
                      "not a regular expression:")
        # Queued spans provoke full collections that walk the whole start-up heap:
        # freeze it once uvicorn has started.
        registry.install(uvicorn_gc_freeze.PATCH)
        # A configured target whose module the application never imports is never
        # patched, silently: said once uvicorn has started (same wrapper as above).
        registry.install(uvicorn_unresolved_targets.PATCH)
        # The FastAPI instrumentation matches every route again on each request to
        # name its span: remembered per path instead.
        registry.install(fastapi_route_cache.PATCH)
        # The ASGI middleware decodes every request header several times and sets
        # every attribute twice: served with each done once, same spans and metrics.
        registry.install(asgi_server_path.PATCH)
        # FastAPI asks on every request whether a provider is configured and walks the
        # middleware stack for the contrib middleware, then stands down and records
        # nothing: worked out once per built stack instead.
        registry.install(fastapi_native_telemetry.PATCH)

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        """Load and instrument one entry point; a failing instrumentor is skipped, not fatal.

        Upstream's ``_load_instrumentors`` re-raises any exception other than an
        import or dependency error, which ends the loop and leaves every later
        instrumentor unloaded. One broken instrumentation must not cost the others,
        so the failure is logged as one warning (traceback at debug) and skipped.
        """
        policy = instrumentation_policy.left_out(entry_point.name)
        if policy is not None:
            _logger.debug("Instrumentation %r left out: %s (%s=true loads it)",
                          entry_point.name, policy.why, policy.switch)
            return
        if entry_point.name == "fastapi" and not _config.switch(
            OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS
        ):
            # The ASGI middleware's internal "http send"/"http receive" spans, two or
            # three per request, carry no information a server span lacks and cost
            # about a third of the middleware's time: left out unless asked for.
            kwargs.setdefault("exclude_spans", ["receive", "send"])
        if "meter_provider" not in kwargs and _exports_no_metrics():
            # OTEL_METRICS_EXPORTER=none: the SDK still installs a MeterProvider, with
            # no reader, and every measurement still costs (bench/per_call.py) for nothing.
            kwargs["meter_provider"] = NoOpMeterProvider()
        library = instrumentation_policy.waits_for(entry_point.name)
        if library is not None:
            _logger.debug("Instrumentation %r waits for the application to import %s",
                          entry_point.name, library)
            when_imported(library, functools.partial(self._instrument_when_imported,
                                                     entry_point, kwargs),
                          f"the {entry_point.name} instrumentation")
            return
        self._instrument(entry_point, kwargs)

    def _instrument_when_imported(self, entry_point: EntryPoint, kwargs: dict[str, Any],
                                  module: ModuleType) -> None:
        try:
            self._instrument(entry_point, kwargs)
        except (DependencyConflictError, ModuleNotFoundError) as exc:
            _logger.debug("Instrumentation %r not loaded: %s", entry_point.name, exc)

    def _instrument(self, entry_point: EntryPoint, kwargs: dict[str, Any]) -> None:
        try:
            instrumentor = entry_point.load()
            if entry_point.name == _runtime_metrics.ENTRY_POINT_NAME:
                _runtime_metrics.instrument_runtime_metrics(instrumentor, **kwargs)
            else:
                instrumentor().instrument(**kwargs)
        except (DependencyConflictError, ModuleNotFoundError):
            # Upstream already treats these as "library not installed" and logs
            # them at debug before moving on; keep that quiet behaviour.
            raise
        except Exception as exc:
            _logger.warning(
                "Instrumentation %r failed and was skipped (%s: %s); the others still load",
                entry_point.name,
                type(exc).__name__,
                exc,
            )
            _logger.debug("Instrumentation %r failure", entry_point.name, exc_info=True)
