"""Tests for ``clstock-otel collect``: real OTLP from the SDK exporters, over HTTP and gRPC,
into the collector in-process and as the real command in a subprocess."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from clstock_otel_distro.tools.collect import Collector, CollectStats, TraceAssembler, run_collect
from clstock_otel_distro.tools.otlp_data import ReceivedSpan, decode_trace_request
from clstock_otel_distro.tools.otlp_json import encode_spans, from_otlp_json
from clstock_otel_distro.tools.report import build_report
from clstock_otel_distro.tools.spanfile import SpanFileWriter, read_spans

CLSTOCK_OTEL = Path(sys.executable).parent / "clstock-otel"
RESOURCE = Resource({"service.name": "clstock-api", "service.version": "1.0.0"})
SCOPE = ("tests.collect", "0.1")
LINKED = SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)

# A line as the Collector's file exporter writes it (pdata's JSON marshaler, see
# pdata/internal/generated_proto_*.go: fields in proto declaration order, empty ones
# omitted, "status" always present, int64 as strings, enums as numbers, hex ids, Go's
# float formatting: 1.0 is "1"), restricted to the fields a ReceivedSpan carries.
COLLECTOR_LINE = (
    '{"resourceSpans":[{"resource":{"attributes":['
    '{"key":"service.name","value":{"stringValue":"clstock-api"}},'
    '{"key":"process.pid","value":{"intValue":"4242"}}]},'
    '"scopeSpans":[{"scope":{"name":"opentelemetry.instrumentation.fastapi","version":"0.66b1"},'
    '"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",'
    '"traceState":"clstock=1","parentSpanId":"eee19b7ec3c1b173","flags":768,'
    '"name":"GET /api/v1/predict/{symbol}","kind":2,'
    '"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712660250000000",'
    '"attributes":[{"key":"http.response.status_code","value":{"intValue":"502"}},'
    '{"key":"clstock.score","value":{"doubleValue":72.5}},'
    '{"key":"clstock.weight","value":{"doubleValue":1}},'
    '{"key":"clstock.tiny","value":{"doubleValue":1e-7}},'
    '{"key":"clstock.cached","value":{"boolValue":false}},'
    '{"key":"clstock.blob","value":{"bytesValue":"AAH/"}},'
    '{"key":"clstock.symbols","value":{"arrayValue":{"values":'
    '[{"stringValue":"7203"},{"intValue":"6758"}]}}},'
    '{"key":"clstock.none","value":{"arrayValue":{}}},'
    '{"key":"clstock.map","value":{"kvlistValue":{"values":'
    '[{"key":"n","value":{"intValue":"1"}}]}}},'
    '{"key":"note","value":{"stringValue":"東京 \\"quoted\\"\\n"}}],'
    '"events":[{"timeUnixNano":"1544712660100000000","name":"exception","attributes":'
    '[{"key":"exception.type","value":{"stringValue":"DataFetchError"}}]}],'
    '"links":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",'
    '"traceState":"k=v","attributes":[{"key":"reason","value":{"stringValue":"retry"}}]}],'
    '"status":{"message":"no data for 6502","code":2}},'
    '{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","flags":256,'
    '"name":"StockPredictor.predict","kind":1,'
    '"startTimeUnixNano":"1544712660010000000","endTimeUnixNano":"1544712660020000000",'
    '"status":{}}]}]}]}'
)


def decode_line(line: str) -> list[ReceivedSpan]:
    return decode_trace_request(from_otlp_json(line, ExportTraceServiceRequest), "file")


def file_spans(path: Path) -> list[ReceivedSpan]:
    """Every span of an OTLP JSON lines file, decoded by protobuf's own JSON parser."""
    return [span for line in path.read_text().splitlines() if line for span in decode_line(line)]


def provider_for(exporter: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A local provider (never the global one) exporting to ``exporter`` and to memory."""
    provider = TracerProvider(resource=RESOURCE)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def exporter_for(collector_or_endpoint: Collector | str, transport: str) -> Any:
    if isinstance(collector_or_endpoint, Collector):
        endpoint = (
            collector_or_endpoint.http_endpoint
            if transport == "http"
            else collector_or_endpoint.grpc_endpoint
        )
    else:
        endpoint = collector_or_endpoint
    if transport == "http":
        return HttpSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
    return GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=10)


def emit_trace(provider: TracerProvider) -> str:
    """A request trace with every kind of detail; returns its trace id (hex)."""
    tracer = provider.get_tracer(*SCOPE)
    with tracer.start_as_current_span(
        "GET /api/v1/predict/{symbol}",
        kind=SpanKind.SERVER,
        attributes={"http.route": "/api/v1/predict/{symbol}", "http.response.status_code": 502},
    ) as root:
        with tracer.start_as_current_span(
            "StockPredictor.predict",
            attributes={
                "clstock.symbol": "6502",
                "clstock.score": 72.5,
                "clstock.cached": False,
                "clstock.windows": (5, 20, 60),
                "clstock.weights": (0.5, 1.0),
                "clstock.symbols": ("6502", "7203"),
            },
            links=[Link(LINKED, {"reason": "retry"})],
        ) as predict:
            predict.add_event("cache miss", {"clstock.symbol": "6502"})
            with tracer.start_as_current_span(
                "GET", kind=SpanKind.CLIENT, attributes={"url.full": "http://data/prices/6502"}
            ) as client:
                client.set_status(Status(StatusCode.ERROR, "no data for 6502"))
        root.set_status(Status(StatusCode.ERROR))
    return format(root.get_span_context().trace_id, "032x")


def assert_same_span(received: ReceivedSpan, sent: ReadableSpan) -> None:
    """The decoded span says everything the SDK span said."""
    context = sent.get_span_context()
    assert received.trace_id == format(context.trace_id, "032x")
    assert received.span_id == format(context.span_id, "016x")
    assert received.parent_span_id == (
        None if sent.parent is None else format(sent.parent.span_id, "016x")
    )
    assert received.name == sent.name
    assert received.kind == sent.kind.name
    assert received.start_time_unix_nano == sent.start_time
    assert received.end_time_unix_nano == sent.end_time
    assert received.attributes == dict(sent.attributes)
    assert received.status_code == sent.status.status_code.name
    assert received.status_message == (sent.status.description or "")
    assert received.resource == dict(sent.resource.attributes)
    assert (received.scope_name, received.scope_version) == SCOPE
    assert [(e.name, e.time_unix_nano, e.attributes) for e in received.events] == [
        (e.name, e.timestamp, dict(e.attributes)) for e in sent.events
    ]
    assert [(k.trace_id, k.span_id, k.attributes) for k in received.links] == [
        (format(k.context.trace_id, "032x"), format(k.context.span_id, "016x"), dict(k.attributes))
        for k in sent.links
    ]


def wait_for_text(read: Any, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read()
        if needle in text:
            return text
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} not printed within {timeout}s; got:\n{read()}")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[Collector, io.StringIO]]:
    out = io.StringIO()
    with Collector(
        http_port=0, grpc_port=0, output=tmp_path / "spans.jsonl", quiet_period=0.1, out=out
    ) as running:
        yield running, out


# --------------------------------------------------------------------------- the encoding


def test_the_line_format_is_the_collector_file_exporters_byte_for_byte():
    """Decoding a collector file-exporter line and encoding it again gives the same bytes."""
    assert encode_spans(decode_line(COLLECTOR_LINE)) == COLLECTOR_LINE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (72.53, "72.53"),
        (1e16, "10000000000000000"),
        (1.5e-5, "0.000015"),
        (1e-7, "1e-7"),
        (2.5e-300, "2.5e-300"),
        (1.5e21, "1.5e+21"),
        (float("inf"), '"Infinity"'),
        (float("nan"), '"NaN"'),
    ],
)
def test_doubles_are_written_as_go_writes_them(value: float, expected: str):
    """Plain notation in [1e-6, 1e21), exponent notation outside, shortest digits."""
    span = dataclasses.replace(decode_line(COLLECTOR_LINE)[1], attributes={"x": value})
    line = encode_spans([span])
    assert f'"attributes":[{{"key":"x","value":{{"doubleValue":{expected}}}}}]' in line
    [decoded] = decode_line(line)
    got = decoded.attributes["x"]
    assert got == value or (math.isnan(got) and math.isnan(value))


def test_spans_are_grouped_by_resource_and_scope_in_one_line():
    """One line per batch; spans of one resource and scope share their entry."""
    api_root, api_child = decode_line(COLLECTOR_LINE)
    other = dataclasses.replace(api_child, resource={"service.name": "data"})
    other_scope = dataclasses.replace(api_child, scope_name="other")
    line = encode_spans([api_root, other, api_child, other_scope])
    assert "\n" not in line
    assert line.count('"resource":') == 2
    assert line.count('"scope":') == 3
    assert [s.span_id for s in decode_line(line)] == [
        api_root.span_id,
        api_child.span_id,
        other_scope.span_id,
        other.span_id,
    ]


def test_file_writer_appends_lines_and_refuses_writes_once_closed(tmp_path: Path):
    """Append mode keeps earlier lines (as the collector does); "w" starts afresh."""
    spans = decode_line(COLLECTOR_LINE)
    path = tmp_path / "spans.jsonl"
    for _ in range(2):
        with SpanFileWriter(path) as writer:
            writer.write(spans)
            writer.write([])  # nothing to write: no line
    assert path.read_text() == (COLLECTOR_LINE + "\n") * 2
    writer = SpanFileWriter(path, mode="w")
    writer.write(spans[:1])
    writer.close()
    assert (writer.lines_written, writer.spans_written) == (1, 1)
    assert len(path.read_text().splitlines()) == 1
    with pytest.raises(ValueError, match="closed"):
        writer.write(spans)


# --------------------------------------------------------------------------- completion


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_trace_completes_when_its_root_arrived_and_it_went_quiet():
    """Root present + quiet period elapsed -> complete; without a root it waits longer."""
    clock = FakeClock()
    assembler = TraceAssembler(1.0, clock=clock)
    child, root = decode_line(COLLECTOR_LINE)
    assert child.parent_span_id is not None and root.parent_span_id is None
    orphan = dataclasses.replace(child, trace_id="1" * 32)

    assembler.add([child])
    clock.now += 0.9
    assembler.add([root, orphan])
    assert assembler.pop_complete() == []
    clock.now += 0.99
    assert assembler.pop_complete() == []  # quiet for 0.99 s only
    clock.now += 0.02
    [done] = assembler.pop_complete()
    assert (done.trace_id, {s.span_id for s in done.spans}, done.late_spans) == (
        root.trace_id,
        {root.span_id, child.span_id},
        0,
    )
    # No root: complete after three quiet periods (idle 2.91 s, then 3.01 s).
    clock.now += 1.9
    assert assembler.pop_complete() == []
    clock.now += 0.1
    [late_orphan] = assembler.pop_complete()
    assert late_orphan.trace_id == orphan.trace_id
    assert assembler.trace_count == 2 and assembler.pending_count() == 0


def test_late_spans_reopen_their_trace_whole_and_shutdown_takes_everything():
    """A span after its trace was printed brings the trace back, counted once."""
    clock = FakeClock()
    assembler = TraceAssembler(1.0, clock=clock)
    child, root = decode_line(COLLECTOR_LINE)
    assembler.add([root])
    clock.now += 2
    assert len(assembler.pop_complete()) == 1
    assembler.add([child])
    clock.now += 2
    [again] = assembler.pop_complete()
    assert (len(again.spans), again.late_spans) == (2, 1)
    assert assembler.trace_count == 1
    assembler.add([dataclasses.replace(child, trace_id="2" * 32)])
    assert [t.trace_id for t in assembler.pop_all()] == ["2" * 32]


# --------------------------------------------------------------------------- in-process


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_spans_from_the_sdk_are_written_identically_and_printed_as_a_tree(
    collector: tuple[Collector, io.StringIO], transport: str
):
    """Every exported span is in the file, decoding back to the same span; the trace prints."""
    running, out = collector
    provider, memory = provider_for(exporter_for(running, transport))
    trace_id = emit_trace(provider)
    provider.shutdown()

    text = wait_for_text(out.getvalue, f"trace {trace_id}")
    tree = text[text.index(f"trace {trace_id}") :].split("\n\n")[0].splitlines()
    assert re.fullmatch(rf"trace {trace_id}  3 spans, 1 service, [\d.]+ ms, 2 errors", tree[0])
    assert tree[1].startswith("[clstock-api] GET /api/v1/predict/{symbol}")
    assert tree[2].startswith("  StockPredictor.predict")
    assert tree[3].startswith("    GET ") and tree[3].endswith("ERROR: no data for 6502")

    stats = running.stop()
    assert (stats.spans, stats.traces, stats.spans_written) == (3, 1, 3)
    assert stats.trace_requests[transport] == 3  # SimpleSpanProcessor: one request per span
    path = running.output
    assert path is not None
    received = {span.span_id: span for span in file_spans(path)}
    sent = memory.get_finished_spans()
    assert len(received) == len(sent) == 3
    for span in sent:
        assert_same_span(received[format(span.get_span_context().span_id, "016x")], span)

    # And the report reads the file.
    report = build_report(read_spans(path)[0])
    assert (report.spans, report.traces) == (3, 1)
    assert {(op.name, op.errors) for op in report.operations} == {
        ("GET /api/v1/predict/{symbol}", 1),
        ("StockPredictor.predict", 0),
        ("GET", 1),
    }


def test_a_load_of_20000_spans_from_4_threads_is_received_without_a_drop(tmp_path: Path):
    """4 threads x 1000 traces x 5 spans through the HTTP exporter: every span is kept."""
    threads, traces_per_thread, spans_per_trace = 4, 1000, 5
    out = io.StringIO()
    path = tmp_path / "load.jsonl"
    collector = Collector(http_port=0, grpc_port=0, output=path, quiet_period=0.2, out=out)
    collector.start()
    flushed: list[bool] = []

    def produce() -> None:
        provider = TracerProvider(resource=RESOURCE)
        # Queue larger than what one thread makes: the SDK itself must not drop.
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter_for(collector, "http"),
                max_queue_size=traces_per_thread * spans_per_trace + 1,
                max_export_batch_size=512,
                schedule_delay_millis=50,
            )
        )
        tracer = provider.get_tracer(*SCOPE)
        for _ in range(traces_per_thread):
            with tracer.start_as_current_span("GET /api/v1/recommendations", kind=SpanKind.SERVER):
                for symbol in ("7203", "6758", "9984", "6861"):
                    with tracer.start_as_current_span(
                        "StockPredictor.calculate_score", attributes={"clstock.symbol": symbol}
                    ):
                        pass
        flushed.append(provider.force_flush(timeout_millis=60_000))
        provider.shutdown()

    started = time.perf_counter()
    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    elapsed = time.perf_counter() - started
    stats = collector.stop()

    total = threads * traces_per_thread * spans_per_trace
    assert flushed == [True] * threads
    assert (stats.spans, stats.spans_written, stats.traces) == (
        total,
        total,
        threads * traces_per_thread,
    )
    spans, skipped = read_spans(path)
    assert (len(spans), len({s.span_id for s in spans}), skipped) == (total, total, 0)
    # Trees are rate-limited, not lost silently: the skipped ones are counted.
    assert "completed, not shown" in out.getvalue()
    print(f"\n{total} spans in {elapsed:.2f}s: {total / elapsed:.0f} spans/s end to end")


def test_a_taken_port_is_reported_and_exit_status_1(collector: tuple[Collector, io.StringIO]):
    """Another receiver on the port: a clear message, not a traceback."""
    running, _ = collector
    port = int(running.http_endpoint.rsplit(":", 1)[1])
    out, err = io.StringIO(), io.StringIO()
    assert run_collect(http_port=port, grpc_port=0, out=out, err=err) == 1
    assert "--http-port" in err.getvalue()
    assert out.getvalue() == ""


def test_stats_summary_names_spans_traces_and_requests():
    """The last line the command prints."""
    stats = CollectStats(
        spans=5, traces=2, trace_requests={"http": 3, "grpc": 0}, metric_requests=4
    )
    assert stats.summary() == (
        "received 5 spans in 2 traces (3 export requests: http 3); "
        "4 metric export requests not kept"
    )
    assert CollectStats(
        spans=1, traces=1, trace_requests={"grpc": 1}, log_requests=1
    ).summary() == (
        "received 1 span in 1 trace (1 export request: grpc 1); 1 log export request not kept"
    )


# --------------------------------------------------------------------------- the command


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize(
    ("signum", "transport"), [(signal.SIGTERM, "http"), (signal.SIGINT, "grpc")]
)
def test_the_command_flushes_on_a_signal_and_exits_0(
    tmp_path: Path, signum: signal.Signals, transport: str
):
    """SIGTERM/SIGINT: pending traces print, the file is complete, the counts are said."""
    path = tmp_path / "spans.jsonl"
    # A quiet period longer than the test: the tree can only come from the shutdown flush.
    process = subprocess.Popen(
        [
            str(CLSTOCK_OTEL),
            "collect",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--output",
            str(path),
            "--quiet-period",
            "600",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    assert process.stdout is not None

    def read_lines() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=read_lines)
    reader.start()

    def printed() -> str:
        while not lines.empty():
            seen.append(lines.get())
        return "".join(seen)

    try:
        banner = wait_for_text(printed, "Ctrl-C to stop")
        endpoints = dict(re.findall(r"OTLP/(HTTP|gRPC)\s+(http://127\.0\.0\.1:\d+)", banner))
        assert f"export OTEL_EXPORTER_OTLP_ENDPOINT={endpoints['HTTP']}" in banner
        provider, memory = provider_for(
            exporter_for(endpoints["HTTP" if transport == "http" else "gRPC"], transport)
        )
        trace_id = emit_trace(provider)
        provider.shutdown()
        assert f"trace {trace_id}" not in printed()

        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
    output = printed()
    assert f"trace {trace_id}  3 spans" in output
    assert (
        f"clstock-otel collect: received 3 spans in 1 trace (3 export requests: {transport} 3)"
        in output
    )
    assert f"spans written to {path}" in output
    received = {span.span_id: span for span in file_spans(path)}
    for span in memory.get_finished_spans():
        assert_same_span(received[format(span.get_span_context().span_id, "016x")], span)


def test_importing_the_cli_imports_neither_grpc_nor_protobuf():
    """`clstock-otel --help` stays fast: every command imports its module when it runs."""
    code = (
        "import sys, clstock_otel_distro.cli as cli; cli.build_parser(); "
        "bad = [m for m in ('grpc', 'google.protobuf', 'opentelemetry.proto', "
        "'clstock_otel_distro.tools.otlp_receiver') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_child_env(), timeout=60)


def test_a_remote_parent_is_kept_in_the_flags(collector: tuple[Collector, io.StringIO]):
    """A server span continuing a remote trace says so (flags 0x300) in the file."""
    running, _ = collector
    provider, _ = provider_for(exporter_for(running, "http"))
    remote = NonRecordingSpan(LINKED)
    with provider.get_tracer(*SCOPE).start_as_current_span(
        "GET /prices/{symbol}", context=set_span_in_context(remote), kind=SpanKind.SERVER
    ):
        pass
    provider.shutdown()
    running.stop()
    assert running.output is not None
    line = running.output.read_text()
    assert '"parentSpanId":"00f067aa0ba902b7","flags":768,' in line
    [span] = file_spans(running.output)
    assert span.parent_is_remote is True
