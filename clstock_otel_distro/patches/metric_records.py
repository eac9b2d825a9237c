"""Record each measurement straight into the aggregations its attributes resolved to.

The SDK's ``Histogram.record``, ``Counter.add`` and ``UpDownCounter.add`` (1.45) build
a frozen ``Measurement`` dataclass whose attributes are cleaned into a new dict, hand
it through the measurement consumer to every reader's storage, which copies the
attributes again, filters them for each view and hashes them recursively (sorted
keys, type names) to find the aggregation, every time: 60-80 k instructions per
measurement (bench/README.md), more than a span of the distro's pipeline. A request
to ClStock's API records four HTTP server measurements and a duration per traced
operation.

Here a measurement whose attributes are plain (``str`` keys; ``str`` or ``int``
values, the types whose equality is their identity as attribute values) looks its
aggregations up by the attributes' items, in a table kept per instrument and filled
by the SDK's own path: the first measurement of an attribute set goes the SDK's way,
then the aggregations it reached (one per reader and matching view) are remembered,
and later measurements of the same set go to them directly, with the SDK's exemplar
filter and reservoirs (an exemplar keeps a copy of the attributes, as the SDK's does).
Aggregations are never replaced within a storage (SDK 1.45); the table is dropped
when the provider's set of readers changes. Anything else (other value types, a
disabled meter, a non-finite or negative amount, a new attribute set beyond
:data:`MAX_BOUND` per instrument) goes the SDK's way. The collected metrics are the
SDK's: tests/distro/test_metric_records.py compares both paths point by point.

:func:`record_all` records many values of one attribute set at once (the deferred
durations of non-sampled calls, handed over when metrics are collected): into an
explicit-bucket histogram under one lock, in order, with the SDK's arithmetic, when
no exemplar can be taken; otherwise value by value. :func:`record_all_traced` does
the same for the durations of traced calls, each with its time and span context:
the values go in at once and, as the SDK's aligned-bucket exemplar reservoir keeps
the last measurement offered to each bucket, only that one is offered per bucket
(:func:`traced_plan` says beforehand whether an attribute set can be handed over
that way, and with which buckets). :func:`bound_sums` and :func:`add_to_sums` let
a caller add into a counter's bound sums directly (the ASGI path's live count of
active requests, applied when metrics are collected).
``OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE=false`` turns it off.
"""

from __future__ import annotations

import inspect
import math
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from time import time_ns
from types import ModuleType
from typing import Any, NamedTuple

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = [
    "MAX_BOUND",
    "OFFER_ALL",
    "OFFER_NONE",
    "OFFER_SAMPLED",
    "PATCH",
    "TracedPlan",
    "add_to_sums",
    "bound_sums",
    "patch",
    "record_all",
    "record_all_traced",
    "traced_plan",
]

_MODULE = "opentelemetry.sdk.metrics"
_METHODS = (("Histogram", "record"), ("Counter", "add"), ("UpDownCounter", "add"))
# Attribute sets remembered per instrument; more are recorded the SDK's way.
MAX_BOUND = 512
_TABLE = "_clstock_bound"
# Values whose equality is their identity as attribute values (1 == 1.0 == True: the
# SDK keeps those apart, a tuple of items would not).
_PLAIN_VALUES = (str, int)
# Amounts whose arithmetic record_all_traced repeats as the SDK's aggregation does it.
_PLAIN_AMOUNTS = (float, int)
_SAMPLED = 0x01  # TraceFlags.SAMPLED
_FLOATS = (float,)
# Up to 3.11, sum() of floats adds them one by one as `total += value` does; 3.12 made
# it a compensated sum (other bits).
_SEQUENTIAL_SUM = sys.version_info < (3, 12)


class _Measured:
    """What an aggregation reads of a measurement: the SDK ``Measurement``'s fields."""

    __slots__ = ("attributes", "context", "instrument", "time_unix_nano", "value")

    def __init__(self, value: float, time_unix_nano: int, instrument: Any, context: Any,
                 attributes: Any) -> None:
        self.value = value
        self.time_unix_nano = time_unix_nano
        self.instrument = instrument
        self.context = context
        self.attributes = attributes


class _Bound:
    """The aggregations one attribute set reaches, and the readers they belong to."""

    __slots__ = ("aggregations", "storages")

    def __init__(self, storages: Any, aggregations: tuple[Any, ...]) -> None:
        self.storages = storages
        self.aggregations = aggregations


def _key(attributes: Any) -> tuple | None:
    """The table key of plain attributes, or None when they must go the SDK's way."""
    if attributes is None:
        return ()
    if attributes.__class__ is not dict:
        return None
    for key, value in attributes.items():
        if key.__class__ is not str or not key or value.__class__ not in _PLAIN_VALUES:
            return None
    return tuple(attributes.items())


def _shape(module: ModuleType) -> str | None:
    from opentelemetry.sdk.metrics._internal import _view_instrument_match as matches
    from opentelemetry.sdk.metrics._internal import measurement_consumer, metric_reader_storage

    for class_name, method in _METHODS:
        instrument = getattr(module, class_name, None)
        if instrument is None or not callable(getattr(instrument, method, None)):
            return f"{class_name}.{method} is missing"
        if list(inspect.signature(getattr(instrument, method)).parameters) != [
                "self", "amount", "attributes", "context"]:
            return f"{class_name}.{method} no longer takes (amount, attributes, context)"
    expected = {
        measurement_consumer.SynchronousMeasurementConsumer.__init__: ("_reader_storages",
                                                                       "_sdk_config"),
        metric_reader_storage.MetricReaderStorage.__init__: (
            "_instrument_view_instrument_matches",),
        matches._ViewInstrumentMatch.__init__: ("_attributes_aggregation",),
        matches._ViewInstrumentMatch.consume_measurement: ("_hash_attributes",
                                                           "_attribute_keys"),
    }
    for function, names in expected.items():
        source = inspect.getsource(function)
        for name in names:
            if name not in source:
                return f"{function.__qualname__} no longer uses {name}"
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation as Buckets,
    )

    source = inspect.getsource(Buckets.aggregate)
    for name in ("_value", "_get_empty_bucket_counts", "_sum", "_record_min_max", "_min",
                 "_max", "bisect_left(self._boundaries", "_sample_exemplar"):
        if name not in source:
            return f"_ExplicitBucketHistogramAggregation.aggregate no longer uses {name}"
    if not callable(getattr(matches, "_hash_attributes", None)):
        return "_view_instrument_match._hash_attributes is missing"
    return None


def patch(module: ModuleType) -> Callable[[], None]:
    """Replace the three synchronous instruments' record methods."""
    from opentelemetry.sdk.metrics._internal import _view_instrument_match as matches

    originals = []
    for class_name, method in _METHODS:
        instrument = getattr(module, class_name)
        original = vars(instrument)[method]
        originals.append((instrument, method, original))
        replacement = _recording(original, matches._hash_attributes,
                                 counts_down=class_name == "UpDownCounter")
        replacement.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(instrument, method, replacement)

    def undo() -> None:
        for instrument, method, original in originals:
            setattr(instrument, method, original)

    return undo


def _recording(original: Callable[..., None], hash_attributes: Callable[[Any], Any], *,
               counts_down: bool) -> Callable[..., None]:
    from opentelemetry.context import get_current
    from opentelemetry.sdk.metrics._internal.exemplar import (
        AlwaysOffExemplarFilter,
        AlwaysOnExemplarFilter,
        TraceBasedExemplarFilter,
    )
    from opentelemetry.trace import INVALID_SPAN
    from opentelemetry.trace.propagation import _SPAN_KEY

    isfinite = math.isfinite

    def record(self: Any, amount: float, attributes: Any = None, context: Any = None) -> None:
        table = self.__dict__.get(_TABLE)
        key = _key(attributes) if table is not None else None
        bound = None if key is None else table.get(key)
        config = self._meter_config
        consumer = self._measurement_consumer
        if (bound is None or bound.storages is not consumer._reader_storages
                or (config is not None and not config.is_enabled)
                or amount.__class__ not in (int, float) or not isfinite(amount)
                or (amount < 0 and not counts_down)):
            original(self, amount, attributes, context)
            if table is None:
                table = self.__dict__.setdefault(_TABLE, {})
                key = _key(attributes)
            if key is not None and (key in table or len(table) < MAX_BOUND):
                _bind(self, table, key, attributes, hash_attributes)
            return
        now = time_ns()
        exemplar_filter = consumer._sdk_config.exemplar_filter
        filter_class = exemplar_filter.__class__
        if filter_class is AlwaysOffExemplarFilter:
            sample = False
        else:
            if context is None:
                context = get_current()
            if filter_class is TraceBasedExemplarFilter:
                span = context.get(_SPAN_KEY)
                sample = (span is not None and span != INVALID_SPAN
                          and span.get_span_context().trace_flags.sampled)
            elif filter_class is AlwaysOnExemplarFilter:
                sample = True
            else:
                sample = exemplar_filter.should_sample(amount, now, dict(attributes or {}),
                                                       context)
        # An exemplar keeps the measurement's attributes: a copy, as the SDK's
        # cleaning makes one, so a caller reusing its dict cannot change it later.
        measured = _Measured(amount, now, self, context,
                             dict(attributes) if sample and attributes else attributes)
        for aggregation in bound.aggregations:
            aggregation.aggregate(measured, sample)

    return record


def record_all(histogram: Any, values: Sequence[float],
               attributes: Mapping[str, Any] | None) -> None:
    """``histogram.record(value, attributes)`` for each of ``values``, in order.

    With the cache active and the attribute set bound, no exemplar possible (the
    ``always_off`` filter, or the trace-based one with no sampled span in the current
    context) and only explicit-bucket histogram aggregations, the values go in under
    each aggregation's lock at once: the same bucket counts, sum, min and max.
    """
    aggregations = _bulk_aggregations(histogram, attributes)
    if aggregations is None or not _recordable(values, _FLOATS):
        for value in values:
            histogram.record(value, attributes)
        return
    for aggregation in aggregations:
        _aggregate_all(aggregation, values)


def _recordable(values: Sequence[Any], kinds: tuple[type, ...]) -> bool:
    """Whether every value is of ``kinds``, finite and not negative: what the SDK's
    arithmetic is repeated for (anything else is recorded the SDK's way)."""
    if values.__class__ is array:  # the waiting durations: C doubles, floats all
        return all(map(math.isfinite, values)) and (not values or min(values) >= 0)
    return all(value.__class__ in kinds and value >= 0 and math.isfinite(value)
               for value in values)


def _aggregate_all(aggregation: Any, values: Sequence[float]) -> None:
    """``aggregation.aggregate`` of each value, in order, under one lock (no exemplar):
    an explicit-bucket histogram's counts, sum, min and max, with the SDK's arithmetic."""
    boundaries = aggregation._boundaries
    with aggregation._lock:
        counts = aggregation._value
        if counts is None:
            counts = aggregation._value = aggregation._get_empty_bucket_counts()
        total = aggregation._sum
        if _SEQUENTIAL_SUM:
            total = sum(values, total)  # the same additions, in order, in C
        else:
            for value in values:
                total += value
        # The bucket of each value, counted in C: the same counts.
        for index, count in Counter(map(partial(bisect_left, boundaries), values)).items():
            counts[index] += count
        aggregation._sum = total
        if aggregation._record_min_max and values:
            aggregation._min = min(aggregation._min, min(values))
            aggregation._max = max(aggregation._max, max(values))


# (value, time_unix_nano, span context) of one measurement made in a span's context.
TracedDuration = tuple[float, int, Any]


# TracedPlan.offer: which measurements the exemplar filter offers to the reservoir.
OFFER_ALL = "all"  # always_on
OFFER_NONE = "none"  # always_off
OFFER_SAMPLED = "sampled"  # trace_based: those made in a sampled span's context


class TracedPlan(NamedTuple):
    """How measurements of one bound set made in spans' contexts can wait."""

    boundaries: tuple[float, ...]
    """The buckets of every aggregation of the set (the same for all of them)."""
    samples: Callable[[Any], bool]
    """Whether a measurement in a span with this span context may become an exemplar."""
    offer: str
    """OFFER_ALL, OFFER_NONE or OFFER_SAMPLED: ``samples``, named (a caller that knows
    whether its span is sampled need not build its span context)."""


def traced_plan(histogram: Any, attributes: Mapping[str, Any] | None
                ) -> TracedPlan | bool | None:
    """How measurements of this set made in spans' contexts can wait for
    :func:`record_all_traced`, or whether they cannot.

    A plan when the cache is active and the set bound, the exemplar filter is one of
    the SDK's three (always on, always off, trace-based: decided by the span context
    alone) and every aggregation is an explicit-bucket histogram, all with the same
    buckets, with the SDK's aligned-bucket exemplar reservoir; None when the set is
    not bound yet (the SDK has not recorded it); False otherwise.
    """
    if getattr(type(histogram).record, "__wrapped__", None) is None:
        return False  # the cache is not active
    if _bound(histogram, attributes) is None:
        return None
    found = _traced_aggregations(histogram, attributes)
    if found is None:
        return False
    aggregations, samples = found
    boundaries = {aggregation._boundaries for aggregation in aggregations}
    if len(boundaries) != 1:
        return False
    offer = (OFFER_SAMPLED if samples is _trace_sampled
             else OFFER_ALL if samples is _always else OFFER_NONE)
    return TracedPlan(boundaries.pop(), samples, offer)


def record_all_traced(histogram: Any, values: Sequence[float],
                      exemplars: Mapping[int, TracedDuration],
                      attributes: Mapping[str, Any] | None) -> None:
    """What recording each of ``values`` in its span's context would have collected.

    ``exemplars`` holds, per bucket of the plan (:func:`traced_plan`), the last
    measurement of ``values`` in that bucket the exemplar filter keeps, with its time
    and span context: the SDK's aligned-bucket reservoir keeps the last measurement
    offered to each bucket, so that one is all it is offered. The same bucket counts,
    sum, min, max and exemplars (value, time, attributes, span and trace ids). Should
    the set no longer be handed over so (a reader added, the meter disabled), each
    value is recorded the SDK's way, without its exemplar.
    """
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context

    found = _traced_aggregations(histogram, attributes)
    if found is None or not _recordable(values, _PLAIN_AMOUNTS):
        for value in values:
            histogram.record(value, attributes)
        return
    for aggregation in found[0]:
        _aggregate_all(aggregation, values)
        reservoir = aggregation._reservoir
        for value, time_unix_nano, span_context in exemplars.values():
            reservoir.offer(value, time_unix_nano, dict(attributes or {}),
                            set_span_in_context(NonRecordingSpan(span_context)))


def _traced_aggregations(histogram: Any, attributes: Any
                         ) -> tuple[tuple[Any, ...], Callable[[Any], bool]] | None:
    """The aggregations and exemplar decision of :func:`record_all_traced`, or None."""
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
    )
    from opentelemetry.sdk.metrics._internal.exemplar import (
        AlignedHistogramBucketExemplarReservoir,
        AlwaysOffExemplarFilter,
        AlwaysOnExemplarFilter,
        TraceBasedExemplarFilter,
    )

    bound = _bound(histogram, attributes)
    if bound is None:
        return None
    filter_class = histogram._measurement_consumer._sdk_config.exemplar_filter.__class__
    if filter_class is TraceBasedExemplarFilter:
        samples = _trace_sampled
    elif filter_class is AlwaysOnExemplarFilter:
        samples = _always
    elif filter_class is AlwaysOffExemplarFilter:
        samples = _never
    else:
        return None
    for aggregation in bound.aggregations:
        if aggregation.__class__ is not _ExplicitBucketHistogramAggregation:
            return None
        if (samples is not _never and aggregation._reservoir.__class__
                is not AlignedHistogramBucketExemplarReservoir):
            return None
    return bound.aggregations, samples


def _trace_sampled(span_context: Any) -> bool:
    # TraceBasedExemplarFilter on a context holding a span with this span context: its
    # is_valid and trace_flags.sampled, read as the tuple's fields (5 and 3) directly.
    return bool(span_context[5] and span_context[3] & _SAMPLED)


def _always(span_context: Any) -> bool:
    return True


def _never(span_context: Any) -> bool:
    return False


def _bound(instrument: Any, attributes: Any, method: str = "record") -> _Bound | None:
    """The bound aggregations of a set while the cache is active (on ``method`` of the
    instrument's class: ``record`` or ``add``) and the meter enabled."""
    if getattr(getattr(type(instrument), method, None), "__wrapped__", None) is None:
        return None  # the cache is not active
    table = instrument.__dict__.get(_TABLE)
    key = _key(attributes)
    bound = None if table is None or key is None else table.get(key)
    config = instrument._meter_config
    if (bound is None or bound.storages is not instrument._measurement_consumer._reader_storages
            or (config is not None and not config.is_enabled)):
        return None
    return bound


def _bulk_aggregations(histogram: Any, attributes: Any) -> tuple[Any, ...] | None:
    """The aggregations ``record_all`` may fill directly, or None (record value by value)."""
    from opentelemetry.context import get_current
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _ExplicitBucketHistogramAggregation,
    )
    from opentelemetry.sdk.metrics._internal.exemplar import (
        AlwaysOffExemplarFilter,
        TraceBasedExemplarFilter,
    )
    from opentelemetry.trace import INVALID_SPAN
    from opentelemetry.trace.propagation import _SPAN_KEY

    bound = _bound(histogram, attributes)
    if bound is None:
        return None
    exemplar_filter = histogram._measurement_consumer._sdk_config.exemplar_filter
    if exemplar_filter.__class__ is TraceBasedExemplarFilter:
        span = get_current().get(_SPAN_KEY)
        if (span is not None and span != INVALID_SPAN
                and span.get_span_context().trace_flags.sampled):
            return None
    elif exemplar_filter.__class__ is not AlwaysOffExemplarFilter:
        return None
    if any(aggregation.__class__ is not _ExplicitBucketHistogramAggregation
           for aggregation in bound.aggregations):
        return None
    return bound.aggregations


def _bind(instrument: Any, table: dict, key: tuple, attributes: Any,
          hash_attributes: Callable[[Any], Any]) -> None:
    """Remember the aggregations the SDK's path just used for ``attributes``."""
    try:
        storages = instrument._measurement_consumer._reader_storages
        found = []
        for storage in storages.values():
            for match in storage._instrument_view_instrument_matches.get(instrument, ()):
                selected = dict(attributes or {})
                keys = match._view._attribute_keys
                if keys is not None:
                    selected = {k: v for k, v in selected.items() if k in keys}
                aggregation = match._attributes_aggregation.get(hash_attributes(selected))
                if aggregation is None:  # the SDK did not record it (e.g. a disabled meter)
                    return
                found.append(aggregation)
        table[key] = _Bound(storages, tuple(found))
    except Exception:  # an internal that changed shape: this set stays on the SDK's path
        table.pop(key, None)


PATCH = UpstreamPatch(
    name="metric-record-cache", distribution="opentelemetry-sdk", versions=">=1.45,<1.46",
    module=_MODULE, symbol="Histogram.record+Counter.add+UpDownCounter.add",
    purpose="measurements go straight to the aggregations their attributes resolved to",
    shape=_shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE,
)


def bound_sums(counter: Any, attributes: Mapping[str, Any] | None
               ) -> tuple[Any, tuple[Any, ...]] | bool | None:
    """Where ``counter.add(amount, attributes)`` lands, for a caller that adds into it
    directly (:func:`add_to_sums`): the reader storages the set was resolved for, and
    its aggregations. None unless the cache is active, the set bound and the meter
    enabled; False when an aggregation is not the SDK's sum (a view made it another).

    Adds made so belong to those readers only: a caller checks, per add, that the
    counter's reader storages are still ``storages`` (a reader added or removed since).
    """
    from opentelemetry.sdk.metrics._internal.aggregation import _SumAggregation

    bound = _bound(counter, attributes, "add")
    if bound is None:
        return None
    if any(aggregation.__class__ is not _SumAggregation for aggregation in bound.aggregations):
        return False
    return bound.storages, bound.aggregations


def add_to_sums(counter: Any, aggregations: Sequence[Any], amount: int,
                attributes: Mapping[str, Any] | None) -> None:
    """``counter.add(amount, attributes)`` into ``aggregations`` (:func:`bound_sums`), as
    the SDK adds a measurement no exemplar is offered for."""
    measured = _Measured(amount, time_ns(), counter, None, attributes)
    for aggregation in aggregations:
        aggregation.aggregate(measured, False)
