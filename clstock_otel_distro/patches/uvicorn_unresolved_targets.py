"""Once uvicorn has started, one warning per variable naming the targets never imported.

A target of ``OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS``, ``..._DATA_PROVIDER_TARGETS`` or
``..._TRACE_METHODS`` is patched when the application imports its module. A module
name that is wrong (``nonexistent.module:Nope``) is never imported, so nothing is
patched and nothing is logged: every span of that target is silently missing. The
distro cannot look earlier without importing the application's modules itself, so it
looks when uvicorn's ``Server.startup()`` returns (the application and everything it
imports at module level are loaded, no request has been served yet) and logs one
WARNING per variable naming its value and the targets whose module is still not
imported. A module imported later is still patched then. A default target absent
from this ClStock layout is reported at DEBUG only (the defaults cover several
layouts). A class missing from a module that is imported is reported by the
instrumentation itself, at import. Part of the configured targets, with no switch of
its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import ModuleType

from clstock_otel_distro.patches._uvicorn_startup import add_action, shape
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch", "report_never_imported"]

_logger = logging.getLogger(__name__)

_lock = threading.Lock()
_reported: set[tuple[str, str]] = set()  # (origin, target): each reported once per process


def report_never_imported(moment: str) -> None:
    """Log the watched targets whose module is not imported, grouped by where they were
    configured; ``moment`` says when the check ran."""
    from clstock_otel_distro.instrumentors._machinery.patches import never_imported

    by_origin: dict[str, list[tuple[str, str, int]]] = {}
    with _lock:
        for lazy in never_imported():
            key = (lazy.origin or "", lazy.configured_as())
            if key in _reported:
                continue
            _reported.add(key)
            by_origin.setdefault(key[0], []).append((key[1], lazy.module, lazy.missing_level))
    for origin, missing in by_origin.items():
        targets = list(dict.fromkeys(target for target, _, _ in missing))
        modules = list(dict.fromkeys(module for _, module, _ in missing))
        level = max(level for _, _, level in missing)
        _logger.log(level, "clstock-otel: %s: %s %s not traced: the application had not "
                    "imported %s %s (a module imported later is traced from then on)",
                    origin, ", ".join(targets), "is" if len(targets) == 1 else "are",
                    ", ".join(modules), moment)


def _on_started() -> None:
    report_never_imported("when uvicorn finished starting")


def patch(module: ModuleType) -> Callable[[], None]:
    """Check the configured targets each time uvicorn's ``Server.startup()`` returns."""
    return add_action(module, _on_started)


PATCH = UpstreamPatch(
    name="uvicorn-unresolved-targets",
    distribution="uvicorn",
    module="uvicorn.server",
    symbol="Server.startup",
    versions=">=0.29,<1",
    purpose="a warning naming the configured targets never imported, once uvicorn has started",
    shape=shape,
    apply=patch,
)
