"""Tests for the embedded OTLP receiver, fed by the real OpenTelemetry SDK exporters."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from clstock_otel_distro.tools.otlp_data import (
    ReceivedEvent,
    ReceivedLink,
    ReceivedLog,
    ReceivedSpan,
)
from clstock_otel_distro.tools.otlp_json import encode_spans, from_otlp_json
from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver
from tests.support.receiver import RecordingReceiver

RESOURCE_ATTRIBUTES = {
    "service.name": "clstock-api",
    "service.version": "1.0.0",
    "deployment.environment.name": "test",
}
# Resource(...) rather than Resource.create(...): no SDK/env attributes merged in.
RESOURCE = Resource(RESOURCE_ATTRIBUTES)
SCOPE = ("tests.otlp_receiver", "1.2.3")

# W3C trace-context examples: an incoming remote parent and a linked span.
REMOTE_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN_ID = "b7ad6b7169203331"
LINKED_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
LINKED_SPAN_ID = "00f067aa0ba902b7"

ALL_ATTRIBUTE_TYPES = {
    "clstock.symbol": "7203.T",
    "clstock.cached": False,
    "clstock.rows": 250,
    "clstock.score": 0.875,
    "clstock.symbols": ("7203.T", "6758.T"),
    "clstock.flags": (True, False),
    "clstock.windows": (5, 20, 60),
    "clstock.weights": (0.5, 1.5),
}

# A hand-written OTLP JSON request: hex ids, int enums, int64 as strings, base64 bytes.
OTLP_JSON_REQUEST = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "json-scope", "version": "2.0"},
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "POST /train",
                            "kind": 2,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "attributes": [
                                {"key": "count", "value": {"intValue": "42"}},
                                {"key": "ratio", "value": {"doubleValue": 0.25}},
                                {"key": "ok", "value": {"boolValue": True}},
                                {"key": "blob", "value": {"bytesValue": "AAH/"}},
                                {
                                    "key": "mixed",
                                    "value": {
                                        "arrayValue": {
                                            "values": [{"stringValue": "a"}, {"intValue": 7}]
                                        }
                                    },
                                },
                                {
                                    "key": "nested",
                                    "value": {
                                        "kvlistValue": {
                                            "values": [
                                                {"key": "traceId", "value": {"stringValue": "x"}}
                                            ]
                                        }
                                    },
                                },
                                {"key": "empty", "value": {}},
                            ],
                            "events": [
                                {
                                    "timeUnixNano": "1544712660500000000",
                                    "name": "checkpoint",
                                    "attributes": [{"key": "epoch", "value": {"intValue": 3}}],
                                }
                            ],
                            "links": [
                                {
                                    "traceId": LINKED_TRACE_ID,
                                    "spanId": LINKED_SPAN_ID,
                                    "traceState": "vendor=1",
                                }
                            ],
                            "status": {"code": 2, "message": "diverged"},
                            "flags": 768,
                            "aFieldFromTheFuture": "ignored",
                        }
                    ],
                }
            ],
        }
    ]
}

EXPECTED_JSON_SPAN = ReceivedSpan(
    trace_id="5b8efff798038103d269b633813fc60c",
    span_id="eee19b7ec3c1b174",
    parent_span_id="eee19b7ec3c1b173",
    name="POST /train",
    kind="SERVER",
    start_time_unix_nano=1544712660000000000,
    end_time_unix_nano=1544712661000000000,
    attributes={
        "count": 42,
        "ratio": 0.25,
        "ok": True,
        "blob": b"\x00\x01\xff",
        "mixed": ("a", 7),
        "nested": {"traceId": "x"},
        "empty": None,
    },
    status_code="ERROR",
    status_message="diverged",
    events=(ReceivedEvent("checkpoint", 1544712660500000000, {"epoch": 3}),),
    links=(ReceivedLink(LINKED_TRACE_ID, LINKED_SPAN_ID, {}, "vendor=1"),),
    resource={"service.name": "json"},
    scope_name="json-scope",
    scope_version="2.0",
    transport="http",
    parent_is_remote=True,
)


@pytest.fixture(scope="module")
def receiver() -> Iterator[RecordingReceiver]:
    """One receiver shared by the module's tests."""
    with RecordingReceiver() as shared:
        yield shared


@pytest.fixture(autouse=True)
def _empty_receiver(receiver: RecordingReceiver) -> None:
    """Each test starts with an empty store."""
    receiver.clear()


def _span_exporter(receiver: RecordingReceiver, transport: str) -> Any:
    if transport == "http":
        return HttpSpanExporter(
            endpoint=f"{receiver.http_endpoint}/v1/traces", compression=Compression.Gzip
        )
    return GrpcSpanExporter(
        endpoint=receiver.grpc_endpoint, insecure=True, compression=grpc.Compression.Gzip
    )


def _hex_span_id(span: trace.Span) -> str:
    return format(span.get_span_context().span_id, "016x")


def _export_one_span(receiver: RecordingReceiver, name: str) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(_span_exporter(receiver, "http")))
    provider.get_tracer(*SCOPE).start_span(name).end()
    provider.shutdown()


def _post(
    receiver: RecordingReceiver,
    path: str,
    body: bytes | Iterator[bytes],
    headers: dict[str, str],
    method: str = "POST",
) -> tuple[int, http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=5)
    try:
        connection.request(
            method, path, body=body, headers=headers, encode_chunked=not isinstance(body, bytes)
        )
        response = connection.getresponse()
        return response.status, response, response.read()
    finally:
        connection.close()


def _json_request_bytes() -> bytes:
    return json.dumps(OTLP_JSON_REQUEST).encode()


def _protobuf_request_bytes() -> bytes:
    return from_otlp_json(_json_request_bytes(), ExportTraceServiceRequest).SerializeToString()


@pytest.mark.parametrize(
    ("transport", "processor"), [("http", SimpleSpanProcessor), ("grpc", BatchSpanProcessor)]
)
def test_span_tree_is_decoded_exactly(receiver: RecordingReceiver, transport: str, processor: Any):
    """A parent/child/grandchild tree arrives with every field decoded exactly."""
    before = receiver.stats()[transport]
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(processor(_span_exporter(receiver, transport)))
    tracer = provider.get_tracer(*SCOPE)
    remote_parent = SpanContext(
        int(REMOTE_TRACE_ID, 16), int(REMOTE_SPAN_ID, 16), True, TraceFlags(TraceFlags.SAMPLED)
    )
    linked = SpanContext(int(LINKED_TRACE_ID, 16), int(LINKED_SPAN_ID, 16), True)

    server = tracer.start_span(
        "GET /recommendations",
        context=trace.set_span_in_context(NonRecordingSpan(remote_parent)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET"},
        start_time=1_000_000,
    )
    predict = tracer.start_span(
        "StockPredictor.calculate_score",
        context=trace.set_span_in_context(server),
        attributes=ALL_ATTRIBUTE_TYPES,
        links=[Link(linked, {"clstock.link": "batch"})],
        start_time=2_000_000,
    )
    predict.add_event("cache.miss", {"clstock.symbol": "7203.T", "attempt": 2}, 2_500_000)
    predict.set_status(Status(StatusCode.ERROR, "no price data"))
    fetch = tracer.start_span(
        "yfinance history",
        context=trace.set_span_in_context(predict),
        kind=SpanKind.CLIENT,
        start_time=3_000_000,
    )
    fetch.end(end_time=4_000_000)
    predict.end(end_time=5_000_000)
    server.set_status(Status(StatusCode.OK))
    server.end(end_time=9_000_000)
    provider.shutdown()

    spans = receiver.wait_for_spans(count=3, timeout=5)
    common = {
        "trace_id": REMOTE_TRACE_ID,
        "resource": RESOURCE_ATTRIBUTES,
        "scope_name": SCOPE[0],
        "scope_version": SCOPE[1],
        "transport": transport,
    }
    expected_server = ReceivedSpan(
        span_id=_hex_span_id(server),
        parent_span_id=REMOTE_SPAN_ID,
        name="GET /recommendations",
        kind="SERVER",
        start_time_unix_nano=1_000_000,
        end_time_unix_nano=9_000_000,
        attributes={"http.request.method": "GET"},
        status_code="OK",
        status_message="",
        events=(),
        links=(),
        parent_is_remote=True,
        **common,
    )
    expected_predict = ReceivedSpan(
        span_id=_hex_span_id(predict),
        parent_span_id=_hex_span_id(server),
        name="StockPredictor.calculate_score",
        kind="INTERNAL",
        start_time_unix_nano=2_000_000,
        end_time_unix_nano=5_000_000,
        attributes=ALL_ATTRIBUTE_TYPES,
        status_code="ERROR",
        status_message="no price data",
        events=(
            ReceivedEvent("cache.miss", 2_500_000, {"clstock.symbol": "7203.T", "attempt": 2}),
        ),
        links=(ReceivedLink(LINKED_TRACE_ID, LINKED_SPAN_ID, {"clstock.link": "batch"}),),
        parent_is_remote=False,
        **common,
    )
    expected_fetch = ReceivedSpan(
        span_id=_hex_span_id(fetch),
        parent_span_id=_hex_span_id(predict),
        name="yfinance history",
        kind="CLIENT",
        start_time_unix_nano=3_000_000,
        end_time_unix_nano=4_000_000,
        attributes={},
        status_code="UNSET",
        status_message="",
        events=(),
        links=(),
        parent_is_remote=False,
        **common,
    )
    assert sorted(spans, key=lambda s: s.start_time_unix_nano) == [
        expected_server,
        expected_predict,
        expected_fetch,
    ]
    assert receiver.traces() == {
        REMOTE_TRACE_ID: [expected_server, expected_predict, expected_fetch]
    }
    assert receiver.children_of(expected_server) == [expected_predict]
    assert receiver.children_of(expected_fetch) == []
    assert receiver.find(kind="SERVER", service="clstock-api") == [expected_server]
    assert receiver.find(attributes={"clstock.rows": 250}) == [expected_predict]
    assert receiver.find(name="GET /recommendations", service="other-service") == []
    assert expected_predict.duration_ns == 3_000_000
    assert expected_predict.service_name == "clstock-api"
    after = receiver.stats()[transport]
    assert after.spans - before.spans == 3
    requests = after.trace_requests - before.trace_requests
    assert requests == (3 if processor is SimpleSpanProcessor else 1)
    raw = receiver.raw_trace_requests()
    assert len(raw) == requests
    assert sum(len(ss.spans) for r in raw for rs in r.resource_spans for ss in rs.scope_spans) == 3


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_histogram_counter_and_gauge_are_decoded(receiver: RecordingReceiver, transport: str):
    """Metric exports keep names, kinds, units, attributes and point values."""
    if transport == "http":
        exporter: Any = HttpMetricExporter(endpoint=f"{receiver.http_endpoint}/v1/metrics")
    else:
        exporter = GrpcMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    # A huge interval: only force_flush exports, so the test controls when.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("tests.otlp_receiver.metrics", "0.1")
    histogram = meter.create_histogram("clstock.prediction.duration", unit="ms")
    histogram.record(12.5, {"clstock.model": "ensemble"})
    histogram.record(30.0, {"clstock.model": "ensemble"})
    meter.create_counter("clstock.predictions").add(3, {"clstock.symbol": "7203.T"})
    meter.create_gauge("clstock.cache.size").set(42)
    try:
        provider.force_flush()
        metrics = receiver.wait_for_metrics(name="clstock.cache.size", timeout=5)
    finally:
        provider.shutdown()

    by_name = {metric.name: metric for metric in metrics}
    duration = by_name["clstock.prediction.duration"]
    assert (duration.kind, duration.unit, duration.temporality) == ("histogram", "ms", "CUMULATIVE")
    assert (duration.scope_name, duration.scope_version) == ("tests.otlp_receiver.metrics", "0.1")
    assert duration.resource == RESOURCE_ATTRIBUTES
    assert duration.service_name == "clstock-api"
    assert duration.transport == transport
    [point] = duration.data_points
    bucket_counts = [0] * 16
    bucket_counts[3] = bucket_counts[4] = 1  # (10, 25] and (25, 50]
    assert {k: point[k] for k in ("attributes", "count", "sum", "min", "max")} == {
        "attributes": {"clstock.model": "ensemble"},
        "count": 2,
        "sum": 42.5,
        "min": 12.5,
        "max": 30.0,
    }
    assert point["bucket_counts"] == tuple(bucket_counts)
    assert point["explicit_bounds"][:5] == (0.0, 5.0, 10.0, 25.0, 50.0)
    assert point["time_unix_nano"] >= point["start_time_unix_nano"] > 0

    predictions = by_name["clstock.predictions"]
    assert (predictions.kind, predictions.is_monotonic) == ("sum", True)
    assert [(p["attributes"], p["value"]) for p in predictions.data_points] == [
        ({"clstock.symbol": "7203.T"}, 3)
    ]
    cache_size = by_name["clstock.cache.size"]
    assert (cache_size.kind, cache_size.temporality, cache_size.is_monotonic) == (
        "gauge",
        None,
        None,
    )
    assert [p["value"] for p in cache_size.data_points] == [42]
    assert receiver.stats()[transport].metric_data_points >= 3


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_log_records_are_decoded_with_trace_correlation(
    receiver: RecordingReceiver, transport: str
):
    """Log records keep body (maps, bytes, arrays), severity, ids and attributes."""
    if transport == "http":
        exporter: Any = HttpLogExporter(endpoint=f"{receiver.http_endpoint}/v1/logs")
    else:
        exporter = GrpcLogExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    span_context = SpanContext(
        int(REMOTE_TRACE_ID, 16), int(REMOTE_SPAN_ID, 16), False, TraceFlags(TraceFlags.SAMPLED)
    )
    provider.get_logger("tests.otlp_receiver.logs").emit(
        timestamp=7_000_000,
        observed_timestamp=8_000_000,
        context=trace.set_span_in_context(NonRecordingSpan(span_context)),
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body={"message": "price feed slow", "raw": b"\x00\xff", "symbols": ["7203.T"], "n": None},
        attributes={"clstock.symbol": "7203.T"},
        event_name="clstock.feed.slow",
    )
    provider.shutdown()

    assert receiver.wait_for_logs(count=1, timeout=5) == [
        ReceivedLog(
            body={
                "message": "price feed slow",
                "raw": b"\x00\xff",
                "symbols": ("7203.T",),
                "n": None,
            },
            severity_text="WARN",
            severity_number=SeverityNumber.WARN.value,
            trace_id=REMOTE_TRACE_ID,
            span_id=REMOTE_SPAN_ID,
            attributes={"clstock.symbol": "7203.T"},
            resource=RESOURCE_ATTRIBUTES,
            scope_name="tests.otlp_receiver.logs",
            time_unix_nano=7_000_000,
            observed_time_unix_nano=8_000_000,
            transport=transport,
            event_name="clstock.feed.slow",
        )
    ]


def test_otlp_json_request_is_decoded_with_hex_ids(receiver: RecordingReceiver):
    """An OTLP JSON body (hex ids, int enums) is accepted and answered in JSON."""
    status, response, body = _post(
        receiver, "/v1/traces", _json_request_bytes(), {"Content-Type": "application/json"}
    )
    assert (status, response.getheader("Content-Type"), json.loads(body)) == (
        200,
        "application/json",
        {},
    )
    assert receiver.spans() == [EXPECTED_JSON_SPAN]


def test_spans_encoded_as_otlp_json_are_read_back_over_http(receiver: RecordingReceiver):
    """encode_spans writes hex ids and a request that the HTTP endpoint reads back whole."""
    _export_one_span(receiver, "StockPredictor.fit")
    [raw] = receiver.raw_trace_requests()
    [original] = receiver.spans()
    text = encode_spans([original])
    assert f'"traceId":"{original.trace_id}"' in text
    assert from_otlp_json(text, ExportTraceServiceRequest) == raw

    receiver.clear()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    status, _, _ = _post(receiver, "/v1/traces", gzip.compress(text.encode()), headers)
    assert status == 200
    assert receiver.spans() == [original]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("deflate", zlib.compress), ("deflate", lambda data: zlib.compress(data, wbits=-15))],
    ids=["zlib", "raw-deflate"],
)
def test_deflate_bodies_are_accepted(receiver: RecordingReceiver, encoding: str, compress: Any):
    """Content-Encoding: deflate works in its zlib and raw forms."""
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": encoding}
    status, response, body = _post(
        receiver, "/v1/traces", compress(_protobuf_request_bytes()), headers
    )
    assert (status, response.getheader("Content-Type"), body) == (
        200,
        "application/x-protobuf",
        b"",
    )
    assert receiver.spans() == [EXPECTED_JSON_SPAN]


def test_chunked_body_is_accepted(receiver: RecordingReceiver):
    """A chunked Transfer-Encoding body is reassembled."""
    data = _protobuf_request_bytes()
    chunks = iter([data[:10], data[10:]])
    status, _, _ = _post(receiver, "/v1/traces", chunks, {"Content-Type": "application/x-protobuf"})
    assert status == 200
    assert receiver.spans() == [EXPECTED_JSON_SPAN]


def test_malformed_protobuf_gets_400_with_a_status_message(receiver: RecordingReceiver):
    """A corrupt protobuf body is refused with 400 and a google.rpc.Status body."""
    before = receiver.stats()["http"].rejected_requests
    status, response, body = _post(
        receiver, "/v1/traces", b"\xff\xff\xff\xff", {"Content-Type": "application/x-protobuf"}
    )
    assert (status, response.getheader("Content-Type")) == (400, "application/x-protobuf")
    error = status_pb2.Status.FromString(body)
    assert error.code == 3  # INVALID_ARGUMENT
    assert error.message.startswith("could not decode protobuf ExportTraceServiceRequest")
    assert receiver.stats()["http"].rejected_requests == before + 1
    assert receiver.spans() == []


def test_malformed_json_gets_400_with_a_json_message(receiver: RecordingReceiver):
    """A JSON body with a non-hex trace id is refused with a JSON error body."""
    document = json.loads(_json_request_bytes())
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "not-hex"
    status, _, body = _post(
        receiver, "/v1/traces", json.dumps(document).encode(), {"Content-Type": "application/json"}
    )
    error = json.loads(body)
    assert (status, error["code"]) == (400, 3)
    assert error["message"].startswith("could not decode OTLP JSON ExportTraceServiceRequest")
    assert receiver.spans() == []


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected_status", "expected_message"),
    [
        ("POST", "/v1/nope", {"Content-Type": "application/x-protobuf"}, b"", 404, "unknown path"),
        ("GET", "/v1/traces", {}, b"", 405, "GET not allowed"),
        ("POST", "/v1/traces", {"Content-Type": "text/plain"}, b"x", 415, "'text/plain'"),
        ("POST", "/v1/traces", {}, b"x", 415, "Content-Type '(none)'"),
        (
            "POST",
            "/v1/logs",
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
            b"x",
            415,
            "Content-Encoding 'br'",
        ),
        (
            "POST",
            "/v1/metrics",
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            b"not gzip",
            400,
            "could not decompress gzip",
        ),
    ],
    ids=[
        "unknown-path",
        "wrong-method",
        "content-type",
        "no-content-type",
        "content-encoding",
        "bad-gzip",
    ],
)
def test_bad_requests_get_the_right_status(
    receiver: RecordingReceiver,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    expected_status: int,
    expected_message: str,
):
    """Unknown paths, wrong methods, types and encodings get 404/405/415/400 with a reason."""
    status, response, reply = _post(receiver, path, body, headers, method=method)
    assert status == expected_status
    if status == 400:
        reply = status_pb2.Status.FromString(reply).message.encode()
    assert expected_message in reply.decode()
    if status == 405:
        assert response.getheader("Allow") == "POST"


def test_http_connection_is_kept_alive(receiver: RecordingReceiver):
    """Consecutive exports reuse one HTTP/1.1 connection."""
    connection = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=5)
    headers = {"Content-Type": "application/x-protobuf"}
    try:
        sockets = []
        for _ in range(2):
            connection.request(
                "POST", "/v1/traces", body=_protobuf_request_bytes(), headers=headers
            )
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("Connection") != "close"
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is sockets[1] is not None
    assert len(receiver.spans()) == 2


def test_wait_for_spans_wakes_up_when_spans_arrive(receiver: RecordingReceiver):
    """wait_for_spans blocks until a matching span arrives from another thread."""
    timer = threading.Timer(0.1, _export_one_span, (receiver, "StockPredictor.predict"))
    timer.start()
    try:
        spans = receiver.wait_for_spans(
            lambda spans: any(s.name == "StockPredictor.predict" for s in spans), timeout=5
        )
    finally:
        timer.join()
    assert [s.name for s in spans] == ["StockPredictor.predict"]


def test_wait_for_spans_timeout_summarises_what_was_received(receiver: RecordingReceiver):
    """On timeout the error names the spans received per service."""
    _export_one_span(receiver, "StockPredictor.fit")
    with pytest.raises(TimeoutError) as caught:
        receiver.wait_for_spans(count=2, timeout=0.2)
    message = str(caught.value)
    assert "waiting for at least 2 spans" in message
    assert "Received 1 span(s) in 1 trace(s)" in message
    assert "service 'clstock-api': StockPredictor.fit (INTERNAL) x1" in message


def test_wait_timeout_with_nothing_received_points_at_the_endpoints(receiver: RecordingReceiver):
    """With nothing received the timeout error says where exporters should send."""
    with pytest.raises(TimeoutError, match="No spans received") as caught:
        receiver.wait_for_spans(timeout=0.05)
    assert f"{receiver.http_endpoint}/v1/traces" in str(caught.value)
    with pytest.raises(TimeoutError, match="No metrics received"):
        receiver.wait_for_metrics(name="clstock.anything", timeout=0.05)
    with pytest.raises(TimeoutError, match="No log records received"):
        receiver.wait_for_logs(timeout=0.05)


def test_the_operator_receiver_waits_until_its_spans_match():
    """OTLPReceiver.wait_until (what the demo waits with) returns the spans or says what came."""
    with OTLPReceiver(grpc_port=None) as plain:
        timer = threading.Timer(0.1, _export_one_span, (plain, "StockPredictor.predict"))
        timer.start()
        try:
            spans = plain.wait_until(
                lambda spans: any(s.name == "StockPredictor.predict" for s in spans), timeout=5
            )
        finally:
            timer.join()
        assert [s.name for s in spans] == ["StockPredictor.predict"]
        with pytest.raises(TimeoutError) as caught:
            plain.wait_until(lambda spans: len(spans) > 1, timeout=0.1)
        assert "waiting for spans matching" in str(caught.value)
        assert "StockPredictor.predict (INTERNAL) x1" in str(caught.value)
    forgetful = OTLPReceiver(grpc_port=None, retain=False)
    with forgetful, pytest.raises(RuntimeError, match="retain=False"):
        forgetful.wait_until(bool, timeout=0.1)


def test_listeners_get_each_batch_and_a_failing_one_is_contained(
    receiver: RecordingReceiver, caplog: pytest.LogCaptureFixture
):
    """Listeners see every stored batch; one that raises is logged and changes nothing."""
    batches: list[list[ReceivedSpan]] = []

    def broken(spans: Any) -> None:
        raise RuntimeError("listener bug")

    def record(spans: Any) -> None:
        batches.append(list(spans))

    receiver.add_listener(broken)
    receiver.add_listener(record)
    try:
        with caplog.at_level(logging.ERROR, logger="clstock_otel_distro.tools.otlp_receiver"):
            _export_one_span(receiver, "StockPredictor.fit")
    finally:
        receiver.remove_listener(broken)
        receiver.remove_listener(record)
    assert batches == [receiver.spans()]
    assert [s.name for s in batches[0]] == ["StockPredictor.fit"]
    [log_record] = [r for r in caplog.records if "listener" in r.getMessage()]
    assert log_record.exc_info is not None and log_record.exc_info[0] is RuntimeError

    _export_one_span(receiver, "StockPredictor.predict")
    assert len(batches) == 1  # removed listeners are no longer called
    assert len(receiver.spans()) == 2


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_start_and_stop_are_idempotent_and_release_ports():
    """start() and stop() may be repeated; stop releases both ports; restart rebinds."""
    receiver = OTLPReceiver()
    with pytest.raises(RuntimeError, match="not running"):
        _ = receiver.http_port
    receiver.start()
    http_port, grpc_port = receiver.http_port, receiver.grpc_port
    assert grpc_port is not None
    assert receiver.start() is receiver
    assert (receiver.http_port, receiver.grpc_port) == (http_port, grpc_port)
    assert receiver.http_endpoint == f"http://127.0.0.1:{http_port}"
    assert receiver.grpc_endpoint == f"http://127.0.0.1:{grpc_port}"
    assert not _port_is_free(http_port)
    assert not _port_is_free(grpc_port)
    receiver.stop()
    receiver.stop()
    assert not receiver.running
    assert _port_is_free(http_port)
    assert _port_is_free(grpc_port)

    with OTLPReceiver(http_port=http_port, grpc_port=grpc_port) as again:
        assert (again.http_port, again.grpc_port) == (http_port, grpc_port)
        # A second receiver on the same fixed ports fails loudly and leaves nothing bound.
        clash = OTLPReceiver(http_port=0, grpc_port=grpc_port)
        with pytest.raises(OSError, match="gRPC"):
            clash.start()
        assert not clash.running
        with pytest.raises(OSError):
            OTLPReceiver(http_port=http_port, grpc_port=None).start()


def test_grpc_can_be_disabled():
    """grpc_port=None serves OTLP/HTTP only."""
    with OTLPReceiver(grpc_port=None) as receiver:
        assert receiver.grpc_port is None
        assert receiver.grpc_endpoint is None
        assert repr(receiver) == f"<OTLPReceiver http={receiver.http_endpoint} grpc=None>"


def test_stop_closes_keep_alive_connections():
    """After stop() an exporter's pooled connection can no longer deliver data."""
    receiver = OTLPReceiver(grpc_port=None).start()
    connection = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=5)
    headers = {"Content-Type": "application/x-protobuf"}
    try:
        connection.request("POST", "/v1/traces", body=_protobuf_request_bytes(), headers=headers)
        assert connection.getresponse().read() == b""
        receiver.stop()
        with pytest.raises((OSError, http.client.HTTPException)):
            connection.request(
                "POST", "/v1/traces", body=_protobuf_request_bytes(), headers=headers
            )
            connection.getresponse()
    finally:
        connection.close()
        receiver.stop()
    assert len(receiver.spans()) == 1


def test_importing_the_module_does_not_import_grpc_or_protos():
    """The module is cheap to import: grpc and the OTLP protos load only when needed."""
    code = (
        "import sys, clstock_otel_distro.tools.otlp_receiver; "
        "print(sorted(m for m in ('grpc', 'opentelemetry.proto') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
