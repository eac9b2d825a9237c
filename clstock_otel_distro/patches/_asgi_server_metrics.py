"""The ASGI server path's metric records that wait for the collection
(:mod:`clstock_otel_distro.patches.asgi_server_path`).

- :class:`_Later`: a histogram's measurements (the request duration, the response
  size) kept with their span in the machinery's waiting slots
  (``instrumentors/_machinery/durations.py``), handed over at the collection with the
  exemplars the SDK would keep;
- :class:`_LiveCounts`: the active-requests counter's +1 and -1 counted live and added
  to its sums when metrics are collected, where the SDK would offer them no exemplar.

Each middleware instance the lean path serves keeps one of each (``_LATER``).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

from opentelemetry.trace import INVALID_SPAN, Span
from opentelemetry.trace.propagation import _SPAN_KEY

# Attribute sets (route, status...) one middleware remembers for waiting records.
_MAX_LATER_SETS = 256


class _Later:
    """Measurements of one histogram that wait for the collection, per attribute set."""

    __slots__ = ("limit", "pending", "slots")

    def __init__(self, pending: Any, limit: int) -> None:
        self.pending = pending  # the histogram's PendingDurations
        self.limit = limit
        # Attribute items -> where they wait (a TracedSlot), or False: recorded at once.
        self.slots: dict[tuple, Any] = {}

    def add(self, value: float, attributes: dict[str, Any], span: Any) -> bool:
        """Keep one measurement for the collection; False: record it now instead."""
        key = tuple(attributes.items())
        slot = self.slots.get(key)
        if slot is None:
            if len(self.slots) >= _MAX_LATER_SETS:
                return False
            slot = self.pending.traced_slot(attributes)
            if slot is None:  # the SDK has not resolved the set yet: this record does
                return False
            self.slots[key] = slot
        if slot is False or len(slot) >= self.limit:
            return False
        slot.add(value, span)
        return True


class _LiveSlot:
    """The adds of one attribute set counted but not yet in the counter's sums.

    ``ups`` and ``downs`` are ``itertools.count`` s: ``next()`` on one is a single step
    under the GIL, so adds from any thread are never lost without a lock. The
    collection reads one by calling ``next()`` too: its value is then the adds so far
    plus the reads before (``reads``).
    """

    __slots__ = ("aggregations", "applied_downs", "applied_ups", "attributes", "downs",
                 "reads", "storages", "ups")

    def __init__(self, attributes: dict[str, Any], storages: Any,
                 aggregations: tuple[Any, ...]) -> None:
        self.attributes = dict(attributes)
        self.storages = storages
        self.aggregations = aggregations
        self.ups = itertools.count()
        self.downs = itertools.count()
        self.reads = 0
        self.applied_ups = 0
        self.applied_downs = 0

    def take(self) -> tuple[int, int]:
        """(+1 adds, -1 adds) counted since the last take (under the owner's lock)."""
        ups = next(self.ups) - self.reads
        downs = next(self.downs) - self.reads
        self.reads += 1
        new_ups, new_downs = ups - self.applied_ups, downs - self.applied_downs
        self.applied_ups, self.applied_downs = ups, downs
        return new_ups, new_downs


class _LiveCounts:
    """The active-requests counter's +1 and -1 counted live, added to its sums when
    metrics are collected (see :func:`_serve`'s use).

    An add is counted so only when the SDK would offer it no exemplar (the exemplar
    filter is ``always_off``, or ``trace_based`` and the add's context holds no
    sampled span) and the metric-record cache can add into the set's sums directly
    (``metric_records.bound_sums``: the set resolved, the meter enabled, every
    aggregation the SDK's sum). At each collection (an observable instrument's
    callback, run by the SDK before it collects any reader's storage) the adds
    counted since the last one go into those sums, as one add of their net amount
    when there were any: a sum of integers, the same value, and a set added to in a
    delta collection interval still gives its point (0 when as many -1 as +1).
    Anything else is added by the caller at once, the SDK's way. A reader added or
    removed since a set was resolved: its adds are the SDK's from then on. Not exact:
    a meter disabled at run time (the experimental meter configurator) after adds were
    counted and before a collection: the SDK does not run a disabled meter's
    callbacks, so those adds reach the sums when it is enabled again (the deferred
    durations share this).
    """

    def __init__(self, counter: Any) -> None:
        from opentelemetry.sdk.metrics._internal.exemplar import (
            AlwaysOffExemplarFilter,
            TraceBasedExemplarFilter,
        )

        self.counter = counter
        self._always_off = AlwaysOffExemplarFilter
        self._trace_based = TraceBasedExemplarFilter
        self._lock = threading.Lock()
        # Attribute items -> their slot, or False: added the SDK's way.
        self.slots: dict[tuple, _LiveSlot | bool] = {}
        self._every: list[_LiveSlot] = []  # including slots no longer added to

    def slot(self, attributes: dict[str, Any]) -> _LiveSlot | None:
        """Where adds of ``attributes`` are counted, or None: they are the SDK's."""
        # Values whose class is str or int: equal values are then the same attribute
        # value to the SDK (it keeps 1, 1.0 and True apart, a str subclass from str).
        if not _LIVE_VALUES.issuperset(map(type, attributes.values())):
            return None
        key = tuple(attributes.items())
        slot = self.slots.get(key)
        if slot is None:
            slot = self._new_slot(key, attributes)
        return slot or None

    def count(self, slot: _LiveSlot, amount: int, context_: Any) -> bool:
        """Count ``counter.add(amount, attributes)`` (+1 or -1, the slot's attributes)
        made in ``context_``; False: not counted, the caller adds it."""
        counter = self.counter
        consumer = counter._measurement_consumer
        if slot.storages is not consumer._reader_storages:
            self.slots[tuple(slot.attributes.items())] = False  # counted: still taken
            return False
        config = counter._meter_config
        if config is not None and not config.is_enabled:
            return False
        exemplar_filter = consumer._sdk_config.exemplar_filter.__class__
        if exemplar_filter is self._trace_based:
            span = context_.get(_SPAN_KEY)  # the SDK's filter: get_current_span(context)
            if (span is not None and isinstance(span, Span) and span is not INVALID_SPAN
                    and span.get_span_context().trace_flags.sampled):
                return False
        elif exemplar_filter is not self._always_off:
            return False
        next(slot.ups if amount > 0 else slot.downs)
        return True

    def _new_slot(self, key: tuple, attributes: dict[str, Any]) -> _LiveSlot | bool | None:
        from clstock_otel_distro.patches.metric_records import bound_sums

        if len(self.slots) >= _MAX_LATER_SETS:
            return False
        found = bound_sums(self.counter, attributes)
        if found is None:  # not resolved yet: the SDK's first add resolves it
            return None
        if found is False:  # not into sums: every add the SDK's way
            self.slots[key] = False
            return False
        storages, aggregations = found
        with self._lock:
            slot = self.slots.get(key)
            if slot is None:
                slot = self.slots[key] = _LiveSlot(attributes, storages, aggregations)
                self._every.append(slot)
        return slot

    def flush(self, options: Any = None) -> list[Any]:
        """Add what was counted to the sums; an observable callback (it observes nothing)."""
        from clstock_otel_distro.patches.metric_records import add_to_sums

        with self._lock:
            taken = [(slot, slot.take()) for slot in self._every]
        for slot, (ups, downs) in taken:
            if ups or downs:
                add_to_sums(self.counter, slot.aggregations, ups - downs, slot.attributes)
        return []


_LIVE_VALUES = frozenset((str, int))
# One _LiveCounts per counter instrument (a meter gives middlewares the same one; its
# observable instrument can be registered once per meter and name).
_LIVE: weakref.WeakKeyDictionary[Any, _LiveCounts] = weakref.WeakKeyDictionary()
_LIVE_LOCK = threading.Lock()


def _live_counts(middleware: Any) -> _LiveCounts | None:
    """The live count of an eligible middleware's active-requests counter, or None
    (not an SDK counter, the cache not active, no collection hook)."""
    counter = middleware.active_requests_counter
    if getattr(type(counter).add, "__wrapped__", None) is None:
        return None  # the metric-record cache is not active
    with _LIVE_LOCK:
        live = _LIVE.get(counter)
        if live is None:
            try:
                live = _LiveCounts(counter)
                middleware.meter.create_observable_gauge(
                    f"{counter.name}.pending", callbacks=[live.flush], unit="{request}")
            except Exception:  # no collection hook: every add the SDK's way
                return None
            _LIVE[counter] = live
    return live


def _later_records(middleware: Any) -> tuple[_Later | None, _Later | None]:
    """The waiting records of an eligible middleware: (durations, response sizes)."""
    # Imported here: the machinery's durations module imports the patches package.
    from clstock_otel_distro.instrumentors._machinery.durations import (
        TRACED_PENDING_LIMIT,
        pending_durations,
    )

    later = []
    for histogram in (middleware.duration_histogram_new,
                      middleware.server_response_body_size_histogram):
        try:
            pending = pending_durations(middleware.meter, histogram, histogram.name)
        except Exception:  # no collection hook: recorded at once
            pending = None
        later.append(_Later(pending, TRACED_PENDING_LIMIT) if pending is not None else None)
    return later[0], later[1]
