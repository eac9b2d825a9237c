"""Tests for the trace tree renderer used by ``clstock-otel collect`` and ``demo``."""

from __future__ import annotations

import io
import random
from typing import Any

from clstock_otel_distro.tools.otlp_data import ReceivedEvent, ReceivedSpan
from clstock_otel_distro.tools.trace_tree import format_duration, render_trace, supports_unicode

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
MS = 1_000_000


def make_span(
    span_id: str,
    parent: str | None,
    name: str,
    service: str,
    start_ms: float,
    end_ms: float,
    attributes: dict[str, Any] | None = None,
    *,
    status: str = "UNSET",
    message: str = "",
    events: tuple[ReceivedEvent, ...] = (),
) -> ReceivedSpan:
    return ReceivedSpan(
        trace_id=TRACE_ID,
        span_id=span_id.ljust(16, "0"),
        parent_span_id=None if parent is None else parent.ljust(16, "0"),
        name=name,
        kind="INTERNAL",
        start_time_unix_nano=int(start_ms * MS),
        end_time_unix_nano=int(end_ms * MS),
        attributes=attributes or {},
        status_code=status,
        status_message=message,
        events=events,
        links=(),
        resource={"service.name": service},
        scope_name="tests",
        scope_version="",
        transport="http",
    )


def labels(text: str) -> list[str]:
    """The tree column of each span line (indentation kept), without the duration."""
    return [line[: line.index(" |")].rsplit(None, 2)[0] for line in text.splitlines()[1:]]


def cross_service_trace() -> list[ReceivedSpan]:
    return [
        make_span(
            "a",
            None,
            "GET /predict/{symbol}",
            "api",
            0,
            40,
            {"http.route": "/predict/{symbol}", "http.response.status_code": 502},
        ),
        make_span("b", "a", "GET", "api", 5, 35, {"url.full": "http://data/prices/6502"}),
        make_span(
            "c",
            "b",
            "GET /prices",
            "data",
            10,
            30,
            {"error.type": "DataFetchError"},
            status="ERROR",
            message="no data",
        ),
    ]


def test_small_tree_renders_exactly():
    """Indentation by depth, service on a change, duration, proportional bar, attributes."""
    assert render_trace(cross_service_trace(), width=12) == "\n".join(
        [
            "trace 0af7651916cd43dd8448eb211c80319c  3 spans, 2 services, 40.0 ms, 1 error",
            "[api] GET /predict/{symbol}  40.0 ms |████████████| http.response.status_code=502",
            "  GET                        30.0 ms | ██████████ | url.full=http://data/prices/6502",
            "    [data] GET /prices       20.0 ms |   ██████   | ERROR DataFetchError: no data",
        ]
    )


def test_children_are_sorted_by_start_time_whatever_the_arrival_order():
    """Siblings appear in start order under their parent, not in arrival order."""
    spans = [
        make_span("r", None, "root", "api", 0, 100),
        make_span("s3", "r", "third", "api", 60, 70),
        make_span("s1", "r", "first", "api", 10, 20),
        make_span("s2", "r", "second", "api", 30, 50),
        make_span("s1c", "s1", "first.child", "api", 11, 12),
    ]
    random.Random(7).shuffle(spans)
    assert labels(render_trace(spans)) == [
        "[api] root",
        "  first",
        "    first.child",
        "  second",
        "  third",
    ]


def test_service_is_shown_only_where_it_changes():
    """A hop into another service shows it; staying in the same service does not."""
    spans = [
        make_span("a", None, "GET /recommendations", "api", 0, 100),
        make_span("b", "a", "GET", "api", 10, 90),
        make_span("c", "b", "GET /prices", "data", 20, 80),
        make_span("d", "c", "DataProvider.fetch", "data", 30, 70),
        make_span("e", "d", "GET /chart", "replay", 40, 60),
    ]
    assert labels(render_trace(spans)) == [
        "[api] GET /recommendations",
        "  GET",
        "    [data] GET /prices",
        "      DataProvider.fetch",
        "        [replay] GET /chart",
    ]


def test_bar_is_proportional_to_the_root_and_placed_on_its_time_line():
    """Half the root's duration fills half the bar, starting where the span started."""
    spans = [
        make_span("r", None, "root", "api", 1000, 1100),
        make_span("h", "r", "second-half", "api", 1050, 1100),
        make_span("q", "r", "first-quarter", "api", 1000, 1025),
        make_span("t", "r", "tiny", "api", 1010, 1010.001),
    ]
    bars = {
        line.split()[0]: line.split("|")[1]
        for line in render_trace(spans, width=20).splitlines()[1:]
    }
    assert bars["[api]"] == "█" * 20
    assert bars["second-half"] == " " * 10 + "█" * 10
    assert bars["first-quarter"] == "█" * 5 + " " * 15
    # Too short for a cell: still one, at its start.
    assert bars["tiny"] == " " * 2 + "█" + " " * 17


def test_error_shows_error_type_and_message_or_the_exception_event():
    """ERROR with error.type and status message; else the recorded exception's type and message."""
    exception = ReceivedEvent(
        name="exception",
        time_unix_nano=5 * MS,
        attributes={
            "exception.type": "DataFetchError",
            "exception.message": "no data for 6502\nTraceback...",
        },
    )
    spans = [
        make_span("a", None, "GET /api", "api", 0, 10, {"error.type": "502"}, status="ERROR"),
        make_span("b", "a", "fetch", "api", 1, 9, status="ERROR", events=(exception,)),
        make_span("c", "a", "ok", "api", 2, 3),
    ]
    lines = render_trace(spans).splitlines()
    assert lines[0].endswith("2 errors")
    assert lines[1].endswith("ERROR 502")
    assert lines[2].endswith("ERROR DataFetchError: no data for 6502")  # first line only
    assert "ERROR" not in lines[3]


def test_spans_whose_parent_was_not_received_are_shown_at_the_top_level():
    """An orphan is not lost: it is a top span, and says its parent is missing."""
    spans = [
        make_span("a", None, "GET /api", "api", 0, 10),
        make_span("o", "ffff", "GET /chart", "replay", 2, 4),
    ]
    assert labels(render_trace(spans)) == [
        "[api] GET /api",
        "[replay] GET /chart (parent ffff0000… not received)",
    ]


def test_duplicates_are_shown_once_and_cycles_do_not_hang():
    """A span received twice is one line; spans that are each other's parent still show."""
    root = make_span("a", None, "root", "api", 0, 10)
    loop = [make_span("x", "y", "x", "api", 1, 2), make_span("y", "x", "y", "api", 3, 4)]
    text = render_trace([root, root, *loop])
    assert text.startswith(f"trace {TRACE_ID}  3 spans")
    assert labels(text) == [
        "[api] root",
        "[api] x (in a parent cycle)",
        "[api] y (in a parent cycle)",
    ]


def test_ascii_only_and_max_spans():
    """ASCII terminals get '#' bars; huge traces are cut with a count of what was left out."""
    spans = [make_span("r", None, "root", "api", 0, 10)] + [
        make_span(f"c{i}", "r", f"child{i}", "api", i, i + 1) for i in range(5)
    ]
    text = render_trace(spans, width=10, ascii_only=True, max_spans=3)
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 1
    assert "|##########|" in lines[1]
    assert "█" not in text
    assert lines[-1] == "... 3 more spans not shown"


def test_format_duration_and_unicode_support():
    """Durations read naturally at every scale; a latin-1 stream gets no block characters."""
    assert format_duration(250_000) == "0.25 ms"
    assert format_duration(36_049_000) == "36.0 ms"
    assert format_duration(12_345_000_000) == "12.35 s"
    assert supports_unicode(io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert not supports_unicode(io.TextIOWrapper(io.BytesIO(), encoding="latin-1"))


def test_empty_input_renders_nothing():
    """No spans, no text."""
    assert render_trace([]) == ""
