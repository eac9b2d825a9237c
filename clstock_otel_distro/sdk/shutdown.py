"""Hand over the last telemetry when the process exits, within a bounded time.

Two things go wrong at exit without this module:

- Spans are lost. The SDK flushes its providers from an ``atexit`` hook, but a
  process killed by SIGTERM's default action never runs ``atexit``. uvicorn handles
  SIGTERM gracefully and then, once the application has shut down, restores the
  previous handler and re-raises the signal (so the exit status says "terminated"):
  with the default action in place the process dies there, and every span still
  queued in the batch processor, the last requests' spans, is lost. gunicorn's
  ``UvicornWorker`` resets SIGTERM to the default action in each worker before
  uvicorn runs, so its workers lose theirs even when the master had a handler.
- Exit is slow when the collector is down. The SDK's exit-time shutdown waits for
  the exporters, which retry for up to their 10 s timeout (backoff 1, 2, 4 s) per
  signal, one after the other: a process whose collector is absent or unresponsive
  takes 8 to 15 s to exit after it was asked to, long enough for a process manager
  to SIGKILL it.

So the distro owns the exit path. :func:`shutdown_providers` shuts the tracer, meter
and logger providers down in parallel, each handing over what it holds, and returns
after at most ``OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT`` ms (default 1000) however the
export goes; work still in progress then is abandoned on daemon threads, which die
with the process. It runs:

- on SIGTERM, from a handler installed when nothing else handles SIGTERM at
  start-up; the handler then restores the default action and raises the signal
  again, so the process ends the way it would have, with the same status. A handler
  the application installs later simply replaces ours (uvicorn's does, then gives it
  back at exit). Before uvicorn captures the signals, the handler is put back where
  something (gunicorn's worker) reset SIGTERM to its default;
- at normal interpreter exit (``sys.exit``, the end of the program, a gunicorn
  worker leaving its loop), from an ``atexit`` hook that replaces the providers' own
  unbounded ones.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk.metrics import MeterProvider

from clstock_otel_distro import config as _config
from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT,
    OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT,
)
from clstock_otel_distro.patches import registry, uvicorn_signal_capture
from clstock_otel_distro.sdk import delivery
from clstock_otel_distro.sdk.repeated_warnings import report_repeated_warnings

__all__ = [
    "install_exit_hooks",
    "install_flush_on_terminate",
    "shutdown_providers",
    "shutdown_timeout_millis",
]

_logger = logging.getLogger(__name__)

_TERMINATING_SIGNALS = (signal.SIGTERM,)

# A process manager's grace period is 10 to 30 s; more than this is a typo.
_MAX_SHUTDOWN_TIMEOUT = 60_000

# Re-entrant: the SIGTERM handler runs on the main thread, which may hold it already
# (exiting normally, in the atexit hook).
_lock = threading.RLock()
_shut_down = False
_hooks_installed = False


def shutdown_timeout_millis() -> int:
    """The exit budget: ``OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT``, validated."""
    return _config.env_int(OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT,
                           DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT, minimum=0,
                           maximum=_MAX_SHUTDOWN_TIMEOUT)


def _global_providers() -> list[Any]:
    return [trace.get_tracer_provider(), metrics.get_meter_provider(), get_logger_provider()]


def _shutdown_call(provider: Any, timeout_millis: int) -> Callable[[], object] | None:
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is None:
        return None
    # The MeterProvider takes a timeout (and honours it); the tracer and logger
    # providers do not, and are bounded by the caller instead.
    if isinstance(provider, MeterProvider):
        return lambda: shutdown(timeout_millis=timeout_millis)
    return shutdown


def shutdown_providers(timeout_millis: int) -> bool:
    """Shut the global providers down, delivering what they hold, within ``timeout_millis``.

    The providers are shut down in parallel on daemon threads; this returns when all
    are done or when the budget is spent, whichever comes first, and says which.
    Only the first call in a process does anything.
    """
    global _shut_down
    with _lock:
        if _shut_down:
            return True
        _shut_down = True
    # The SDK warnings counted since their last report: logged while the log
    # exporter still runs.
    report_repeated_warnings()
    deadline = time.monotonic() + timeout_millis / 1000
    # Batches kept for a collector that is away are tried once more within the
    # budget, and what is left is spooled in its last part (delivery.EXIT_SPOOL_SHARE).
    delivery.begin_exit(deadline)
    threads = []
    for provider in _global_providers():
        # The SDK registered each provider's own, unbounded, exit-time shutdown.
        atexit.unregister(getattr(provider, "shutdown", _no_op))
        call = _shutdown_call(provider, timeout_millis)
        if call is None:
            continue
        thread = threading.Thread(target=_guarded, args=(call, provider), daemon=True,
                                  name=f"clstock-otel-shutdown-{type(provider).__name__}")
        try:
            thread.start()
        except RuntimeError:  # no new threads this late in finalization: do it here
            _guarded(call, provider)
            continue
        threads.append(thread)
    sending_deadline = deadline - timeout_millis / 1000 * delivery.EXIT_SPOOL_SHARE
    for thread in threads:
        thread.join(max(0.0, sending_deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        delivery.persist_all()  # an exporter is still busy: keep what waits behind it
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    late = [thread.name for thread in threads if thread.is_alive()]
    if late:
        _logger.warning(
            "Telemetry not handed over within %s=%d ms (exporter unreachable?); exiting "
            "without it", OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT, timeout_millis)
    return not late


def _no_op() -> None:
    """Stands in for a provider without ``shutdown`` (atexit.unregister needs a callable)."""


def _guarded(call: Callable[[], object], provider: Any) -> None:
    try:
        call()
    except Exception:  # telemetry must never stand in the way of the exit
        _logger.debug("Shutting down %s at exit failed", provider, exc_info=True)


def _at_exit() -> None:
    shutdown_providers(shutdown_timeout_millis())


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    shutdown_providers(shutdown_timeout_millis())
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


def install_exit_hooks() -> None:
    """Own the exit path: SIGTERM handler, bounded ``atexit`` shutdown, uvicorn hook
    (:mod:`clstock_otel_distro.patches.uvicorn_signal_capture`).

    Called once the providers exist (the configurator's last step), so that our
    ``atexit`` hook runs before the SDK's (hooks run last-registered first) and
    replaces them. Calling it again does nothing.
    """
    global _hooks_installed
    with _lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    shutdown_timeout_millis()  # a bad value is reported at start-up, not at exit
    install_flush_on_terminate()
    atexit.register(_at_exit)
    registry.install(uvicorn_signal_capture.PATCH)
