"""The one OTLP JSON codec: what ``encode_spans`` writes, ``decode_spans`` reads back, and
both agree with protobuf's own OTLP JSON parser and the SDK's own OTLP encoder."""

from __future__ import annotations

import json
import math

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from clstock_otel_distro.tools.otlp_data import ReceivedSpan, decode_trace_request
from clstock_otel_distro.tools.otlp_json import decode_spans, encode_spans, from_otlp_json
from tests.distro.test_collect import COLLECTOR_LINE as CLSTOCK_COLLECTOR_LINE
from tests.distro.test_report import COLLECTOR_LINE, fixture_lines

REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("clstock", "1")]),
)
LINKED = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True)
# Every attribute type OTLP has, with the doubles whose spelling is easiest to get wrong.
ATTRIBUTES = {
    "clstock.symbol": "東京 \"7203\"\n",
    "clstock.cached": False,
    "clstock.rows": -(2**63),
    "clstock.score": 72.5,
    "clstock.tiny": 1e-7,
    "clstock.huge": 1.5e21,
    "clstock.infinite": -math.inf,
    "clstock.blob": b"\x00\x01\xff",
    "clstock.symbols": ("7203", "6758"),
    "clstock.windows": (5, 20, 60),
    "clstock.weights": (0.5, 1.0),
    "clstock.flags": (True, False),
}


def sdk_spans() -> list[ReceivedSpan]:
    """A trace made by the real SDK, through its own OTLP encoder and our protobuf decoder."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "clstock-api", "pid": 7}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.otlp_json", "1.0")
    server = tracer.start_span(
        "GET /api/v1/predict/{symbol}",
        context=set_span_in_context(NonRecordingSpan(REMOTE)),
        kind=SpanKind.SERVER,
        links=[Link(LINKED, {"reason": "retry"})],
    )
    child = tracer.start_span(
        "StockPredictor.predict", context=set_span_in_context(server), attributes=ATTRIBUTES
    )
    child.add_event("exception", {"exception.type": "DataFetchError"})
    child.set_status(Status(StatusCode.ERROR, "no data for 6502"))
    child.end()
    server.set_status(Status(StatusCode.OK))
    server.end()
    other = provider.get_tracer("tests.otlp_json.other").start_span("cache.lookup")
    other.end()
    provider.shutdown()
    return decode_trace_request(sdk_encode(memory.get_finished_spans()), "file")


def protobuf_decoded(line: str) -> list[ReceivedSpan]:
    """The spans protobuf's own OTLP JSON parser reads from ``line``."""
    return decode_trace_request(from_otlp_json(line, ExportTraceServiceRequest), "file")


def test_encoded_sdk_spans_decode_to_the_same_spans():
    """decode_spans(encode_spans(spans)) == spans, for every field the SDK sets."""
    spans = sdk_spans()
    assert [s.name for s in spans] == [
        "StockPredictor.predict",
        "GET /api/v1/predict/{symbol}",
        "cache.lookup",
    ]
    line = encode_spans(spans)
    assert "\n" not in line
    assert decode_spans(line) == spans
    # And what we wrote is OTLP JSON to protobuf's parser, giving those same spans.
    assert protobuf_decoded(line) == spans
    child, server, _ = spans
    assert (server.parent_span_id, server.parent_is_remote) == (f"{REMOTE.span_id:016x}", True)
    assert child.attributes == ATTRIBUTES
    assert (child.status_code, child.status_message) == ("ERROR", "no data for 6502")


def _named_enums_and_numbers(line: str) -> str:
    """The same document with enums as names and 64-bit integers as JSON numbers."""
    document = json.loads(line)
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                span["kind"] = "SPAN_KIND_" + ("SERVER" if span.get("kind") == 2 else "INTERNAL")
                span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
                status = span["status"]
                status["code"] = "STATUS_CODE_" + ["UNSET", "OK", "ERROR"][status.get("code", 0)]
    return json.dumps(document)


@pytest.mark.parametrize(
    "source", ["sdk", "collector", "clstock-collector", "report-fixture", "named-enums"]
)
def test_decoding_agrees_with_protobufs_parser_and_round_trips(source: str):
    """Every line decodes exactly as protobuf's parser does; encoding it again loses nothing."""
    lines = {
        "sdk": lambda: [encode_spans(sdk_spans())],
        "collector": lambda: [COLLECTOR_LINE],
        "clstock-collector": lambda: [CLSTOCK_COLLECTOR_LINE],
        "report-fixture": fixture_lines,
        "named-enums": lambda: [_named_enums_and_numbers(encode_spans(sdk_spans()))],
    }[source]()
    for line in lines:
        spans = decode_spans(line)
        assert spans, line
        assert spans == protobuf_decoded(line)
        assert decode_spans(encode_spans(spans)) == spans


def test_a_field_the_fast_walk_does_not_expect_is_read_by_protobufs_parser():
    """A double written as a numeric string is valid OTLP JSON: the fallback reads it."""
    span = {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "x"}
    span["attributes"] = [{"key": "ratio", "value": {"doubleValue": "1e5"}}]
    line = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    [decoded] = decode_spans(line, transport="http")
    assert (decoded.attributes, decoded.transport) == ({"ratio": 100000.0}, "http")


@pytest.mark.parametrize(
    "line",
    [
        '{"resourceMetrics": []}',
        "[1, 2]",
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}',
        '{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}',
        "not json",
    ],
    ids=["metrics", "not-an-object", "bad-id", "bad-enum", "not-json"],
)
def test_what_is_not_otlp_json_traces_is_refused(line: str):
    """A document that is not OTLP JSON traces raises instead of giving made-up spans."""
    with pytest.raises(Exception) as caught:
        decode_spans(line)
    assert isinstance(caught.value, ValueError) or type(caught.value).__name__ == "ParseError"


def test_an_empty_document_is_no_spans_and_no_spans_encode_to_one():
    """{} is a valid TracesData without spans, and what encode_spans writes for none."""
    assert encode_spans([]) == "{}"
    assert decode_spans("{}") == []
