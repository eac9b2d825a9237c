"""Tests for the HTML report's data and page (the browser tests are in tests/integration)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from clstock_otel_distro.cli import main
from clstock_otel_distro.tools.html_report import (
    HISTOGRAM_BOUNDS_MS,
    TEMPLATE,
    build_page_data,
    render_html,
    write_html_report,
)
from clstock_otel_distro.tools.report import build_report, format_overall
from tests.distro.span_lines import line, received, span, write

DATA_SCRIPT = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)
STACK = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: no data'


def four_traces() -> list[str]:
    """Trace 1 fails in the data service; trace 3 is the slowest; 2 and 4 are quick."""
    lines = []
    for trace, route, duration in ((1, "GET /a", 100), (2, "GET /a", 50), (3, "GET /b", 300),
                                   (4, "GET /a", 10)):
        t0 = trace * 1000
        root, client, server = f"a{trace:015x}", f"b{trace:015x}", f"c{trace:015x}"
        failed = "no data" if trace == 1 else None
        api = [
            span(trace, root, None, route, kind="SERVER", start_ms=t0, duration_ms=duration,
                 attributes={"http.route": route.split()[1], "http.response.status_code": 200}),
            span(trace, client, root, "GET", kind="CLIENT", start_ms=t0 + 1,
                 duration_ms=duration - 2),
        ]
        data = [
            span(trace, server, client, "GET /prices", kind="SERVER", start_ms=t0 + 2,
                 duration_ms=duration - 4, error=failed,
                 events=[("exception", t0 + 3, {"exception.type": "ValueError",
                                                "exception.message": "no data",
                                                "exception.stacktrace": STACK})]
                 if failed else []),
        ]
        lines.append(line({"clstock-api": api, "clstock-data-service": data}))
    return lines


def embedded(page: str) -> dict[str, Any]:
    [text] = DATA_SCRIPT.findall(page)
    return json.loads(text)


def test_the_summary_and_aggregates_are_the_reports(tmp_path: Path):
    """Summary, operations and edges come from build_report, formatted as the terminal's."""
    spans = received(tmp_path / "s.jsonl", four_traces())
    report = build_report(spans)
    data = build_page_data(spans, source="s.jsonl")
    summary = data["summary"]
    assert (summary["traces"], summary["spans"], summary["services"]) == (4, 12, 2)
    assert summary["service_names"] == ["clstock-api", "clstock-data-service"]
    assert (summary["failed_traces"], summary["failed_share"]) == (1, "25.0%")
    assert f"({summary['failed_share']}); throughput: {summary['traces_per_s']} traces/s" in (
        format_overall(report)
    )
    assert summary["start"] == "2023-11-14T22:13:21.000Z"
    assert [{k: v for k, v in op.items() if k != "error_share"} for op in data["operations"]] == (
        report.to_dict()["operations"]
    )
    prices = next(op for op in data["operations"] if op["name"] == "GET /prices")
    assert prices["error_share"] == "25.0%"
    assert data["edges"] == [
        {"client": "clstock-api", "server": "clstock-data-service", "calls": 4, "errors": 1}
    ]


def test_traces_are_listed_failing_first_then_slowest(tmp_path: Path):
    """Trace 1 (failed, 100 ms), then 3 (300 ms), 2 (50 ms), 4 (10 ms)."""
    data = build_page_data(received(tmp_path / "s.jsonl", four_traces()))
    assert [int(t["id"], 16) for t in data["traces"]] == [1, 3, 2, 4]
    first = data["traces"][0]
    assert (first["failed"], first["errors"], first["spans"], first["services"]) == (
        True, 1, 3, 2)
    assert (first["root"], first["service"], first["duration_ms"]) == (
        "GET /a", "clstock-api", 100.0)
    assert [t["failed"] for t in data["traces"][1:]] == [False] * 3


def test_a_waterfall_has_one_row_per_span_in_tree_order_with_the_exception(tmp_path: Path):
    """Depth, offsets and durations per span; the failing span carries its stack."""
    data = build_page_data(received(tmp_path / "s.jsonl", four_traces()))
    rows = data["waterfalls"][f"{1:032x}"]
    assert [(r["name"], r["service"], r["depth"]) for r in rows] == [
        ("GET /a", "clstock-api", 0),
        ("GET", "clstock-api", 1),
        ("GET /prices", "clstock-data-service", 2),
    ]
    assert [(r["offset_ms"], r["duration_ms"]) for r in rows] == [(0, 100), (1, 98), (2, 96)]
    failing = rows[2]
    assert (failing["error"], failing["status_message"]) == (True, "no data")
    [event] = failing["events"]
    assert (event["name"], event["offset_ms"]) == ("exception", 3.0)
    assert dict(map(tuple, event["attributes"]))["exception.stacktrace"] == STACK
    assert dict(map(tuple, rows[0]["attributes"])) == {
        "http.response.status_code": 200, "http.route": "/a"}


def test_latency_histograms_count_server_spans_per_route(tmp_path: Path):
    """GET /a took 100, 50 and 10 ms: one each in the <=100, <=50 and <=10 ms buckets."""
    data = build_page_data(received(tmp_path / "s.jsonl", four_traces()))
    by_route = {(h["service"], h["route"]): h for h in data["histograms"]}
    assert set(by_route) == {("clstock-api", "GET /a"), ("clstock-api", "GET /b"),
                             ("clstock-data-service", "GET /prices")}
    route_a = by_route[("clstock-api", "GET /a")]
    assert route_a["count"] == 3
    bounds = list(HISTOGRAM_BOUNDS_MS)
    expected = [0] * (len(bounds) + 1)
    for ms in (100, 50, 10):
        expected[bounds.index(ms)] += 1
    assert route_a["counts"] == expected
    assert data["histogram_bounds_ms"] == bounds
    # Past the last bound: the overflow bucket.
    slow = [line({"api": [span(9, "a" * 16, None, "GET /slow", kind="SERVER",
                               duration_ms=bounds[-1] + 1)]})]
    [histogram] = build_page_data(received(tmp_path / "slow.jsonl", slow))["histograms"]
    assert histogram["counts"][-1] == 1 and sum(histogram["counts"]) == 1


def test_large_inputs_detail_only_the_worst_traces(tmp_path: Path):
    """Aggregates cover all 60 traces; the list and waterfalls only the worst ones."""
    lines = [
        line({"api": [span(t, f"{t:016x}", None, "GET /x", kind="SERVER", start_ms=t * 10,
                           duration_ms=t, error="boom" if t % 20 == 0 else None)]})
        for t in range(1, 61)
    ]
    spans = received(tmp_path / "many.jsonl", lines)
    data = build_page_data(spans, detailed_traces=5)
    assert data["summary"]["traces"] == 60 and data["operations"][0]["count"] == 60
    # The three failing (60, 40, 20), then the slowest of the rest (59, 58).
    assert [int(t["id"], 16) for t in data["traces"]] == [60, 40, 20, 59, 58]
    assert set(data["waterfalls"]) == {t["id"] for t in data["traces"]}
    assert data["traces_not_listed"] == 55
    # A span budget stops the list early (each trace here has one span).
    data = build_page_data(spans, detailed_traces=50, span_budget=7)
    assert len(data["traces"]) == 7 and data["traces_not_listed"] == 53


HOSTILE = '</script><script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def test_span_names_and_attributes_cannot_inject_markup(tmp_path: Path):
    """Untrusted text stays data: it cannot end the script element, and reads back intact."""
    hostile_lines = [
        line({
            "<b>svc</b>": [
                span(1, "a" * 16, None, HOSTILE, kind="SERVER", duration_ms=5, error=HOSTILE,
                     attributes={'"><svg onload=alert(1)>': HOSTILE,
                                 "line.separators": "a\u2028b\u2029c",
                                 "amp": "&lt;script&gt;"},
                     events=[("exception", 1, {"exception.stacktrace": HOSTILE})]),
            ]
        })
    ]
    spans = received(tmp_path / "hostile.jsonl", hostile_lines)
    page = render_html(build_page_data(spans, source="dir/<i>spans.jsonl"))
    template = (Path(__file__).resolve().parents[2] / "clstock_otel_distro" / "tools"
                / TEMPLATE).read_text(encoding="utf-8")
    assert page.lower().count("</script") == template.lower().count("</script")
    assert "<img" not in page and "<svg onload" not in page and "<b>svc" not in page
    assert "\u2028" not in page and "\u2029" not in page
    assert "<title>ClStock traces: &lt;i&gt;spans.jsonl</title>" in page
    data = embedded(page)
    [row] = data["waterfalls"][f"{1:032x}"]
    assert row["name"] == HOSTILE and row["service"] == "<b>svc</b>"
    attributes = dict(map(tuple, row["attributes"]))
    assert attributes['"><svg onload=alert(1)>'] == HOSTILE
    assert attributes["line.separators"] == "a\u2028b\u2029c"
    assert attributes["amp"] == "&lt;script&gt;"
    # The script writes data as text only: no HTML sink anywhere in it.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(",
                         template)


def test_the_page_loads_nothing_from_anywhere(tmp_path: Path):
    """No external script, style sheet, font or image: the page opens offline."""
    spans = received(tmp_path / "s.jsonl", four_traces())
    page = render_html(build_page_data(spans))
    without_data = DATA_SCRIPT.sub("", page)
    assert not re.search(r"<link\b|@import|\bsrc\s*=|@font-face", without_data, re.I)
    assert set(re.findall(r"url\(([^)]*)\)", without_data)) <= {"#arrow", "#arrow-err"}
    # The only absolute address is the SVG namespace, which is a name, not a download.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", without_data)) == {
        "http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page  # the browser refuses any load regardless


def test_report_html_writes_the_page_and_keeps_json_output_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """--html writes the page and prints its path; with --json, stdout stays one document."""
    source = write(tmp_path / "spans.jsonl", four_traces())
    out = tmp_path / "deep" / "report.html"
    assert main(["report", str(source), "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "failed traces: 1 of 4 (25.0%)" in printed
    assert printed.rstrip().endswith(f"HTML report: {out}")
    data = embedded(out.read_text(encoding="utf-8"))
    assert data["summary"]["traces"] == 4 and data["source"] == str(source)

    assert main(["report", str(source), "--json", "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["failed_traces"] == 1
    assert captured.err.strip() == f"HTML report: {out}"


def test_an_unwritable_html_path_is_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """A path under a regular file cannot be written: one line, status 2."""
    source = write(tmp_path / "spans.jsonl", four_traces())
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(source), "--html", str(blocker / "r.html")]) == 2
    [message] = capsys.readouterr().err.splitlines()
    assert message.startswith(f"clstock-otel report: cannot write {blocker / 'r.html'}")


def test_attribute_values_of_every_kind_become_json(tmp_path: Path):
    """Arrays, bools, ints and doubles keep their type; a very long string is cut."""
    attributes = {"list": ["a", 1], "flag": True, "n": 7, "x": 0.5, "long": "y" * 5000}
    lines = [line({"api": [span(1, "a" * 16, None, "op", attributes=attributes)]})]
    path = write_html_report(received(tmp_path / "s.jsonl", lines), tmp_path / "r.html")
    [row] = embedded(path.read_text(encoding="utf-8"))["waterfalls"][f"{1:032x}"]
    values = dict(map(tuple, row["attributes"]))
    assert values["list"] == ["a", 1] and values["flag"] is True
    assert (values["n"], values["x"]) == (7, 0.5)
    assert values["long"].startswith("y" * 2000) and values["long"].endswith("(5000 chars)")
    assert len(values["long"]) < 2100


def test_no_spans_make_an_empty_page(tmp_path: Path):
    """An empty file still makes a page, saying there is nothing."""
    data = build_page_data([])
    assert (data["summary"]["traces"], data["traces"], data["histograms"]) == (0, [], [])
    assert data["summary"]["traces_per_s"] == "-"
    assert "report-data" in render_html(data)
