"""Deliver the last spans when the process is terminated by a signal.

The SDK flushes its providers from an ``atexit`` hook, but a process killed by
SIGTERM's default action never runs ``atexit``. uvicorn handles SIGTERM gracefully
and then, once the application has shut down, restores the previous handler and
re-raises the signal (so the exit status says "terminated"): with the default
handler in place the process dies there, and every span still queued in the batch
processor, the last requests' spans, is lost.

So, when nothing else handles SIGTERM at start-up, we install a handler that flushes
the providers within a bounded time, then restores the default action and raises
the signal again. The process still ends the way it would have, with the same
status, only after handing over its telemetry. A handler the application installs
later simply replaces ours (uvicorn's does, then gives it back at exit).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider

from clstock_otel_distro import _config
from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT,
    OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT,
)

__all__ = ["flush_providers", "install_flush_on_terminate"]

_logger = logging.getLogger(__name__)

_TERMINATING_SIGNALS = (signal.SIGTERM,)


def flush_providers(timeout_millis: int) -> None:
    """Force-flush the global tracer, meter and logger providers within a shared budget."""
    deadline = time.monotonic() + timeout_millis / 1000
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(),
                     get_logger_provider()):
        remaining = int((deadline - time.monotonic()) * 1000)
        flush = getattr(provider, "force_flush", None)
        if remaining <= 0 or flush is None:
            continue
        try:
            flush(timeout_millis=remaining)
        except Exception:  # telemetry must never stand in the way of the exit
            _logger.debug("Flushing %s at termination failed", provider, exc_info=True)


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    timeout = _config.env_int(OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT,
                              DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT, minimum=0)
    flush_providers(timeout)
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def install_flush_on_terminate() -> list[Any]:
    """Install the flushing handler for each terminating signal left at its default.

    Returns the signals it installed a handler for. Signal handlers can only be set
    from the main thread; elsewhere nothing is installed.
    """
    installed = []
    if threading.current_thread() is not threading.main_thread():
        return installed
    for signum in _TERMINATING_SIGNALS:
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _on_terminate)
                installed.append(signum)
        except (OSError, ValueError):
            _logger.debug("Cannot handle %s here", signum, exc_info=True)
    return installed
