"""Duration metrics of traced calls: recorded at once with a span, deferred without one."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import ExemplarFilter
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from clstock_otel_distro.instrumentors._machinery import (
    ClassPatch,
    InstrumentationTelemetry,
    TraceSpec,
    calls,
    durations,
    traced,
)
from clstock_otel_distro.instrumentors._machinery.patches import uninstall_all
from clstock_otel_distro.patches import metric_records, registry
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    ERROR_TYPE,
)
from tests.support.otel_testing import Telemetry

_OK = {CLSTOCK_OPERATION_NAME: "Predictor.calculate_score"}
_UNSAMPLED = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True,
                                          trace_flags=TraceFlags(TraceFlags.DEFAULT)))


class QuoteError(Exception):
    """An application error."""


def _trace(kwargs: dict, module: types.ModuleType, patches: list) -> type:
    """A Predictor class in ``module``, its calculate_score traced with ``kwargs``
    (its InstrumentationTelemetry in ``Predictor.telemetry``)."""

    class Predictor:
        def calculate_score(self, symbol):
            if symbol == "bad":
                raise QuoteError(symbol)
            return 1.0

    module.Predictor = Predictor
    tel = InstrumentationTelemetry("tests.durations", kwargs, histogram=CLSTOCK_OPERATION_DURATION,
                             operation_key=CLSTOCK_OPERATION_NAME)
    patch = ClassPatch(module.__name__, "Predictor",
                                {"calculate_score": traced(tel, TraceSpec())})
    patches.append(patch.install())
    Predictor.telemetry = tel
    return Predictor


def _points(reader: InMemoryMetricReader) -> list[Any]:
    data = reader.get_metrics_data()
    return [point for rm in (data.resource_metrics if data else ())
            for sm in rm.scope_metrics for metric in sm.metrics
            if metric.name == CLSTOCK_OPERATION_DURATION for point in metric.data.data_points]


def _pending_count(cls: type) -> int:
    pending = cls.telemetry.pending
    return sum(len(values) for _, values in pending._slots.values())


def test_non_sampled_durations_wait_for_the_collection_and_all_arrive(telemetry, module,
                                                                      patches):
    """Without a span, durations are buffered, then recorded when the reader collects."""
    cls = _trace(telemetry.kwargs, module, patches)
    with trace.use_span(_UNSAMPLED):
        for _ in range(5):
            cls().calculate_score("7203")
    assert _pending_count(cls) == 5
    [point] = _points(telemetry.reader)
    assert dict(point.attributes) == _OK and point.count == 5 and point.sum > 0
    assert _pending_count(cls) == 0
    assert _points(telemetry.reader)[0].count == 5  # cumulative: nothing recorded twice


def test_recording_calls_are_recorded_at_once_in_their_span_context(module, patches):
    """A call with a recording span is recorded at once; its exemplar names that span."""
    pipeline = Telemetry.create()
    cls = _trace(pipeline.kwargs, module, patches)
    cls().calculate_score("7203")
    assert _pending_count(cls) == 0
    [point] = _points(pipeline.reader)
    span = pipeline.span("Predictor.calculate_score")
    assert point.count == 1
    assert [e.span_id for e in point.exemplars] == [span.context.span_id]
    pipeline.shutdown()


def test_failures_are_recorded_at_once_with_their_error_type(telemetry, module, patches):
    """A failed call is recorded at once, with error.type, sampled or not."""
    cls = _trace(telemetry.kwargs, module, patches)
    with trace.use_span(_UNSAMPLED), pytest.raises(QuoteError):
        cls().calculate_score("bad")
    assert _pending_count(cls) == 0
    [point] = _points(telemetry.reader)
    assert dict(point.attributes) == {**_OK, ERROR_TYPE: f"{__name__}.QuoteError"}


def test_a_full_buffer_records_at_once(telemetry, module, patches, monkeypatch):
    """Past PENDING_LIMIT values, calls are recorded directly: none is lost."""
    monkeypatch.setattr(calls, "PENDING_LIMIT", 3)
    cls = _trace(telemetry.kwargs, module, patches)
    with trace.use_span(_UNSAMPLED):
        for _ in range(10):
            cls().calculate_score("7203")
    assert _pending_count(cls) == 3
    assert _points(telemetry.reader)[0].count == 10


def test_deferral_can_be_turned_off(telemetry, module, patches):
    """defer_unsampled_durations=False records every call at once."""
    kwargs = {**telemetry.kwargs, "defer_unsampled_durations": False}
    cls = _trace(kwargs, module, patches)
    assert cls.telemetry.pending is None
    with trace.use_span(_UNSAMPLED):
        cls().calculate_score("7203")
    assert _points(telemetry.reader)[0].count == 1


@pytest.mark.parametrize(("value", "deferred"), [("false", False), ("0", False),
                                                ("true", True), ("maybe", True)])
def test_the_environment_variable_turns_deferral_off(telemetry, monkeypatch, value, deferred):
    """OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS, when no argument says; a bad value
    keeps the default (deferred)."""
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS", value)
    tel = InstrumentationTelemetry("tests.durations", telemetry.kwargs,
                             histogram=CLSTOCK_OPERATION_DURATION)
    assert (tel.pending is not None) is deferred
    explicit = InstrumentationTelemetry("tests.durations", {**telemetry.kwargs,
                                                      "defer_unsampled_durations": True},
                                  histogram=CLSTOCK_OPERATION_DURATION)
    assert explicit.pending is not None


def test_no_deferral_for_a_no_op_meter(module, patches):
    """A no-op histogram costs nothing to record into: no buffer is made for it."""
    tel = InstrumentationTelemetry("tests.durations", {"meter_provider": NoOpMeterProvider()},
                             histogram=CLSTOCK_OPERATION_DURATION)
    assert tel.pending is None


def test_instrumenting_again_shares_the_buffer_and_its_collection(module, patches):
    """A second Telemetry on the same meter reuses the buffer; every value still arrives."""
    reader = InMemoryMetricReader()
    kwargs = {"tracer_provider": Telemetry.create().tracer_provider,
              "meter_provider": MeterProvider(metric_readers=[reader])}
    first = _trace(kwargs, module, patches)
    with trace.use_span(_UNSAMPLED):
        first().calculate_score("7203")
    uninstall_all(patches)
    patches.clear()
    second = _trace(kwargs, module, patches)
    with trace.use_span(_UNSAMPLED):
        second().calculate_score("7203")
    assert second.telemetry.pending is first.telemetry.pending
    assert _points(reader)[0].count == 2
    kwargs["meter_provider"].shutdown()


def test_shutdown_exports_what_is_pending(module, patches):
    """A periodic reader's last export, at shutdown, includes the pending durations."""
    exported: list[Any] = []

    class Exporter(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000,
                   **kwargs: Any) -> MetricExportResult:
            exported.extend(point.count for rm in metrics_data.resource_metrics
                            for sm in rm.scope_metrics for metric in sm.metrics
                            if metric.name == CLSTOCK_OPERATION_DURATION
                            for point in metric.data.data_points)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    reader = PeriodicExportingMetricReader(Exporter(), export_interval_millis=3_600_000)
    kwargs = {"tracer_provider": Telemetry.create().tracer_provider,
              "meter_provider": MeterProvider(metric_readers=[reader])}
    cls = _trace(kwargs, module, patches)
    with trace.use_span(_UNSAMPLED):
        cls().calculate_score("7203")
    kwargs["meter_provider"].shutdown()
    assert exported == [1]


def test_a_forked_child_forgets_its_parents_pending_values(telemetry, module, patches):
    """After fork the child drops the inherited values: the parent records them."""
    predictor = _trace(telemetry.kwargs, module, patches)()
    with trace.use_span(_UNSAMPLED):
        predictor.calculate_score("7203")
    durations._forget_pending_in_child()
    assert _points(telemetry.reader) == []


# -- traced calls' durations, with the metric-record cache ----------------------------------


@pytest.fixture
def record_cache() -> Iterator[None]:
    """The metric-record cache installed (as the configurator does), undone afterwards."""
    assert registry.install(metric_records.PATCH) is registry.PatchState.ACTIVE
    yield
    registry.uninstall(metric_records.PATCH)


def _traced_durations(cls: type) -> int:
    return sum(len(slot) for _, slot in cls.telemetry.pending._traced.values())


def _run_traced(module: types.ModuleType, patches: list, monkeypatch: pytest.MonkeyPatch,
                **create: Any) -> tuple[Telemetry, type]:
    """Twenty traced calls with fixed durations under a sampled parent (not collected yet).

    The durations come from a fake clock: 1 ms, 2 ms, ... so that runs compare.
    """
    ticks = iter(range(10_000))
    monkeypatch.setattr(calls, "perf_counter", lambda: sum(range(next(ticks) + 1)) / 2000)
    pipeline = Telemetry.create(**create)
    cls = _trace(pipeline.kwargs, module, patches)
    with pipeline.tracer_provider.get_tracer("t").start_as_current_span("parent"):
        for _ in range(20):
            cls().calculate_score("7203")
    return pipeline, cls


def _comparable(points: list[Any], pipeline: Telemetry) -> list[Any]:
    """Points with each exemplar's span named by its position among the finished spans."""
    spans = pipeline.spans()
    order = {span.context.span_id: index for index, span in enumerate(spans)}
    trace_id = spans[0].context.trace_id
    return [(dict(p.attributes), p.count, p.sum, p.min, p.max, list(p.bucket_counts),
             [(e.value, order.get(e.span_id), e.trace_id == trace_id,
               dict(e.filtered_attributes or {}))
              for e in p.exemplars]) for p in points]


def test_traced_durations_wait_and_arrive_with_the_sdks_exemplars(module, patches,
                                                                   monkeypatch, record_cache):
    """After the set's first recording, traced calls' durations wait for the collection;
    the histogram and its exemplars are those of recording each at once."""
    pipeline, cls = _run_traced(module, patches, monkeypatch)
    # The first call went the SDK's way (it resolves the set), the 19 others wait.
    assert _traced_durations(cls) == 19
    waited = _comparable(_points(pipeline.reader), pipeline)
    assert _traced_durations(cls) == 0
    pipeline.shutdown()
    uninstall_all(patches)
    patches.clear()
    registry.uninstall(metric_records.PATCH)
    sdk_pipeline, sdk_cls = _run_traced(module, patches, monkeypatch)
    assert _traced_durations(sdk_cls) == 0  # without the cache: recorded at once
    assert waited == _comparable(_points(sdk_pipeline.reader), sdk_pipeline)
    [(_, count, _, _, _, buckets, exemplars)] = waited
    assert count == 20 and len(exemplars) == len([b for b in buckets if b])
    sdk_pipeline.shutdown()


def test_traced_durations_record_at_once_past_their_limit(module, patches, monkeypatch,
                                                          record_cache):
    monkeypatch.setattr(calls, "TRACED_PENDING_LIMIT", 4)
    pipeline, cls = _run_traced(module, patches, monkeypatch)
    assert _traced_durations(cls) == 4
    assert _points(pipeline.reader)[0].count == 20
    assert _traced_durations(cls) == 0
    pipeline.shutdown()


def test_traced_durations_with_another_exemplar_filter_record_at_once(module, patches,
                                                                      monkeypatch, record_cache):
    """A filter of the application's own may look at anything: no waiting."""
    class EverySecond(ExemplarFilter):
        def should_sample(self, value, time_unix_nano, attributes, context):
            return int(value * 1000) % 2 == 0

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=EverySecond())
    pipeline = Telemetry.create()
    cls = _trace({**pipeline.kwargs, "meter_provider": provider}, module, patches)
    with pipeline.tracer_provider.get_tracer("t").start_as_current_span("parent"):
        for _ in range(5):
            cls().calculate_score("7203")
    assert _traced_durations(cls) == 0
    assert _points(reader)[0].count == 5
    pipeline.shutdown()
    provider.shutdown()
