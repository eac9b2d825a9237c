"""Patches applied to a module when it is imported: once each, never in the way.

The distro's patches of other libraries (uvicorn's start-up and signal capture, the
FastAPI instrumentation's route lookup, the OTLP span encoder) wait for their module
with a wrapt post-import hook: nothing is imported for them, a process that never
imports the module is untouched, and a module already imported is patched at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import ModuleType

import wrapt

__all__ = ["when_imported"]

_logger = logging.getLogger(__name__)
_registered: set[tuple[str, Callable[[ModuleType], None]]] = set()
_lock = threading.Lock()


def when_imported(module: str, patch: Callable[[ModuleType], None], what: str) -> None:
    """Run ``patch(module)`` when ``module`` is imported; later calls for the same pair
    do nothing. A patch that fails is logged at debug level, naming ``what`` is lost,
    and the application goes on unpatched."""
    with _lock:
        if (module, patch) in _registered:
            return
        _registered.add((module, patch))

    def apply(imported: ModuleType) -> None:
        try:
            patch(imported)
        except Exception:
            _logger.debug("clstock-otel could not patch %s: %s", module, what, exc_info=True)

    wrapt.register_post_import_hook(apply, module)
