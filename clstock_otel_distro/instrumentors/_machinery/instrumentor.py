"""The instrumentor shape all five share: lazy patches installed, and undone, in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from clstock_otel_distro.config import env_str, env_targets
from clstock_otel_distro.instrumentors._machinery.drivers import traced
from clstock_otel_distro.instrumentors._machinery.patches import (
    ClassPatch,
    LazyPatch,
    install_all,
    uninstall_all,
)
from clstock_otel_distro.instrumentors._machinery.specs import TraceSpec
from clstock_otel_distro.instrumentors._machinery.telemetry import clstock_telemetry

APPLICATION_CODE: tuple[str, ...] = ()
"""The ``_instruments`` of an instrumentor of ClStock's own code: ClStock is an
application, not a pip distribution, so there is no library version to require."""


class PatchingInstrumentor(BaseInstrumentor):
    """An instrumentor made of lazy patches: ``_install`` returns them, and
    uninstrumenting undoes them (in reverse order, see ``patches.uninstall_all``)."""

    _patches: Sequence[LazyPatch] = ()

    def _install(self, **kwargs: Any) -> list[LazyPatch]:
        raise NotImplementedError

    def _instrument(self, **kwargs: Any) -> None:
        self._patches = self._install(**kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstall_all(self._patches)
        self._patches = []


def configured_targets(
    kwargs: Mapping[str, Any], variable: str, default: str
) -> tuple[list[tuple[str, str]], int]:
    """The ``(module, qualname)`` targets to patch, and the level to log a missing one at.

    ``targets=`` given to ``instrument()`` (``"module:Name"`` strings or pairs) wins;
    else ``variable`` (parsed, with one warning per bad entry), else ``default``. A
    missing class is a WARNING when the operator named it, DEBUG for a default target
    (the defaults cover several ClStock layouts; most are absent from any one).
    """
    given = kwargs.get("targets")
    if given is not None:
        pairs = [tuple(t.split(":", 1)) if isinstance(t, str) else tuple(t) for t in given]
        return [(module, name) for module, name in pairs], logging.WARNING
    targets = env_targets(variable, default)
    defaults = [tuple(entry.strip().split(":", 1)) for entry in default.split(",") if entry]
    return targets, logging.DEBUG if targets == defaults else logging.WARNING


def targets_origin(kwargs: Mapping[str, Any], variable: str) -> str:
    """Where :func:`configured_targets` took the targets from, as a warning names it."""
    if kwargs.get("targets") is not None:
        return "instrument(targets=...)"
    value = env_str(variable)
    return f"the default of {variable}" if value is None else f"{variable}={value!r}"


def trace_classes(instrumenting_module: str, kwargs: Mapping[str, Any],
                  specs: Mapping[str, TraceSpec], variable: str, default: str
                  ) -> list[LazyPatch]:
    """Trace the ``specs`` methods of the configured classes and all their subclasses.

    The classes come from ``targets=``, else ``variable``, else ``default`` (see
    :func:`configured_targets`); each is patched when its module is imported.
    """
    telemetry = clstock_telemetry(instrumenting_module, kwargs)
    methods = {name: traced(telemetry, spec) for name, spec in specs.items()}
    targets, missing_level = configured_targets(kwargs, variable, default)
    origin = targets_origin(kwargs, variable)
    return install_all(
        ClassPatch(module, qualname, methods, group=telemetry, missing_level=missing_level,
                   origin=origin)
        for module, qualname in targets)
