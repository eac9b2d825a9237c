"""Every dropped item counted in a metric and reported in at most one warning a minute.

The counter ``clstock.telemetry.dropped`` (unit ``{item}``) carries ``signal``
(spans, metrics, logs) and ``reason``:

- ``buffer_full``: the collector was away and the in-memory bound was reached (and
  no spool, or a full one, could take the batch);
- ``rejected``: the collector refused the batch for good (400, 413, another 4xx);
- ``exit``: still waiting when the process exited, with no spool (or a full one)
  to keep it.

A corrupt spool file is not counted (its count is what cannot be read); it gets a
warning of its own (:mod:`.spool`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from opentelemetry import metrics

__all__ = [
    "DROPPED_METRIC",
    "REASON_BUFFER_FULL",
    "REASON_EXIT",
    "REASON_REJECTED",
    "DropReporter",
]

_logger = logging.getLogger(__name__)

DROPPED_METRIC = "clstock.telemetry.dropped"
SIGNAL_ATTRIBUTE = "signal"
REASON_ATTRIBUTE = "reason"
REASON_BUFFER_FULL = "buffer_full"
REASON_REJECTED = "rejected"
REASON_EXIT = "exit"

WARNING_INTERVAL = 60.0
"""Seconds between two drop warnings; drops in between are summed into the next."""


class DropReporter:
    """The process's drop counter and its rate-limited warning."""

    def __init__(self, interval: float = WARNING_INTERVAL) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._last_warning: float | None = None
        self._counter: Any = None
        self.total: Counter[tuple[str, str]] = Counter()
        """Every drop of the process so far, by (signal, reason)."""

    def prepare(self) -> None:
        """Create the counter now, while the meter provider runs (drops are possible from
        here on; the last ones may come at exit, when it no longer gives meters out)."""
        try:
            self._metric()
        except Exception as exc:
            _logger.debug("Cannot create the drop counter: %s", exc)

    def _metric(self) -> Any:
        # From whatever provider is global by the first outage or drop.
        if self._counter is None:
            meter = metrics.get_meter_provider().get_meter("clstock_otel_distro.delivery")
            self._counter = meter.create_counter(
                DROPPED_METRIC, unit="{item}",
                description="Telemetry items dropped by the distro before reaching the collector")
        return self._counter

    def record(self, signal: str, reason: str, items: int, detail: str = "") -> None:
        """Count ``items`` dropped; warn now unless a warning went out in the last minute."""
        try:
            self._metric().add(items, {SIGNAL_ATTRIBUTE: signal, REASON_ATTRIBUTE: reason})
        except Exception as exc:  # counting must never break the export path
            _logger.debug("Cannot count dropped telemetry: %s", exc)
        with self._lock:
            self.total[(signal, reason)] += items
            self._pending[(signal, reason)] += items
            now = time.monotonic()
            due = self._last_warning is None or now - self._last_warning >= self._interval
            if due:
                self._last_warning = now
        if due:
            self.flush(detail)

    def flush(self, detail: str = "") -> None:
        """Log the drops not reported yet, if any (one warning)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        listed = ", ".join(f"{items} {signal} ({reason})"
                           for (signal, reason), items in sorted(pending.items()))
        _logger.warning(
            "clstock-otel: telemetry dropped before reaching the collector: %s%s "
            "(counted in %s)", listed, f"; {detail}" if detail else "", DROPPED_METRIC)

    def flush_if_due(self) -> None:
        """Report the drops held back, once a minute has passed since the last warning."""
        with self._lock:
            due = bool(self._pending) and (
                self._last_warning is None
                or time.monotonic() - self._last_warning >= self._interval)
            if due:
                self._last_warning = time.monotonic()
        if due:
            self.flush()

    def reset(self) -> None:
        """A forked child reports its own drops."""
        self._lock = threading.Lock()
        self._pending = Counter()
        self._last_warning = None
        self.total = Counter()
