"""Tests for ``clstock-otel report``: hand-built span files with hand-computed numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clstock_otel_distro.cli import main
from clstock_otel_distro.tools.report import (
    build_report,
    format_overall,
    format_report,
    percentile,
    run_report,
)
from clstock_otel_distro.tools.spanfile import read_spans

BASE_NS = 1_700_000_000_000_000_000
MS = 1_000_000
KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}

# A line exactly as the OpenTelemetry Collector's file exporter writes it (pdata's JSON
# marshaler: proto field order, empty fields omitted, int64 as strings, enums as
# numbers, hex ids, "status" always present).
COLLECTOR_LINE = (
    '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":'
    '{"stringValue":"checkout"}},{"key":"host.name","value":{"stringValue":"web-1"}}]},'
    '"scopeSpans":[{"scope":{"name":"io.opentelemetry.okhttp-3.0","version":"2.1.0"},'
    '"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",'
    '"parentSpanId":"eee19b7ec3c1b173","flags":768,"name":"GET","kind":3,'
    '"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712660250000000",'
    '"attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},'
    '{"key":"retry","value":{"boolValue":true}},{"key":"ratio","value":{"doubleValue":0.5}},'
    '{"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"7"}]}}}],'
    '"events":[{"timeUnixNano":"1544712660100000000","name":"exception","attributes":'
    '[{"key":"exception.type","value":{"stringValue":"IOException"}}]}],'
    '"status":{"message":"upstream down","code":2}},'
    '{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b173",'
    '"name":"checkout","kind":2,"startTimeUnixNano":"1544712659900000000",'
    '"endTimeUnixNano":"1544712660400000000","status":{}}]}],'
    '"schemaUrl":"https://opentelemetry.io/schemas/1.21.0"}]}'
)


# --------------------------------------------------------------------------- fixture


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"doubleValue": value}


def _span(
    trace: int,
    span_id: str,
    parent: str | None,
    name: str,
    kind: str,
    start_ms: float,
    duration_ms: float,
    *,
    error: bool = False,
) -> dict[str, Any]:
    start = BASE_NS + int(start_ms * MS)
    span: dict[str, Any] = {"traceId": f"{trace:032x}", "spanId": span_id}
    if parent:
        span["parentSpanId"] = parent
    span.update(
        name=name,
        kind=KINDS[kind],
        startTimeUnixNano=str(start),
        endTimeUnixNano=str(start + int(duration_ms * MS)),
        attributes=[{"key": "clstock.symbol", "value": _value("7203")}],
        status={"code": 2, "message": "boom"} if error else {},
    )
    return span


def _line(spans_by_service: dict[str, list[dict[str, Any]]]) -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": _value(service)}]},
                    "scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}],
                }
                for service, spans in spans_by_service.items()
            ]
        }
    )


def fixture_lines() -> list[str]:
    """Ten API requests, each calling the data service; one trace adds odd shapes.

    Trace i (1..10) starts at (i-1) s and its root lasts 1000 ms, so the file spans
    exactly 10 s. The data service's ``GET /prices/{symbol}`` takes i ms and fails for
    i = 3 and 7; the API's CLIENT span takes i+2 ms and fails for i = 5 and 7.
    """
    lines = []
    for i in range(1, 11):
        root, client, server = f"a{i:015x}", f"b{i:015x}", f"c{i:015x}"
        t0 = (i - 1) * 1000
        api = [
            _span(i, root, None, "GET /predict/{symbol}", "SERVER", t0, 1000),
            _span(i, client, root, "GET", "CLIENT", t0 + 1, i + 2, error=i in (5, 7)),
        ]
        data = [
            _span(i, server, client, "GET /prices/{symbol}", "SERVER", t0 + 2, i, error=i in (3, 7))
        ]
        if i == 1:
            # Same service, INTERNAL: no edge. PRODUCER -> CONSUMER in one service: an
            # edge api -> api. A data span under an INTERNAL api span: an edge too.
            api += [
                _span(1, "d" * 16, root, "StockPredictor.predict", "INTERNAL", 20, 3),
                _span(1, "e" * 16, root, "publish", "PRODUCER", 30, 1),
                _span(1, "f" * 16, "e" * 16, "process", "CONSUMER", 40, 2),
            ]
            data.append(_span(1, "9" * 16, "d" * 16, "cache.lookup", "INTERNAL", 21, 1))
        lines.append(_line({"clstock-api": api, "clstock-data-service": data}))
    return lines


@pytest.fixture
def span_file(tmp_path: Path) -> Path:
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(fixture_lines()) + "\n", encoding="utf-8")
    return path


def operation(report_dict: dict[str, Any], service: str, name: str) -> dict[str, Any]:
    [match] = [
        op for op in report_dict["operations"] if op["service"] == service and op["name"] == name
    ]
    return match


# --------------------------------------------------------------------------- tests


def test_percentiles_are_nearest_rank():
    """p-th percentile = the value at rank ceil(p/100 * n): always an observed value."""
    values = [float(v) for v in range(1, 11)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (5, 9, 10)
    assert percentile([4.0], 50) == percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0], 50) == 1.0 and percentile([1.0, 2.0], 51) == 2.0
    hundred = [float(v) for v in range(1, 101)]
    assert (percentile(hundred, 50), percentile(hundred, 90), percentile(hundred, 99)) == (
        50,
        90,
        99,
    )
    with pytest.raises(ValueError):
        percentile([], 50)


def test_numbers_match_the_hand_computed_ones(span_file: Path):
    """Count, throughput over the 10 s window, nearest-rank p50/p90/p99, error rate."""
    spans, skipped = read_spans(span_file)
    report = build_report(spans, skipped_lines=skipped).to_dict()
    assert (report["spans"], report["traces"], skipped) == (34, 10, 0)
    assert report["window"]["seconds"] == 10.0
    assert report["services"] == ["clstock-api", "clstock-data-service"]

    prices = operation(report, "clstock-data-service", "GET /prices/{symbol}")
    assert prices == {
        "service": "clstock-data-service",
        "name": "GET /prices/{symbol}",
        "count": 10,
        "errors": 2,
        "error_rate": 0.2,
        "throughput_per_s": 1.0,
        "p50_ms": 5.0,
        "p90_ms": 9.0,
        "p99_ms": 10.0,
    }
    client = operation(report, "clstock-api", "GET")
    assert (client["p50_ms"], client["p90_ms"], client["p99_ms"]) == (7.0, 11.0, 12.0)
    assert (client["errors"], client["error_rate"]) == (2, 0.2)
    root = operation(report, "clstock-api", "GET /predict/{symbol}")
    assert (root["count"], root["p99_ms"], root["errors"]) == (10, 1000.0, 0)
    once = operation(report, "clstock-api", "publish")
    assert (once["count"], once["throughput_per_s"]) == (1, 0.1)


def test_failed_traces_and_traces_per_second_are_per_trace(span_file: Path):
    """A trace failed when any span of it failed (3, 5 and 7); 10 traces over 10 s."""
    report = build_report(read_spans(span_file)[0])
    assert (report.failed_traces, report.failed_trace_rate) == (3, 0.3)
    assert report.traces_per_second == 1.0
    document = report.to_dict()
    assert (document["failed_traces"], document["failed_trace_rate"]) == (3, 0.3)
    assert document["traces_per_s"] == 1.0
    # Five of the ten traces, trace 3 (failed) among them: half as many traces per second.
    half = [s for s in read_spans(span_file)[0] if int(s.trace_id, 16) % 2]
    report = build_report(half)
    assert (report.traces, report.failed_traces) == (5, 3)
    assert format_overall(report) == (
        "failed traces: 3 of 5 (60.0%); throughput: " f"{5 / report.window_seconds:.2f} traces/s"
    )


def test_a_zero_window_has_no_rate(tmp_path: Path):
    """One span of zero duration: traces/s is "-" (and null in JSON), not a division error."""
    path = tmp_path / "one.jsonl"
    path.write_text(_line({"api": [_span(1, "a" * 16, None, "x", "SERVER", 0, 0)]}) + "\n")
    report = build_report(read_spans(path)[0])
    assert report.traces_per_second is None and report.to_dict()["traces_per_s"] is None
    assert format_overall(report) == "failed traces: 0 of 1 (0.0%); throughput: - traces/s"


def test_edges_count_calls_and_errors_per_service_pair(span_file: Path):
    """CLIENT->SERVER across services, PRODUCER->CONSUMER, and cross-service parents."""
    report = build_report(read_spans(span_file)[0]).to_dict()
    assert report["edges"] == [
        # publish -> process (PRODUCER -> CONSUMER, same service)
        {"client": "clstock-api", "server": "clstock-api", "calls": 1, "errors": 0},
        # 10 CLIENT -> SERVER calls, failed in traces 3, 5 and 7 (7 on both sides, once),
        # plus StockPredictor.predict -> cache.lookup
        {"client": "clstock-api", "server": "clstock-data-service", "calls": 11, "errors": 3},
    ]


def test_json_output_has_stable_keys(span_file: Path, capsys: pytest.CaptureFixture[str]):
    """--json prints one document with fixed keys at every level."""
    assert main(["report", str(span_file), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert list(document) == [
        "spans",
        "traces",
        "services",
        "window",
        "failed_traces",
        "failed_trace_rate",
        "traces_per_s",
        "percentile_method",
        "skipped_lines",
        "duplicate_spans",
        "operations",
        "edges",
    ]
    assert document["percentile_method"] == "nearest-rank"
    assert list(document["window"]) == ["start_unix_nano", "end_unix_nano", "seconds"]
    assert list(document["operations"][0]) == [
        "service",
        "name",
        "count",
        "errors",
        "error_rate",
        "throughput_per_s",
        "p50_ms",
        "p90_ms",
        "p99_ms",
    ]
    assert list(document["edges"][0]) == ["client", "server", "calls", "errors"]
    # Sorted by service, then span name.
    keys = [(op["service"], op["name"]) for op in document["operations"]]
    assert keys == sorted(keys)


def test_table_output_is_aligned(span_file: Path, capsys: pytest.CaptureFixture[str]):
    """The default output: a summary, the operations table and the dependency table."""
    assert run_report(span_file) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "34 spans in 10 traces from 2 services over 10.000 s (percentiles: nearest-rank)"
    )
    assert lines[1] == "failed traces: 3 of 10 (30.0%); throughput: 1.00 traces/s"
    header = lines[3]
    assert header.split() == [
        "SERVICE",
        "SPAN",
        "COUNT",
        "SPANS/S",
        "P50",
        "MS",
        "P90",
        "MS",
        "P99",
        "MS",
        "ERRORS",
    ]
    [prices] = [line for line in lines if "GET /prices/{symbol}" in line]
    assert prices.split()[-7:] == ["10", "1.00", "5.00", "9.00", "10.00", "2", "(20.0%)"]
    # Right-aligned numbers: every row ends where the header does.
    table = lines[3 : lines.index("", 3)]
    assert len(table) == 1 + 7  # header and one row per (service, span name)
    assert len({len(row) for row in table}) == 1
    edge_lines = lines[lines.index("service dependencies (calls from client to server):") + 1 :]
    assert edge_lines[0].split() == ["CLIENT", "SERVER", "CALLS", "ERRORS"]
    assert edge_lines[2].split() == ["clstock-api", "->", "clstock-data-service", "11", "3"]


def test_bad_lines_are_warned_about_once_each_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Blank lines are fine; a broken or non-traces line warns with its number, is skipped."""
    good = fixture_lines()
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                good[0],
                "",  # line 2: blank
                "   ",  # line 3: blank
                '{"resourceSpans": [ truncated',  # line 4
                good[1],
                '{"resourceMetrics": []}',  # line 6: metrics, not traces
                '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}',  # line 7
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    assert run_report(path, as_json=True) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert [w.split(": skipped")[0] for w in warnings] == [f"{path}:4", f"{path}:6", f"{path}:7"]
    assert all("not OTLP JSON traces" in w for w in warnings)
    document = json.loads(captured.out)
    assert (document["skipped_lines"], document["traces"]) == (3, 2)


def test_a_collector_file_exporter_line_is_read(tmp_path: Path):
    """A line in the collector's exact file-exporter format decodes field for field."""
    path = tmp_path / "collector.json"
    path.write_text(COLLECTOR_LINE + "\n", encoding="utf-8")
    spans, skipped = read_spans(path)
    assert skipped == 0
    client, server = spans
    assert client.resource == {"service.name": "checkout", "host.name": "web-1"}
    assert (client.scope_name, client.scope_version) == ("io.opentelemetry.okhttp-3.0", "2.1.0")
    assert (client.trace_id, client.span_id, client.parent_span_id) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b173",
    )
    assert (client.kind, client.parent_is_remote, client.duration_ns) == ("CLIENT", True, 250 * MS)
    assert client.attributes == {
        "http.response.status_code": 503,
        "retry": True,
        "ratio": 0.5,
        "tags": ("a", 7),
    }
    assert (client.status_code, client.status_message) == ("ERROR", "upstream down")
    assert client.events[0].attributes == {"exception.type": "IOException"}
    assert (server.kind, server.status_code, server.parent_span_id) == ("SERVER", "UNSET", None)

    report = build_report(spans)
    assert [(e.client, e.server, e.calls, e.errors) for e in report.edges] == []
    assert [(op.name, op.errors) for op in report.operations] == [("GET", 1), ("checkout", 0)]


def test_snake_case_and_named_enums_are_accepted(tmp_path: Path):
    """Proto field names and enum names, which protobuf's JSON parsers accept, are read."""
    line = json.dumps(
        {
            "resource_spans": [
                {
                    "scope_spans": [
                        {
                            "spans": [
                                {
                                    "trace_id": "0" * 31 + "1",
                                    "span_id": "0" * 15 + "1",
                                    "name": "x",
                                    "kind": "SPAN_KIND_SERVER",
                                    "start_time_unix_nano": 1_000,
                                    "end_time_unix_nano": 3_000,
                                    "status": {"code": "STATUS_CODE_ERROR"},
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    path = tmp_path / "snake.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    [span] = read_spans(path)[0]
    assert (span.kind, span.status_code, span.duration_ns) == ("SERVER", "ERROR", 2_000)


def test_duplicates_count_once_and_an_empty_file_reports_nothing(tmp_path: Path):
    """A span appended twice (an exporter retry) is one span; no spans is not an error."""
    line = fixture_lines()[1]
    report = build_report(
        [*read_spans(_write(tmp_path / "twice.jsonl", [line, line]))[0]],
    )
    assert (report.spans, report.duplicate_spans) == (3, 3)
    empty = build_report(read_spans(_write(tmp_path / "empty.jsonl", []))[0])
    assert (empty.spans, empty.operations, empty.edges) == (0, (), ())
    assert format_report(empty) == "no spans"


def test_a_missing_file_is_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A file that cannot be opened is a clear error, not a traceback."""
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
