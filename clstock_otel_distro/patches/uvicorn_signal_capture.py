"""Put the exit flush's SIGTERM handler back before uvicorn saves the handlers.

uvicorn saves the signal handlers in place when it starts serving
(``Server.capture_signals``), and restores them then re-raises the signal after its
graceful shutdown: the handler it saves must be the distro's, or the last spans are
lost (:mod:`clstock_otel_distro.sdk.shutdown`). gunicorn's ``UvicornWorker`` resets
SIGTERM to its default action after the fork, so the handler is installed again here
when that slot is at its default. Part of the bounded exit, with no switch of its own.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_logger = logging.getLogger(__name__)


def _shape(module: ModuleType) -> str | None:
    capture = getattr(getattr(module, "Server", None), "capture_signals", None)
    if not callable(capture):
        return "Server.capture_signals is missing"
    if list(inspect.signature(capture).parameters) != ["self"]:
        return "Server.capture_signals takes other arguments than self"
    return None


def _before_capture(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        from clstock_otel_distro.sdk.shutdown import install_flush_on_terminate

        install_flush_on_terminate()  # only fills a slot left at its default
    except Exception:  # never in the way of the server starting
        _logger.debug("Could not reinstall the SIGTERM flush", exc_info=True)
    return wrapped(*args, **kwargs)


def patch(module: ModuleType) -> Callable[[], None]:
    """Wrap ``Server.capture_signals`` of ``uvicorn.server``."""
    original = module.Server.__dict__["capture_signals"]
    wrapt.wrap_function_wrapper(module, "Server.capture_signals", _before_capture)
    return lambda: setattr(module.Server, "capture_signals", original)


# uvicorn < 0.29 neither captures signals this way nor re-raises: atexit covers it.
PATCH = UpstreamPatch(
    name="uvicorn-signal-capture", distribution="uvicorn", versions=">=0.29,<1",
    module="uvicorn.server", symbol="Server.capture_signals",
    purpose="the last spans flushed when uvicorn is stopped by SIGTERM",
    shape=_shape, apply=patch,
)
