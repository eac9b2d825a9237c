"""Durations of calls, handed to their histogram when metrics are collected.

Why defer: the SDK's ``Histogram.record`` (the measurement object, its attributes
cleaned and hashed, the aggregation's lock) costs several times what the rest of a
non-sampled traced call costs (bench/README.md has the figures). For a call that
records no span, the duration is instead appended to an array and handed to the SDK
when the metric reader collects: an observable instrument's callback runs at the
start of every collection (periodic export, force_flush, shutdown) and records what
is pending, so every value lands in the same collection interval as before, with the
same attributes: the exported histogram is the same. What changes: that work runs on
the collecting thread, not on the call's; such values carry no exemplar (the default
trace-based exemplar filter keeps none for non-sampled calls anyway); and an
operation holds at most ``PENDING_LIMIT`` values (8 bytes each) between two
collections, beyond which its calls are recorded at once again, as before.

Durations of traced calls (a recording span) wait too, each with its time and span
context, when the metric-record cache can hand them over with the exemplars the SDK
would keep (``metric_records.defers_traced``: the SDK's exemplar filters and
aligned-bucket reservoirs): at most ``TRACED_PENDING_LIMIT`` per operation (about
150 bytes each), beyond which they are recorded at once, in the span's context.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from array import array
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, NoOpHistogram

from clstock_otel_distro.patches.metric_records import (
    TracedDuration,
    defers_traced,
    record_all,
    record_all_traced,
)

_logger = logging.getLogger(__name__)

PENDING_LIMIT = 16384
TRACED_PENDING_LIMIT = 4096


class PendingDurations:
    """Durations waiting for the next collection of one histogram, per attribute set."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._lock = threading.Lock()
        self._slots: dict[tuple, tuple[Mapping[str, Any], array]] = {}
        self._traced: dict[tuple, tuple[Mapping[str, Any], list[TracedDuration]]] = {}

    def slot(self, attributes: Mapping[str, Any]) -> array:
        """The array collecting the durations recorded with ``attributes``."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            found = self._slots.get(key)
            if found is None:
                found = self._slots[key] = (dict(attributes), array("d"))
        return found[1]

    def traced_slot(self, attributes: Mapping[str, Any]) -> list[TracedDuration]:
        """The list collecting traced calls' (duration, time, span context) with ``attributes``."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            found = self._traced.get(key)
            if found is None:
                found = self._traced[key] = (dict(attributes), [])
        return found[1]

    def defers_traced(self, attributes: Mapping[str, Any]) -> bool | None:
        """Whether traced calls' durations with ``attributes`` may wait (see the module);
        None while that cannot be known yet."""
        return defers_traced(self.histogram, attributes)

    def flush(self, options: CallbackOptions | None = None) -> list[Any]:
        """Record every pending duration; an observable callback (it observes nothing)."""
        histogram = self.histogram
        for attributes, values in self._take():
            try:
                # Value by value, or into the histogram at once (same result) when the
                # metric-record cache can.
                record_all(histogram, values, attributes)
            except Exception:
                _logger.debug("clstock-otel could not record pending durations", exc_info=True)
        for attributes, durations in self._take_traced():
            try:
                record_all_traced(histogram, durations, attributes)
            except Exception:
                _logger.debug("clstock-otel could not record pending durations", exc_info=True)
        return []

    def _take_traced(self) -> list[tuple[Mapping[str, Any], list[TracedDuration]]]:
        taken = []
        with self._lock:
            for attributes, durations in self._traced.values():
                count = len(durations)
                if count:
                    taken.append((attributes, durations[:count]))
                    del durations[:count]
        return taken

    def _take(self) -> list[tuple[Mapping[str, Any], array]]:
        # Under the lock, so that two collections never take the same values. Calls
        # append without it: an append landing between the copy and the delete is
        # after the copied prefix, which is all that is deleted.
        taken = []
        with self._lock:
            for attributes, values in self._slots.values():
                count = len(values)
                if count:
                    taken.append((attributes, values[:count]))
                    del values[:count]
        return taken

    def forget_in_child(self) -> None:
        """Drop what is pending, in a forked child (its parent records those values).

        The child has one thread, but the lock may have been copied held: it is
        replaced, not taken.
        """
        self._lock = threading.Lock()
        for _, values in self._slots.values():
            del values[:]
        for _, durations in self._traced.values():
            del durations[:]


# One PendingDurations per histogram instrument: a meter returns the same instrument
# when an instrumentor is instrumented again, and an observable instrument can be
# registered only once per meter and name (the SDK returns the first one, with its
# callbacks), so the buffer and its callback are shared by every telemetry using it.
_PENDING: weakref.WeakKeyDictionary[Any, PendingDurations] = weakref.WeakKeyDictionary()
_PENDING_LOCK = threading.Lock()


def pending_durations(meter: Meter, histogram: Histogram, name: str) -> PendingDurations | None:
    """The deferred recorder of ``histogram``; None when recording is free anyway."""
    if isinstance(histogram, NoOpHistogram):
        return None
    with _PENDING_LOCK:
        pending = _PENDING.get(histogram)
        if pending is None:
            pending = PendingDurations(histogram)
            try:
                meter.create_observable_gauge(f"{name}.pending", callbacks=[pending.flush],
                                              unit="s")
            except Exception:  # no collection hook: record every call at once
                _logger.debug("clstock-otel cannot defer %s", name, exc_info=True)
                return None
            _PENDING[histogram] = pending
    return pending


def _forget_pending_in_child() -> None:
    for pending in list(_PENDING.values()):
        pending.forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_in_child)
