"""Measurements recorded straight into their aggregations: the SDK's metrics, point by point.

Each scenario records the same measurements twice, once the SDK's way and once with
the metric-record cache, and compares everything collected (attributes, counts,
sums, bucket counts, min and max, exemplars with their filtered attributes and
span ids), timestamps aside.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics._internal import _disable_meter_configurator
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal.measurement_consumer import (
    SynchronousMeasurementConsumer,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from clstock_otel_distro.patches import metric_records, registry

SAMPLED = trace.set_span_in_context(NonRecordingSpan(SpanContext(
    0x1234, 0x99, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
UNSAMPLED = trace.set_span_in_context(NonRecordingSpan(SpanContext(
    0x5678, 0x77, is_remote=False, trace_flags=TraceFlags(0))))

Scenario = Callable[[MeterProvider], None]


@pytest.fixture
def sdk_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[None]]:
    """Measurements that went the SDK's way (through the measurement consumer)."""
    calls: list[None] = []
    original = SynchronousMeasurementConsumer.consume_measurement

    def counting(self, measurement):
        calls.append(None)
        return original(self, measurement)

    monkeypatch.setattr(SynchronousMeasurementConsumer, "consume_measurement", counting)
    yield calls
    registry.uninstall(metric_records.PATCH)


def _collected(reader: InMemoryMetricReader) -> list[Any]:
    """Everything a reader collects, timestamps left out."""
    data = reader.get_metrics_data()
    found = []
    for resource_metrics in (data.resource_metrics if data else []):
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = []
                for point in metric.data.data_points:
                    fields = {name: value for name, value in vars(point).items()
                              if "time" not in name and name != "exemplars"}
                    for side in ("positive", "negative"):
                        if side in fields:
                            fields[side] = (fields[side].offset, list(fields[side].bucket_counts))
                    fields["attributes"] = dict(point.attributes or {})
                    fields["exemplars"] = [
                        (e.value, dict(e.filtered_attributes or {}), e.span_id, e.trace_id)
                        for e in point.exemplars]
                    points.append(fields)
                points.sort(key=lambda p: sorted((k, repr(v)) for k, v in p["attributes"].items()))
                found.append((scope_metrics.scope.name, metric.name, metric.unit,
                              type(metric.data).__name__,
                              getattr(metric.data, "aggregation_temporality", None), points))
    return sorted(found, key=repr)


def _run(scenario: Scenario, cached: bool, exemplar_filter: Any = None,
         views: tuple[View, ...] = ()) -> list[Any]:
    if cached:
        assert registry.install(metric_records.PATCH) is registry.PatchState.ACTIVE
    else:
        registry.uninstall(metric_records.PATCH)
    readers = (InMemoryMetricReader(),
               InMemoryMetricReader(preferred_temporality={
                   Counter: AggregationTemporality.DELTA,
                   UpDownCounter: AggregationTemporality.DELTA,
                   Histogram: AggregationTemporality.DELTA}))
    provider = MeterProvider(metric_readers=readers, views=views, shutdown_on_exit=False,
                             **({"exemplar_filter": exemplar_filter} if exemplar_filter else {}))
    random.seed(7)  # the fixed-size reservoirs sample at random: the same draws both times
    try:
        scenario(provider)
        return [_collected(reader) for reader in readers] + [
            _collected(reader) for reader in readers]  # a second collection: deltas reset
    finally:
        provider.shutdown()


def _both(scenario: Scenario, **kwargs: Any) -> tuple[list[Any], list[Any]]:
    return _run(scenario, cached=False, **kwargs), _run(scenario, cached=True, **kwargs)


def _http_server(provider: MeterProvider) -> None:
    """What the ASGI middleware records per request, over a few requests."""
    meter = provider.get_meter("opentelemetry.instrumentation.asgi")
    duration = meter.create_histogram("http.server.request.duration", unit="s")
    active = meter.create_up_down_counter("http.server.active_requests")
    size = meter.create_histogram("http.server.response.body.size", unit="By")
    for request in range(40):
        route = ("/health", "/api/v1/predict/{symbol}")[request % 2]
        status = 200 if request % 7 else 503
        started = {"http.request.method": "GET", "url.scheme": "http"}
        active.add(1, started, SAMPLED if request % 3 else None)
        attributes = {"http.request.method": "GET", "url.scheme": "http",
                      "network.protocol.version": "1.1", "http.route": route,
                      "http.response.status_code": status}
        duration.record(0.0004 * request, attributes, SAMPLED if request % 3 else UNSAMPLED)
        size.record(40 + request % 5, dict(reversed(attributes.items())), SAMPLED)
        active.add(-1, started)


def _operations(provider: MeterProvider) -> None:
    """The instrumentors' durations: one shared dict per operation, failures apart."""
    histogram = provider.get_meter("clstock").create_histogram("clstock.operation.duration")
    ok = {"clstock.operation": "calculate_score"}
    for call in range(60):
        histogram.record(0.001 * (call % 11), ok, SAMPLED)
        if call % 10 == 0:
            histogram.record(0.5, {**ok, "error.type": "ValueError"}, SAMPLED)
    token = context_api.attach(SAMPLED)  # no context given: the current one
    try:
        for _ in range(5):
            histogram.record(0.002, ok)
    finally:
        context_api.detach(token)


def _mixed_values(provider: MeterProvider) -> None:
    """1, 1.0 and True are three attribute sets; odd inputs go the SDK's way."""
    meter = provider.get_meter("mixed")
    counter = meter.create_counter("requests")
    histogram = meter.create_histogram("sizes")
    up_down = meter.create_up_down_counter("queue")
    for value in (1, 1.0, True, "1", 1, True, (1, 2), [1, 2]):
        for _ in range(3):
            counter.add(2, {"v": value})
            histogram.record(3.5, {"v": value})
    for amount in (1, -1, 0, 2.5, -3.0, math.inf, -math.inf, math.nan, True):
        counter.add(amount, {"k": "a"})
        histogram.record(amount, {"k": "a"})
        up_down.add(amount, {"k": "a"})
    for attributes in (None, {}, None, {"": "empty key"}, {3: "int key"}, {"k": None}):
        counter.add(1, attributes)
        histogram.record(1.0, attributes)


def _reused_dict(provider: MeterProvider) -> None:
    """A caller reusing and changing its dict after a record: exemplars keep what was recorded."""
    histogram = provider.get_meter("reuse").create_histogram("latency")
    attributes = {"route": "/a", "user": "u1"}
    for index in range(6):
        histogram.record(float(index), attributes, SAMPLED)
        histogram.record(float(index) + 0.5, attributes, SAMPLED)  # the same set again
        attributes["user"] = f"u{index + 2}"
        if index == 3:
            attributes["route"] = "/b"


SCENARIOS = {"http-server": _http_server, "operations": _operations,
             "mixed-values": _mixed_values, "reused-dict": _reused_dict}
FILTERS = {"trace-based": None, "always-on": AlwaysOnExemplarFilter(),
           "always-off": AlwaysOffExemplarFilter()}


@pytest.mark.parametrize("exemplar_filter", FILTERS.values(), ids=FILTERS.keys())
@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_collected_metrics_are_the_sdks(scenario, exemplar_filter, sdk_calls):
    sdk, cached = _both(scenario, exemplar_filter=exemplar_filter)
    assert cached == sdk
    assert any(reader for reader in sdk)  # something was collected


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_views_filtering_attributes_and_other_aggregations(scenario, sdk_calls):
    """Views keep some attribute keys (exemplars get the others), drop or re-aggregate."""
    views = (View(instrument_name="http.server.request.duration",
                  attribute_keys={"http.route", "http.response.status_code"}),
             View(instrument_name="http.server.response.body.size",
                  aggregation=ExponentialBucketHistogramAggregation()),
             View(instrument_name="http.server.active_requests", aggregation=DropAggregation()),
             View(instrument_name="clstock.operation.duration", attribute_keys={"error.type"}),
             View(instrument_name="clstock.operation.duration", name="by-operation"),
             View(instrument_name="latency", attribute_keys={"route"}),
             View(instrument_name="sizes", aggregation=ExponentialBucketHistogramAggregation()))
    sdk, cached = _both(scenario, views=views, exemplar_filter=AlwaysOnExemplarFilter())
    assert cached == sdk


def test_the_cache_is_really_taken(sdk_calls):
    """After the first measurement of an attribute set, the SDK's path is not used."""
    _run(_operations, cached=False)
    sdk_path = len(sdk_calls)
    sdk_calls.clear()
    _run(_operations, cached=True)
    # The first ok and the first failure measurement only.
    assert len(sdk_calls) == 2 < sdk_path


def test_a_meter_disabled_later_stops_recording(sdk_calls):
    def scenario(provider: MeterProvider) -> None:
        histogram = provider.get_meter("m").create_histogram("h")
        counter = provider.get_meter("m").create_counter("c")
        for _ in range(3):
            histogram.record(1.0, {"a": "b"})
            counter.add(1, {"a": "b"})
        provider._set_meter_configurator(meter_configurator=_disable_meter_configurator)
        for _ in range(3):
            histogram.record(1.0, {"a": "b"})
            counter.add(1, {"a": "b"})

    sdk, cached = _both(scenario)
    assert cached == sdk
    [points] = [metric[-1] for metric in sdk[0] if metric[1] == "c"]
    assert points[0]["value"] == 3  # the three before the meter was disabled


def test_bounded_per_instrument(sdk_calls, monkeypatch):
    """Beyond MAX_BOUND attribute sets, new ones go the SDK's way, still recorded."""
    monkeypatch.setattr(metric_records, "MAX_BOUND", 4)
    bound: list[int | None] = []

    def scenario(provider: MeterProvider) -> None:
        histogram = provider.get_meter("m").create_histogram("paths")
        for _ in range(2):
            for path in range(10):
                histogram.record(1.0, {"url.path": f"/p/{path}"})
        table = histogram.__dict__.get(metric_records._TABLE)
        bound.append(None if table is None else len(table))

    sdk, cached = _both(scenario)
    assert cached == sdk
    assert bound == [None, 4]  # no table the SDK's way; four sets remembered
    assert len(sdk[0][0][-1]) == 10


def test_undone_records_the_sdks_way_again(sdk_calls):
    registry.install(metric_records.PATCH)
    assert Histogram.record.__wrapped__ is not None
    registry.uninstall(metric_records.PATCH)
    assert not hasattr(Histogram.record, "__wrapped__")
    assert not hasattr(Counter.add, "__wrapped__")
    assert not hasattr(UpDownCounter.add, "__wrapped__")


def test_the_sdks_warnings_are_kept(sdk_calls, caplog):
    def scenario(provider: MeterProvider) -> None:
        histogram = provider.get_meter("m").create_histogram("h")
        histogram.record(1.0, {"a": "b"})
        histogram.record(-1.0, {"a": "b"})
        histogram.record(math.nan, {"a": "b"})

    _run(scenario, cached=False)
    sdk_messages = [r.getMessage() for r in caplog.records]
    caplog.clear()
    _run(scenario, cached=True)
    assert [r.getMessage() for r in caplog.records] == sdk_messages
    assert len(sdk_messages) == 2


def test_trace_based_filter_matches_the_sdk_for_each_context(sdk_calls):
    """Sampled, unsampled, invalid and absent spans, given and current."""
    def scenario(provider: MeterProvider) -> None:
        histogram = provider.get_meter("m").create_histogram("h")
        for context in (SAMPLED, UNSAMPLED, trace.set_span_in_context(trace.INVALID_SPAN),
                        context_api.Context(), None):
            histogram.record(2.0, {"k": "v"}, context)
            token = context_api.attach(SAMPLED)
            try:
                histogram.record(3.0, {"k": "v"}, context)
            finally:
                context_api.detach(token)

    sdk, cached = _both(scenario, exemplar_filter=TraceBasedExemplarFilter())
    assert cached == sdk
    exemplars = sdk[0][0][-1][0]["exemplars"]
    assert exemplars  # the sampled contexts gave exemplars


DURATIONS = [0.0004 * n for n in range(50)] + [0.0, 7.5, 12.0, 0.3]


def _deferred(values: list[float], context: Any = None) -> Scenario:
    """Durations handed over at once, as the deferred durations of non-sampled calls are."""
    def scenario(provider: MeterProvider) -> None:
        histogram = provider.get_meter("clstock").create_histogram("clstock.operation.duration")
        other = provider.get_meter("clstock").create_histogram("sizes")
        attributes = {"clstock.operation": "get_stock_data"}
        histogram.record(0.1, attributes)  # the set is known
        other.record(1.0, attributes)
        token = context_api.attach(context) if context is not None else None
        try:
            metric_records.record_all(histogram, values, attributes)
            metric_records.record_all(other, values, attributes)
            metric_records.record_all(histogram, values[:3], {"new": "set"})
        finally:
            if token is not None:
                context_api.detach(token)
    return scenario


@pytest.mark.parametrize("exemplar_filter", FILTERS.values(), ids=FILTERS.keys())
@pytest.mark.parametrize("context", [None, UNSAMPLED, SAMPLED], ids=["none", "unsampled",
                                                                     "sampled"])
def test_record_all_is_recording_each_value(context, exemplar_filter, sdk_calls):
    views = (View(instrument_name="sizes", aggregation=ExponentialBucketHistogramAggregation()),)
    scenario = _deferred(DURATIONS, context)
    sdk, cached = _both(scenario, exemplar_filter=exemplar_filter, views=views)
    assert cached == sdk
    [points] = [metric[-1] for metric in sdk[0] if metric[1] == "clstock.operation.duration"]
    assert sorted(point["count"] for point in points) == [3, len(DURATIONS) + 1]


def test_record_all_fills_buckets_at_once_when_no_exemplar_can_be_taken(sdk_calls):
    _run(_deferred(DURATIONS, UNSAMPLED), cached=True)
    # Only the first measurement of each set went the SDK's way; the new set value by value.
    assert len(sdk_calls) == 2 + 1


def test_record_all_with_odd_values_is_value_by_value(sdk_calls, caplog):
    """Negative and non-finite values: the SDK's warnings, each value judged alone."""
    odd = [0.1, -1.0, math.nan, math.inf, 2.0]
    sdk = _run(_deferred(odd), cached=False)
    sdk_messages = [r.getMessage() for r in caplog.records]
    caplog.clear()
    assert _run(_deferred(odd), cached=True) == sdk
    assert [r.getMessage() for r in caplog.records] == sdk_messages
    assert len(sdk_messages) == 3 + 3 + 2  # two instruments, then the first three again


@pytest.mark.parametrize("values", [DURATIONS, [0.1, -1.0, 2.0], [0.1, math.nan, 2.0],
                                    [math.inf, 0.5], [], [-0.0, 0.0]],
                         ids=["durations", "negative", "nan", "inf", "none", "zeros"])
def test_record_all_of_an_array_is_the_sdks(values, sdk_calls, caplog):
    """The waiting durations are an array of doubles (checked and summed in C): the same
    points, and the same warnings for odd values, as recording each value."""
    from array import array

    sdk = _run(_deferred(list(values)), cached=False)
    sdk_messages = [r.getMessage() for r in caplog.records]
    caplog.clear()
    assert _run(_deferred(array("d", values)), cached=True) == sdk
    assert [r.getMessage() for r in caplog.records] == sdk_messages


def _span_context(number: int, sampled: bool) -> SpanContext:
    return SpanContext(0xABC0 + number, 0x10 + number, is_remote=False,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0))


TRACED = [(0.0004 * (n % 17) + 0.001 * (n % 3), 1_000 + n, _span_context(n, n % 4 != 3))
          for n in range(60)]


def _hand_over(histogram: Any, durations: list, attributes: dict) -> None:
    """What a TracedSlot hands over for ``durations``: the values, and per bucket of the
    plan the last duration the exemplar filter keeps (or each value the SDK's way)."""
    plan = metric_records.traced_plan(histogram, attributes)
    exemplars = {}
    if isinstance(plan, metric_records.TracedPlan):
        for value, time_unix_nano, span_context in durations:
            if plan.samples(span_context):
                exemplars[bisect_left(plan.boundaries, value)] = (value, time_unix_nano,
                                                                   span_context)
        metric_records.record_all_traced(histogram, [value for value, _, _ in durations],
                                         exemplars, attributes)
    else:  # what recording each in its span's context does
        for value, _, span_context in durations:
            histogram.record(value, attributes,
                             trace.set_span_in_context(NonRecordingSpan(span_context)))


def _deferred_traced(provider: MeterProvider) -> None:
    """Traced calls' durations handed over at once, after the set's first recording."""
    meter = provider.get_meter("clstock")
    histogram = meter.create_histogram("clstock.operation.duration",
                                       explicit_bucket_boundaries_advisory=[0.001, 0.005, 0.01])
    other = meter.create_histogram("sizes")
    attributes = {"clstock.operation": "calculate_score", "host": "a"}
    for instrument in (histogram, other):
        instrument.record(0.1, attributes, SAMPLED)
        _hand_over(instrument, TRACED, attributes)
    _hand_over(histogram, TRACED[:5], {"never": "recorded"})


@pytest.mark.parametrize("exemplar_filter", FILTERS.values(), ids=FILTERS.keys())
def test_record_all_traced_is_recording_each_in_its_span_context(exemplar_filter, sdk_calls):
    views = (View(instrument_name="sizes", aggregation=ExponentialBucketHistogramAggregation()),
             View(instrument_name="clstock.operation.duration", attribute_keys={"host"}))
    sdk, cached = _both(_deferred_traced, exemplar_filter=exemplar_filter, views=views)
    assert cached == sdk
    [points] = [metric[-1] for metric in sdk[0] if metric[1] == "clstock.operation.duration"]
    assert sorted(point["count"] for point in points) == [5, len(TRACED) + 1]


def test_traced_plan_only_when_the_exemplars_can_be_kept(sdk_calls):
    registry.install(metric_records.PATCH)
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False,
                             views=[View(instrument_name="sizes",
                                         aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("m")
    histogram, sizes = meter.create_histogram("h"), meter.create_histogram("sizes")
    attributes = {"k": "v"}
    assert metric_records.traced_plan(histogram, attributes) is None  # not resolved yet
    histogram.record(1.0, attributes)
    sizes.record(1.0, attributes)
    plan = metric_records.traced_plan(histogram, attributes)
    assert isinstance(plan, metric_records.TracedPlan) and plan.boundaries[:2] == (0.0, 5.0)
    assert metric_records.traced_plan(sizes, attributes) is False  # exponential buckets
    registry.uninstall(metric_records.PATCH)
    assert metric_records.traced_plan(histogram, attributes) is False
    provider.shutdown()
