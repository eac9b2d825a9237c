"""uvicorn's ``Server.startup``: one wrapper, shared by the registry entries that act once
uvicorn has started.

Several entries want the moment ``Server.startup()`` returns (the application is
imported, its lifespan has run, no request has been served): ``gc.freeze()``
(:mod:`~clstock_otel_distro.patches.uvicorn_gc_freeze`) and the warning about
configured targets never imported
(:mod:`~clstock_otel_distro.patches.uvicorn_unresolved_targets`). Each stays an entry
of its own (switch, state, doctor line), and adds an action here: the first action
wraps ``Server.startup``, the undo of the last one restores the original, so the
method is wrapped once however many entries are active.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt

__all__ = ["add_action", "shape"]

_logger = logging.getLogger(__name__)

Action = Callable[[], None]

_lock = threading.Lock()
_actions: list[Action] = []
_original: dict[str, Any] = {}  # "startup": what Server.__dict__ held before the wrapper


def shape(module: ModuleType) -> str | None:
    """The problem with ``uvicorn.server``'s shape for these entries, or None."""
    server = getattr(module, "Server", None)
    startup = getattr(server, "startup", None)
    if not inspect.iscoroutinefunction(startup):
        return "Server.startup is no longer a coroutine function"
    return None


def add_action(module: ModuleType, action: Action) -> Callable[[], None]:
    """Run ``action()`` each time ``Server.startup()`` has returned; returns the undo."""
    with _lock:
        if not _actions:
            _original["startup"] = module.Server.__dict__["startup"]
            wrapt.wrap_function_wrapper(module, "Server.startup", _startup)
        _actions.append(action)

    def undo() -> None:
        with _lock:
            if action in _actions:
                _actions.remove(action)
            if not _actions and "startup" in _original:
                module.Server.startup = _original.pop("startup")

    return undo


async def _startup(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    result = await wrapped(*args, **kwargs)
    with _lock:
        actions = list(_actions)
    for action in actions:
        try:
            action()
        except Exception:  # never in the way of the server starting
            _logger.debug("clstock-otel: a start-up action failed", exc_info=True)
    return result
