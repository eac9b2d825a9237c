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

Durations of traced calls (a recording span) wait too when the metric-record cache
can hand them over with the exemplars the SDK would keep
(``metric_records.traced_plan``: the SDK's exemplar filters, aligned-bucket
reservoirs): a :class:`TracedSlot` keeps the values (8 bytes each, at most
``TRACED_PENDING_LIMIT``, beyond which calls are recorded at once in their span's
context) and, per bucket, the last one an exemplar may be made of, with its time
and span context: the one the SDK's reservoir would have kept.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, NoOpHistogram

from clstock_otel_distro.patches.metric_records import (
    OFFER_ALL,
    OFFER_NONE,
    TracedDuration,
    TracedPlan,
    record_all,
    record_all_traced,
    traced_plan,
)

_logger = logging.getLogger(__name__)

PENDING_LIMIT = 16384
TRACED_PENDING_LIMIT = 16384


class TracedSlot:
    """Durations of traced calls with one attribute set, waiting for the collection."""

    __slots__ = ("boundaries", "exemplars", "offer", "samples", "values")

    def __init__(self, plan: TracedPlan) -> None:
        self.boundaries = plan.boundaries
        self.samples = plan.samples
        self.offer = plan.offer
        self.values = array("d")
        # Bucket -> (value, time, span) of the last duration in it that the exemplar
        # filter keeps: the span, whose context is made only for those kept at the
        # collection.
        self.exemplars: dict[int, tuple[float, int, Any]] = {}

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: float, span: Any, sampled: bool | None = None) -> None:
        """One traced call's duration, recorded in ``span``'s context at this time;
        ``sampled``: whether that span is sampled, when the caller knows (None: its span
        context is asked)."""
        self.values.append(value)
        offer = self.offer
        if offer is not OFFER_ALL:
            if offer is OFFER_NONE:
                return
            if sampled is None:
                sampled = self.samples(span.get_span_context())
            if not sampled:
                return
        self.exemplars[bisect_left(self.boundaries, value)] = (value, time_ns(), span)

    def take(self) -> tuple[array, dict[int, TracedDuration]]:
        """What waits, taken out (under the owner's lock; calls append without it)."""
        count = len(self.values)
        values = self.values[:count]
        del self.values[:count]
        exemplars, self.exemplars = self.exemplars, {}
        return values, {bucket: (value, time_unix_nano, span.get_span_context())
                        for bucket, (value, time_unix_nano, span) in exemplars.items()}

    def clear(self) -> None:
        del self.values[:]
        self.exemplars = {}


class PendingDurations:
    """Durations waiting for the next collection of one histogram, per attribute set."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._lock = threading.Lock()
        self._slots: dict[tuple, tuple[Mapping[str, Any], array]] = {}
        self._traced: dict[tuple, tuple[Mapping[str, Any], TracedSlot]] = {}

    def slot(self, attributes: Mapping[str, Any]) -> array:
        """The array collecting the durations recorded with ``attributes``."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            found = self._slots.get(key)
            if found is None:
                found = self._slots[key] = (dict(attributes), array("d"))
        return found[1]

    def traced_slot(self, attributes: Mapping[str, Any]) -> TracedSlot | bool | None:
        """Where traced calls' durations with ``attributes`` wait; False when they cannot
        (recorded at once), None while that cannot be known yet (see the module)."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            found = self._traced.get(key)
            if found is not None:
                return found[1]
        plan = traced_plan(self.histogram, attributes)
        if not isinstance(plan, TracedPlan):
            return plan
        with self._lock:
            found = self._traced.get(key)
            if found is None:
                found = self._traced[key] = (dict(attributes), TracedSlot(plan))
        return found[1]

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
        for attributes, (values, exemplars) in self._take_traced():
            try:
                record_all_traced(histogram, values, exemplars, attributes)
            except Exception:
                _logger.debug("clstock-otel could not record pending durations", exc_info=True)
        return []

    def _take_traced(self) -> list[tuple[Mapping[str, Any],
                                          tuple[array, dict[int, TracedDuration]]]]:
        # A call appending while this runs lands in this collection or the next, with
        # its exemplar candidate (one bucket's exemplar may then come a collection early).
        with self._lock:
            return [(attributes, slot.take()) for attributes, slot in self._traced.values()
                    if len(slot)]

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
        for _, slot in self._traced.values():
            slot.clear()


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
