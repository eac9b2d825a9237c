"""The wire corpus: the same spans through the SDK's pipeline and the distro's decode alike.

Every scenario runs once on an SDK ``TracerProvider`` and once on a
``PipelineTracerProvider`` (same settings, same ids, explicit times); the SDK's
spans are encoded by its OTLP encoder, the pipeline's by its processor, and the two
``ExportTraceServiceRequest`` s are compared field by field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.status import Status, StatusCode

from clstock_otel_distro.sdk.pipeline import PipelineTracerProvider, build_span_processor
from clstock_otel_distro.sdk.redaction import RedactingBatchSpanProcessor
from tests.distro.pipeline_testing import (
    Pipelines,
    SequentialIds,
    normalized,
    run_both,
    sdk_request,
)
from tests.support.receiver import RecordingReceiver

T0 = 1_700_000_000_000_000_000
REMOTE = SpanContext(0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0, 0x0BAD_CAFE_0BAD_CAFE, True,
                     TraceFlags(TraceFlags.SAMPLED), TraceState([("vendor", "v1"), ("b", "2")]))
REMOTE_NOT_SAMPLED = SpanContext(0xFEED, 0xBEEF, True, TraceFlags(0))
EVERY_TYPE: dict[str, Any] = {
    "str": "value", "empty.str": "", "unicode": "株価 ✓", "bool.true": True, "bool.false": False,
    "int": 42, "int.zero": 0, "int.negative": -7, "int.max": 2**63 - 1, "int.min": -(2**63),
    "float": 3.25, "float.negative.zero": -0.0, "float.inf": math.inf, "float.tiny": 5e-324,
    "bytes": b"\x00\xff", "strs": ["a", "b"], "ints": (1, -2, 3), "floats": [0.5, 1.5],
    "bools": [True, False], "empty.list": [], "mixed": [1, "two", 3.0],
    "mapping": {"k": "v", "n": 1}, "none": None,
}


def _corpus(provider: TracerProvider) -> None:
    """Every field the OTLP span carries, from every API entry point."""
    api = provider.get_tracer("corpus.api", "1.2.3")
    other = provider.get_tracer("corpus.other", "", schema_url="https://opentelemetry.io/schemas/1.21.0",
                                attributes={"scope.attr": "x", "scope.n": 3})
    root = api.start_span("root", kind=SpanKind.SERVER, start_time=T0,
                          attributes={"http.request.method": "GET", "url.path": "/"})
    with trace.use_span(root, end_on_exit=False):
        for index, kind in enumerate(SpanKind):
            with api.start_as_current_span(f"kind.{kind.name}", kind=kind, end_on_exit=False,
                                           start_time=T0 + index) as span:
                span.set_attributes(EVERY_TYPE)
                span.add_event("event", {"e": 1, "list": ["x"]}, timestamp=T0 + 10)
                span.add_event("bare", timestamp=T0 + 11)
                span.end(T0 + 100 + index)
        with other.start_as_current_span("status.error", start_time=T0 + 20,
                                         end_on_exit=False) as span:
            span.set_status(Status(StatusCode.ERROR, "it broke"))
            span.end(T0 + 21)
        with other.start_as_current_span("status.ok", start_time=T0 + 22,
                                         end_on_exit=False) as span:
            span.set_status(StatusCode.OK)
            span.set_status(StatusCode.ERROR, "ignored: OK is final")
            span.end(T0 + 23)
        renamed = api.start_span("before", start_time=T0 + 24)
        renamed.update_name("after")
        renamed.set_attribute("url.full", "https://user:secret@example.com/q?api_key=k1&symbol=7203")
        renamed.end(T0 + 25)
        linked = api.start_span(
            "linked", start_time=T0 + 26,
            links=[Link(REMOTE, {"link.attr": "a"}), Link(root.get_span_context())])
        linked.add_link(REMOTE_NOT_SAMPLED, {"late": True})
        linked.add_link(trace.INVALID_SPAN_CONTEXT)  # invalid, no attributes: ignored
        linked.end(T0 + 27)
        failing = api.start_span("exception", start_time=T0 + 28)
        try:
            raise ValueError("bad symbol 6502")
        except ValueError as error:
            failing.record_exception(error, {"extra": "x"}, timestamp=T0 + 29)
        failing.end(T0 + 30)
    root.set_status(Status(StatusCode.ERROR, "GET https://api.example/q?token=t0p failed"))
    root.end(T0 + 1000)

    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    with api.start_as_current_span("remote.child", context=remote, start_time=T0 + 40,
                                   end_on_exit=False) as child:
        with api.start_as_current_span("grandchild", start_time=T0 + 41,
                                       end_on_exit=False) as grandchild:
            grandchild.end(T0 + 42)
        child.end(T0 + 43)
    dropped = trace.set_span_in_context(NonRecordingSpan(REMOTE_NOT_SAMPLED))
    with api.start_as_current_span("never.exported", context=dropped) as span:
        assert not span.is_recording()


@pytest.fixture
def pipelines() -> Iterator[Pipelines]:
    resource = Resource.create({"service.name": "wire", "deployment.environment": "test"},
                               schema_url="https://opentelemetry.io/schemas/1.21.0")
    created = Pipelines.create(resource=resource, ids=SequentialIds, max_export_batch_size=4)
    yield created
    created.shutdown()


def _assert_same(sdk: ExportTraceServiceRequest, ours: ExportTraceServiceRequest) -> None:
    sdk_normal, ours_normal = normalized(sdk), normalized(ours)
    sdk_spans = [s for r in sdk_normal.resource_spans for g in r.scope_spans for s in g.spans]
    our_spans = [s for r in ours_normal.resource_spans for g in r.scope_spans for s in g.spans]
    assert len(our_spans) == len(sdk_spans)
    for expected, actual in zip(sdk_spans, our_spans, strict=True):
        assert actual == expected, f"span {expected.name!r} differs"
    assert ours_normal == sdk_normal


def test_corpus_decodes_to_the_sdk_request(pipelines: Pipelines) -> None:
    """Every attribute type, events, links, status, kinds, remote parents, scopes: same OTLP."""
    run_both(pipelines, _corpus)
    sdk = sdk_request(pipelines.sdk_spans())
    ours = pipelines.pipeline_request()
    assert len(pipelines.capture.payloads) > 1  # several batches of 4
    _assert_same(sdk, ours)
    names = {span.name for r in ours.resource_spans for g in r.scope_spans for span in g.spans}
    assert {"after", "linked", "exception", "remote.child", "grandchild"} <= names
    assert "never.exported" not in names


def test_corpus_is_redacted_like_the_sdk_path(pipelines: Pipelines) -> None:
    """URL credentials and secret query values are redacted in attributes and status."""
    run_both(pipelines, _corpus)
    request = pipelines.pipeline_request()
    spans = {s.name: s for r in request.resource_spans for g in r.scope_spans for s in g.spans}
    url = {kv.key: kv.value.string_value for kv in spans["after"].attributes}["url.full"]
    assert url == "https://REDACTED:REDACTED@example.com/q?api_key=REDACTED&symbol=7203"
    assert spans["root"].status.message == "GET https://api.example/q?token=REDACTED failed"


def test_single_batch_is_byte_identical(pipelines: Pipelines) -> None:
    """One batch of one scope: the very bytes the SDK's exporter would send."""

    def scenario(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("bytes", "1")
        with tracer.start_as_current_span("a", start_time=T0, end_on_exit=False) as span:
            span.set_attributes({"s": "v", "i": 1, "f": 0.5, "b": True})
            with tracer.start_as_current_span("b", start_time=T0 + 1, end_on_exit=False) as child:
                child.end(T0 + 2)
            span.end(T0 + 3)

    run_both(pipelines, scenario)
    pipelines.processor.force_flush()
    assert len(pipelines.capture.payloads) == 1
    assert pipelines.capture.payloads[0] == sdk_request(
        pipelines.sdk_spans()).SerializePartialToString()


def test_random_ids_take_the_inline_path_with_the_same_result() -> None:
    """With the SDK's random ids and default sampler (the inline path), the output is the SDK's."""
    created = Pipelines.create(max_export_batch_size=8)
    try:
        tracer = created.pipeline.get_tracer("x")
        assert tracer._quick
        run_both(created, _corpus, seed=11)
        _assert_same(sdk_request(created.sdk_spans()), created.pipeline_request())
    finally:
        created.shutdown()


def test_span_limits_truncate_and_count_drops_like_the_sdk() -> None:
    """Attribute count and length, event and link counts and their attribute limits."""
    limits = SpanLimits(max_span_attributes=3, max_span_attribute_length=4, max_attribute_length=2,
                        max_events=2, max_links=1, max_event_attributes=1, max_link_attributes=1)

    def scenario(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("limits")
        span = tracer.start_span("limited", start_time=T0, attributes={"a": "abcdef", "b": 1},
                                 links=[Link(REMOTE, {"x": 1, "y": 2}), Link(REMOTE_NOT_SAMPLED)])
        span.set_attribute("c", ["long", "longer"])
        span.set_attribute("d", 2.5)  # evicts "a"
        span.set_attribute("b", 3)  # re-set: moves to the end
        for index in range(4):
            span.add_event(f"e{index}", {"k": "value", "l": "value"}, timestamp=T0 + index)
        span.add_link(REMOTE, {"z": 1})
        span.end(T0 + 10)

    created = Pipelines.create(span_limits=limits, ids=SequentialIds)
    try:
        run_both(created, scenario)
        sdk = sdk_request(created.sdk_spans())
        ours = created.pipeline_request()
        _assert_same(sdk, ours)
        span = ours.resource_spans[0].scope_spans[0].spans[0]
        assert [kv.key for kv in span.attributes] == ["c", "d", "b"]
        assert span.dropped_attributes_count == 1
        assert span.dropped_events_count == 2 and span.dropped_links_count == 2
        assert span.events[0].dropped_attributes_count == 1
    finally:
        created.shutdown()


def test_custom_sampler_decisions_match_the_sdk() -> None:
    """A ratio sampler drops and keeps the same traces as in the SDK (same ids)."""

    def scenario(provider: TracerProvider) -> list[bool]:
        tracer = provider.get_tracer("sampled")
        recorded = []
        for index in range(40):
            with tracer.start_as_current_span(f"t{index}", start_time=T0,
                                              end_on_exit=False) as span:
                recorded.append(span.is_recording())
                span.end(T0 + 1)
        return recorded

    sampler = ParentBased(TraceIdRatioBased(0.5))
    created = Pipelines.create(sampler=sampler)
    try:
        sdk_recorded, our_recorded = run_both(created, scenario)
        assert sdk_recorded == our_recorded and 0 < sum(our_recorded) < 40
        _assert_same(sdk_request(created.sdk_spans()), created.pipeline_request())
    finally:
        created.shutdown()


def test_unencodable_values_are_left_out_as_by_the_sdk(
        pipelines: Pipelines, caplog: pytest.LogCaptureFixture) -> None:
    """An int beyond 64 bits or a lone surrogate: that attribute is left out, one warning."""

    def scenario(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("bad")
        for index in range(3):
            span = tracer.start_span(f"bad{index}", start_time=T0)
            span.set_attributes({"huge": 2**64, "surrogate": "\ud800", "fine": "ok"})
            span.end(T0 + 1)

    with caplog.at_level(logging.WARNING, logger="clstock_otel_distro.sdk.pipeline"):
        run_both(pipelines, scenario)
        sdk_spans = pipelines.sdk_spans()
        logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal").disabled = True
        try:
            sdk = sdk_request(sdk_spans)
        finally:
            logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal").disabled = False
        ours = pipelines.pipeline_request()
    _assert_same(sdk, ours)
    span = ours.resource_spans[0].scope_spans[0].spans[0]
    assert [kv.key for kv in span.attributes] == ["fine"]
    warnings = [r for r in caplog.records if r.name.startswith("clstock_otel_distro.sdk.pipeline")]
    assert len(warnings) == 2  # one per key and type, not per span
    assert "'huge'" in warnings[0].getMessage() and "left out" in warnings[0].getMessage()


@pytest.fixture(scope="module")
def receiver() -> Iterator[RecordingReceiver]:
    started = RecordingReceiver(grpc_port=None).start()
    yield started
    started.stop()


def test_receiver_accepts_both_pipelines(receiver: RecordingReceiver) -> None:
    """Over real HTTP, through the SDK's OTLP exporter, a collector-style receiver takes both."""
    endpoint = f"{receiver.http_endpoint}/v1/traces"
    sdk = TracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    # The distro's SDK path (OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE=sdk) redacts too.
    sdk.add_span_processor(RedactingBatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    ours = PipelineTracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    ours.add_span_processor(build_span_processor(OTLPSpanExporter(endpoint=endpoint)))
    assert ours.pipeline_active
    receiver.clear()
    for provider in (sdk, ours):
        _corpus(provider)
        assert provider.force_flush(10_000)
        provider.shutdown()
    requests = receiver.raw_trace_requests()
    received = receiver.spans()
    assert len(received) == 2 * 13
    by_name: dict[str, list[Any]] = {}
    for span in received:
        by_name.setdefault(span.name, []).append(span)
    for name, pair in by_name.items():
        assert len(pair) == 2, name
        first, second = pair
        assert (first.trace_id, first.span_id, first.parent_span_id, first.attributes,
                first.events, first.links, first.status_code, first.status_message,
                first.trace_state, first.scope_name, first.resource) == (
                second.trace_id, second.span_id, second.parent_span_id, second.attributes,
                second.events, second.links, second.status_code, second.status_message,
                second.trace_state, second.scope_name, second.resource), name
    # One provider after the other: the same request, decoded, from each.
    merged = [ExportTraceServiceRequest() for _ in range(2)]
    half = len(requests) // 2
    for index, request in enumerate(requests):
        merged[0 if index < half else 1].MergeFrom(request)
    assert normalized(merged[0]) == normalized(merged[1])


def test_attribute_cache_keeps_equal_values_of_other_types_apart_and_stays_bounded(
        pipelines: Pipelines, monkeypatch: pytest.MonkeyPatch) -> None:
    """1, True and 1.0 (equal as keys) under one key encode apart, seen in any order; past
    its bound the cache starts again, and the bytes stay the SDK's."""
    from clstock_otel_distro.sdk.pipeline import encoder

    monkeypatch.setattr(encoder, "MAX_CACHED_ATTRIBUTES", 5)

    def scenario(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("cache", "1")
        values = [1, True, 1.0, 0, False, -0.0, 0.0, "1", 2, 3, 4, 5, 6, True, 1]
        for offset, value in enumerate(values * 2):
            span = tracer.start_span("s", start_time=T0 + offset)
            span.set_attribute("k", value)
            span.set_attribute(f"k{offset % 7}", offset)
            span.end(T0 + offset + 1)

    run_both(pipelines, scenario)
    _assert_same(sdk_request(pipelines.sdk_spans()), pipelines.pipeline_request())
    assert len(pipelines.capture.payloads) > 5  # batches of 4: the cache carried over
    assert pipelines.processor._encoder._cached <= 5


def test_static_attributes_joined_once_decode_as_the_sdks() -> None:
    """Spans started with start_span_adopting(static=...) (a traced operation's code
    attributes leading its dict) decode to the SDK's spans: as given; with attributes
    added; with a static key set again (it moves: the joined prefix no longer applies);
    with a redacted key among the static ones; a second operation's static dict."""
    static = {"code.function.name": "f", "code.file.path": "/app/m.py", "code.line.number": 7}
    other = {"code.function.name": "g", "url.full": "https://u:p@example.com/q?token=t"}

    def scenario(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("static", "1")
        with tracer.start_as_current_span("parent", start_time=T0, end_on_exit=False) as root:
            context = trace.set_span_in_context(root)
            for offset, (given, extra, again) in enumerate([
                    (static, {"clstock.symbol": "7203", "clstock.score": 61.5}, None),
                    (static, {"clstock.symbol": "6758"}, "code.line.number"),
                    (other, {"n": 1}, None), (static, {}, None)]):
                attributes = {**given, **extra}
                start = getattr(tracer, "start_span_adopting", None)
                span = (start(f"op{offset}", context, trace.SpanKind.INTERNAL, attributes, given)
                        if start else tracer.start_span(f"op{offset}", context,
                                                        attributes=attributes))
                span.set_attribute("late", True)
                if again:
                    span.set_attribute(again, 8)
                span.end(T0 + offset + 2)
            root.end(T0 + 10)

    pipelines = Pipelines.create()  # random ids (the same seed on both): the inline path
    try:
        run_both(pipelines, scenario)
        requests = [sdk_request(pipelines.sdk_spans()), pipelines.pipeline_request()]
        statics = len(pipelines.processor._encoder._statics)
    finally:
        pipelines.shutdown()
    for request in requests:  # start_span_adopting starts at the current time
        for resource_spans in request.resource_spans:
            for group in resource_spans.scope_spans:
                for span in group.spans:
                    if span.name.startswith("op"):
                        span.start_time_unix_nano = T0 + 1
    _assert_same(*requests)
    assert statics == 2
