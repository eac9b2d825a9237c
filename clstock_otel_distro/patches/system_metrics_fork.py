"""Runtime metrics read the forked worker's own process, not its parent's.

``SystemMetricsInstrumentor`` binds ``psutil.Process(os.getpid())`` to its private
``_proc`` when it is created, so a worker forked from a master that loaded the
instrumentations (gunicorn, with or without ``--preload``) would report the master's
CPU, memory and threads as its own. After each fork the child's instrumentor (a
singleton) gets the child's process. Part of the runtime metrics
(:mod:`clstock_otel_distro.runtime_metrics`): no switch of its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from types import ModuleType

from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_logger = logging.getLogger(__name__)

_CLASS = "SystemMetricsInstrumentor"
_ATTRIBUTE = "_proc"
# os.register_at_fork hooks cannot be removed: undo disarms ours instead.
_armed: dict[str, ModuleType | None] = {"module": None}
_registered = False


def _shape(module: ModuleType) -> str | None:
    instrumentor = getattr(module, _CLASS, None)
    init = getattr(instrumentor, "__init__", None)
    if _ATTRIBUTE not in getattr(getattr(init, "__code__", None), "co_names", ()):
        return f"{_CLASS}.__init__ no longer sets {_ATTRIBUTE}"
    if not hasattr(os, "register_at_fork"):
        return "this platform has no os.register_at_fork"
    return None


def _renew() -> None:
    module = _armed["module"]
    instrumentor = getattr(getattr(module, _CLASS, None), "_instance", None)
    if instrumentor is None or not hasattr(instrumentor, _ATTRIBUTE):
        return
    try:
        import psutil

        setattr(instrumentor, _ATTRIBUTE, psutil.Process(os.getpid()))
    except Exception as exc:  # never let a metric break a fork
        _logger.debug("Runtime metrics could not follow the fork: %s", exc)


def patch(module: ModuleType) -> Callable[[], None]:
    """Renew the instrumentor's process after every fork, in the child."""
    global _registered
    _armed["module"] = module
    if not _registered:
        os.register_at_fork(after_in_child=_renew)
        _registered = True
    return lambda: _armed.update(module=None)


PATCH = UpstreamPatch(
    name="system-metrics-fork", distribution="opentelemetry-instrumentation-system-metrics",
    versions=">=0.66b0,<0.67",
    module="opentelemetry.instrumentation.system_metrics", symbol=f"{_CLASS}.{_ATTRIBUTE}",
    purpose="runtime metrics of a forked worker read the worker's own process",
    shape=_shape, apply=patch, replaces_symbol=False,
)
