"""Section 1: the distro and configurator opentelemetry-instrument will choose."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from clstock_otel_distro.doctor._common import (
    _OTEL_PYTHON_CONFIGURATOR,
    _OTEL_PYTHON_DISTRO,
    _OUR_PACKAGE,
    _attribute,
    _entry_points,
    _environ,
    _error,
    _quietly_load,
)
from clstock_otel_distro.doctor.findings import Section

# --------------------------------------------------------------------------- 1. selection


@dataclass
class _Selection:
    distro: Any = None  # the BaseDistro instance opentelemetry-instrument would configure
    ours_distro: bool = False
    # What the distro's configure() changed, and the values it found there before.
    distro_defaults: dict[str, str] = field(default_factory=dict)
    replaced: dict[str, str] = field(default_factory=dict)
    ours_configurator: bool = False


def _choose_distro(section: Section, selection: _Selection) -> None:
    from opentelemetry.instrumentation.distro import BaseDistro

    from clstock_otel_distro.distro import ClStockDistro

    entry_points = _entry_points("opentelemetry_distro")
    requested = os.environ.get(_OTEL_PYTHON_DISTRO)  # read raw, as _load_distro does
    order = ", ".join(ep.name for ep in entry_points) or "none"
    how = (
        f"{_OTEL_PYTHON_DISTRO}={requested!r} picks by name"
        if requested is not None
        else f"{_OTEL_PYTHON_DISTRO} unset: the first one wins"
    )
    context = f"entry points in order: {order}; {how}"
    advice = f"set {_OTEL_PYTHON_DISTRO}=clstock {_OTEL_PYTHON_CONFIGURATOR}=clstock"
    if not any(ep.value.startswith(_OUR_PACKAGE) for ep in entry_points):
        section.problem(
            "distro",
            f"clstock-otel-distro's opentelemetry_distro entry point is not installed "
            f"in this environment ({context})",
            "pip install clstock-otel-distro into the environment ClStock runs in",
        )
    for entry_point in entry_points:
        if requested is not None and requested != entry_point.name:
            continue
        try:
            distro = _quietly_load(entry_point)()
        except Exception as exc:
            section.problem(
                "distro",
                f"{entry_point.value} cannot be loaded ({_error(exc)}): "
                "opentelemetry-instrument would give up on all instrumentation",
                advice,
            )
            return
        if not isinstance(distro, BaseDistro):
            section.info("distro", f"{entry_point.value} is not a distro: skipped")
            continue
        label = f"{entry_point.name} -> {entry_point.value}"
        selection.distro = distro
        if isinstance(distro, ClStockDistro):
            selection.ours_distro = True
            section.ok("distro", f"{label} ({context})")
        else:
            section.problem(
                "distro",
                f"{label} wins, not ClStockDistro: ClStock's defaults are not applied ({context})",
                advice,
            )
        return
    section.problem(
        "distro",
        f"no entry point matches, so opentelemetry-instrument uses its DefaultDistro "
        f"and ClStock's defaults are not applied ({context})",
        advice,
    )


def _apply_distro(section: Section, selection: _Selection) -> None:
    """Record what the chosen distro's ``configure()`` adds to the environment.

    opentelemetry-instrument calls it before the configurator and the instrumentors
    run, and a distro's job there is to set environment defaults (ours, and
    upstream's, only ``os.environ.setdefault``). It runs here in a scratch
    environment, restored afterwards; the configurator and everything after it are
    then checked with those defaults in place, as they would see them.
    """
    from clstock_otel_distro import distro as distro_module

    if selection.distro is None:
        return
    before = dict(os.environ)
    # ClStockDistro's "ran" flag belongs to the start-up check: leave it as it was.
    with _environ(), _attribute(distro_module, "_distro_ran", distro_module._distro_ran):
        try:
            selection.distro.configure()
        except Exception as exc:
            section.problem(
                "distro",
                f"{type(selection.distro).__name__}.configure() fails ({_error(exc)}): "
                "opentelemetry-instrument would give up on all instrumentation",
            )
        after = dict(os.environ)
    selection.distro_defaults = {
        name: value for name, value in after.items() if before.get(name) != value
    }
    # ClStockDistro also replaces a bad value of a variable it gives a default to.
    selection.replaced = {
        name: before[name]
        for name in selection.distro_defaults
        if name in before and before[name].strip()
    }


def _choose_configurator(section: Section, selection: _Selection) -> None:
    from clstock_otel_distro.configurator import ClStockConfigurator

    entry_points = _entry_points("opentelemetry_configurator")
    requested = os.environ.get(_OTEL_PYTHON_CONFIGURATOR)
    order = ", ".join(ep.name for ep in entry_points) or "none"
    if requested is None:
        how = f"{_OTEL_PYTHON_CONFIGURATOR} unset: the first one wins"
    else:
        source = (
            f"{type(selection.distro).__name__}'s default"
            if _OTEL_PYTHON_CONFIGURATOR in selection.distro_defaults
            else "set"
        )
        how = f"{_OTEL_PYTHON_CONFIGURATOR}={requested!r} ({source}) picks by name"
    context = f"entry points in order: {order}; {how}"
    advice = f"set {_OTEL_PYTHON_CONFIGURATOR}=clstock"
    for entry_point in entry_points:
        if requested is not None and requested != entry_point.name:
            continue
        label = f"{entry_point.name} -> {entry_point.value}"
        try:
            configurator = _quietly_load(entry_point)
        except Exception as exc:
            section.problem(
                "configurator",
                f"{label} cannot be loaded ({_error(exc)}): opentelemetry-instrument would "
                "give up on all instrumentation",
                advice,
            )
            return
        if isinstance(configurator, type) and issubclass(configurator, ClStockConfigurator):
            selection.ours_configurator = True
            section.ok("configurator", f"{label} ({context})")
        else:
            section.problem(
                "configurator",
                f"{label} wins, not ClStockConfigurator: the SDK is built without ClStock's "
                f"resource and configuration checks ({context})",
                advice,
            )
        return
    section.problem(
        "configurator",
        f"no configurator runs, so no SDK is set up and nothing is exported ({context})",
        advice,
    )

