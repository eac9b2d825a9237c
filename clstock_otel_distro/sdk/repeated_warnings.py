"""SDK warnings that would repeat for every span: logged once per process, then counted.

Some OpenTelemetry warnings are logged from the hot path, once per offending value:
"String attribute value exceeds max length of 4096, truncating." for every long
attribute of every span (one failing ClStock request logged it five times), "Invalid
type ... for attribute value" for every bad value, the trace-state parser's warnings
for every request carrying a malformed ``tracestate`` header. Under load they bury
the application's own log lines and cost a formatted record each.

:class:`RepeatedWarningFilter`, on each logger of :data:`REPEATING_LOGGERS`, lets the
first WARNING (or higher) of each message template (the format string before its
arguments, per logger) through, marked as counted from then on; later ones are
dropped and counted. The counts are logged, one WARNING per template on this
module's logger, at most once per :data:`REPORT_INTERVAL_SECONDS` (when a repeat
arrives that long after the last report: no thread of its own) and at exit (what is
left since the last report). DEBUG and INFO records pass untouched, and so does
every other logger (the batch processor's "Queue full" reports, the exporters').

Usage::

    install_repeated_warning_filter()   # idempotent; the configurator calls it
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable

__all__ = [
    "REPEATING_LOGGERS",
    "REPORT_INTERVAL_SECONDS",
    "RepeatedWarningFilter",
    "install_repeated_warning_filter",
    "report_repeated_warnings",
    "uninstall_repeated_warning_filter",
]

_logger = logging.getLogger(__name__)

REPEATING_LOGGERS = (
    "opentelemetry.attributes",  # truncation, invalid keys and values, full attribute dicts
    "opentelemetry.sdk.trace",  # calls on ended spans
    "opentelemetry.trace.span",  # malformed tracestate headers, parsed per request
)
"""The loggers whose warnings come once per span, attribute or request."""

REPORT_INTERVAL_SECONDS = 60.0

_COUNTED_NOTE = " (clstock-otel: further occurrences are counted and reported once a minute)"
# Message templates are format strings written in the SDK's code: a few dozen. The
# bound only matters if something logs pre-formatted messages through these loggers.
_MAX_TEMPLATES = 1000

_Key = tuple[str, str]


class RepeatedWarningFilter(logging.Filter):
    """Pass the first WARNING of each (logger, template), count the rest, report the counts."""

    def __init__(self, interval: float = REPORT_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: set[_Key] = set()
        self._pending: dict[_Key, int] = {}
        self._since = clock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not isinstance(record.msg, str):
            return True
        key = (record.name, record.msg)
        with self._lock:
            if key not in self._seen:
                if len(self._seen) >= _MAX_TEMPLATES:
                    return True
                self._seen.add(key)
                record.msg += _COUNTED_NOTE
                return True
            self._pending[key] = self._pending.get(key, 0) + 1
            due = self._clock() - self._since >= self._interval
        if due:
            self.report()
        return False

    def pending(self) -> dict[_Key, int]:
        """The repeats counted since the last report, by (logger, template)."""
        with self._lock:
            return dict(self._pending)

    def report(self) -> None:
        """Log one WARNING per template repeated since the last report, and start over."""
        with self._lock:
            pending, self._pending = self._pending, {}
            now = self._clock()
            elapsed, self._since = now - self._since, now
        for (name, template), count in pending.items():
            _logger.warning("clstock-otel: %s warning %r repeated %d more time%s in the last "
                            "%.0f s (not logged one by one)", name, template, count,
                            "" if count == 1 else "s", elapsed)


_filter = RepeatedWarningFilter()
_install_lock = threading.Lock()
_at_exit_registered = False


def install_repeated_warning_filter() -> None:
    """Put the filter on every logger of :data:`REPEATING_LOGGERS` (idempotent), and
    report what is left at exit."""
    global _at_exit_registered
    with _install_lock:
        for name in REPEATING_LOGGERS:
            logger = logging.getLogger(name)
            if _filter not in logger.filters:
                logger.addFilter(_filter)
        if not _at_exit_registered:
            _at_exit_registered = True
            atexit.register(report_repeated_warnings)


def uninstall_repeated_warning_filter() -> None:
    """Take the filter off again: every SDK warning is logged as the SDK logs it."""
    with _install_lock:
        for name in REPEATING_LOGGERS:
            logging.getLogger(name).removeFilter(_filter)


def report_repeated_warnings() -> None:
    """Log the counts not reported yet (the exit path calls it; never raises)."""
    try:
        _filter.report()
    except Exception:  # logging at exit must not get in the way of the exit
        _logger.debug("Could not report the repeated SDK warnings", exc_info=True)
