"""``clstock-otel report FILE --html OUT.html``: the report as one self-contained page.

The page opens offline, from disk: its styles and script are inline and its data is
one JSON document embedded in it (no external script, style sheet, font or image).
It shows what ``clstock-otel report`` prints, computed by the same
:func:`~clstock_otel_distro.tools.report.build_report`, and what a terminal cannot:

- a summary: traces, spans, services, time range, share of failed traces, traces/s;
- per service and operation: count, p50/p90/p99, error rate, throughput;
- a latency histogram per route (the SERVER spans of each service and span name);
- the service map (SVG), with the calls and errors of every edge;
- the traces, failing first, then slowest first; each opens as a waterfall (service,
  span, offset, duration bar) where a span shows its attributes, events and
  exception stack. ``#trace=<id>`` in the address opens that trace.

Large inputs stay usable: the aggregates cover every span, the trace list and the
waterfalls only the worst :data:`DETAILED_TRACES` traces, within a budget of
:data:`DETAILED_SPAN_BUDGET` spans.

Span names and attributes are untrusted input. The data goes into the page as JSON
with ``<``, ``>`` and ``&`` escaped (so no value can close the script element), and
the page's script puts every value into the document as text (``textContent``),
never as markup::

    from clstock_otel_distro.tools.html_report import write_html_report

    write_html_report(spans, "report.html", source="spans.jsonl")
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from clstock_otel_distro.tools.report import (
    PERCENTILE_METHOD,
    Report,
    build_report,
    format_per_second,
    format_share,
)
from clstock_otel_distro.tools.trace_tree import depth_first

__all__ = [
    "DETAILED_SPAN_BUDGET",
    "DETAILED_TRACES",
    "HISTOGRAM_BOUNDS_MS",
    "MAX_SPANS_PER_WATERFALL",
    "build_page_data",
    "render_html",
    "write_html_report",
]

DETAILED_TRACES = 300
"""Traces listed with their waterfall: the failing, then the slowest."""
DETAILED_SPAN_BUDGET = 30_000
"""Spans shown in all the waterfalls together; past it, fewer traces are listed."""
MAX_SPANS_PER_WATERFALL = 2_000
"""A larger trace shows its first spans (in tree order) and says how many more it has."""

# Upper bounds of the histogram buckets, 1-2-5 steps; a last bucket takes the rest.
HISTOGRAM_BOUNDS_MS: tuple[float, ...] = tuple(
    m * 10.0**e for e in range(-1, 5) for m in (1, 2, 5)
)

TEMPLATE = "html_report_template.html"
_TITLE_MARK = "__CLSTOCK_TITLE__"
_DATA_MARK = "__CLSTOCK_DATA__"
_MAX_ATTRIBUTES = 128
_MAX_VALUE_CHARS = 2_000
# Stack traces are what one opens a failing span for: keep more of them.
_LONG_VALUE_KEYS = frozenset({"exception.stacktrace", "exception.message"})
_MAX_LONG_VALUE_CHARS = 20_000
_MAX_EVENTS = 64
_UNKNOWN_SERVICE = "(unknown)"
# Escaped inside the embedded JSON: "<" and ">" so that no value can end the script
# element (or open a comment in it), "&" for good measure, and the two line
# separators that some JavaScript parsers treat as line ends.
_JSON_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


# --------------------------------------------------------------------------- data


def _jsonable(value: Any, limit: int = _MAX_VALUE_CHARS) -> Any:
    """An attribute value as JSON: bytes as hex, tuples as lists, no NaN, long text cut."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… ({len(value)} chars)"
    if isinstance(value, int):  # bool too
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return _jsonable(value.hex(), limit)
    if isinstance(value, (tuple, list)):
        return [_jsonable(item, limit) for item in value[:_MAX_ATTRIBUTES]]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, limit) for k, v in list(value.items())[:_MAX_ATTRIBUTES]}
    return _jsonable(str(value), limit)


def _attributes(attributes: dict[str, Any]) -> list[list[Any]]:
    items = sorted(attributes.items())[:_MAX_ATTRIBUTES]
    return [
        [key, _jsonable(value, _MAX_LONG_VALUE_CHARS if key in _LONG_VALUE_KEYS else
                        _MAX_VALUE_CHARS)]
        for key, value in items
    ]


def _iso(unix_nano: int) -> str:
    moment = datetime.fromtimestamp(unix_nano / 1e9, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _service(span: ReceivedSpan) -> str:
    return span.service_name or _UNKNOWN_SERVICE


def _waterfall(spans: Sequence[ReceivedSpan], start: int) -> list[dict[str, Any]]:
    rows = []
    for depth, span in depth_first(spans)[:MAX_SPANS_PER_WATERFALL]:
        rows.append(
            {
                "id": span.span_id,
                "parent": span.parent_span_id,
                "depth": depth,
                "name": span.name,
                "service": _service(span),
                "kind": span.kind,
                "offset_ms": (span.start_time_unix_nano - start) / 1e6,
                "duration_ms": span.duration_ns / 1e6,
                "error": span.status_code == "ERROR",
                "status": span.status_code,
                "status_message": span.status_message,
                "attributes": _attributes(span.attributes),
                "events": [
                    {
                        "name": event.name,
                        "offset_ms": (event.time_unix_nano - start) / 1e6,
                        "attributes": _attributes(event.attributes),
                    }
                    for event in span.events[:_MAX_EVENTS]
                ],
            }
        )
    return rows


def _trace_summaries(unique: Iterable[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in unique:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def _root(spans: Sequence[ReceivedSpan]) -> ReceivedSpan:
    roots = [s for s in spans if s.parent_span_id is None] or list(spans)
    return min(roots, key=lambda s: (s.start_time_unix_nano, -s.end_time_unix_nano))


def _histograms(unique: Sequence[ReceivedSpan]) -> list[dict[str, Any]]:
    """Per route (service and SERVER span name): the count of durations per bucket."""
    groups: dict[tuple[str, str], list[float]] = {}
    for span in unique:
        if span.kind == "SERVER":
            groups.setdefault((_service(span), span.name), []).append(span.duration_ns / 1e6)
    if not groups:  # no SERVER spans (a batch job): the roots stand in for routes
        for span in unique:
            if span.parent_span_id is None:
                groups.setdefault((_service(span), span.name), []).append(
                    span.duration_ns / 1e6
                )
    histograms = []
    for (service, name), durations in sorted(groups.items()):
        counts = [0] * (len(HISTOGRAM_BOUNDS_MS) + 1)
        for duration in durations:
            bucket = next(
                (i for i, bound in enumerate(HISTOGRAM_BOUNDS_MS) if duration <= bound),
                len(HISTOGRAM_BOUNDS_MS),
            )
            counts[bucket] += 1
        histograms.append(
            {"service": service, "route": name, "count": len(durations), "counts": counts}
        )
    return histograms


def build_page_data(
    spans: Iterable[ReceivedSpan],
    *,
    report: Report | None = None,
    source: str = "",
    detailed_traces: int = DETAILED_TRACES,
    span_budget: int = DETAILED_SPAN_BUDGET,
) -> dict[str, Any]:
    """The JSON document the page renders; ``report`` is computed when not given."""
    unique_by_key: dict[tuple[str, str], ReceivedSpan] = {}
    for span in spans:
        unique_by_key.setdefault((span.trace_id, span.span_id), span)
    unique = list(unique_by_key.values())
    if report is None:
        report = build_report(unique)
    stats = report.to_dict()

    traces = _trace_summaries(unique)
    listed = []
    for trace_id, trace_spans in traces.items():
        start = min(s.start_time_unix_nano for s in trace_spans)
        end = max(s.end_time_unix_nano for s in trace_spans)
        errors = sum(s.status_code == "ERROR" for s in trace_spans)
        listed.append((errors > 0, end - start, start, trace_id, trace_spans))
    # Failing first, then slowest; the id breaks ties so that the order is stable.
    listed.sort(key=lambda t: (not t[0], -t[1], t[2], t[3]))

    trace_rows = []
    details: dict[str, list[dict[str, Any]]] = {}
    budget = span_budget
    for failed, extent, start, trace_id, trace_spans in listed[:detailed_traces]:
        shown = min(len(trace_spans), MAX_SPANS_PER_WATERFALL)
        if trace_rows and shown > budget:
            break
        budget -= shown
        root = _root(trace_spans)
        trace_rows.append(
            {
                "id": trace_id,
                "root": root.name,
                "service": _service(root),
                "start": _iso(start),
                "start_ms": (start - report.start_unix_nano) / 1e6,
                "duration_ms": extent / 1e6,
                "spans": len(trace_spans),
                "errors": sum(s.status_code == "ERROR" for s in trace_spans),
                "services": len({_service(s) for s in trace_spans}),
                "failed": failed,
            }
        )
        details[trace_id] = _waterfall(trace_spans, start)

    services = stats["services"]
    return {
        "source": source,
        "generated": _iso(int(datetime.now(timezone.utc).timestamp() * 1e9)),
        "percentile_method": PERCENTILE_METHOD,
        "summary": {
            "traces": report.traces,
            "spans": report.spans,
            "services": len(services),
            "service_names": services,
            "start": _iso(report.start_unix_nano) if report.spans else "",
            "end": _iso(report.end_unix_nano) if report.spans else "",
            "window_s": round(report.window_seconds, 6),
            "failed_traces": report.failed_traces,
            "failed_share": format_share(report.failed_trace_rate),
            "traces_per_s": format_per_second(report.traces_per_second),
            "duplicate_spans": report.duplicate_spans,
            "skipped_lines": report.skipped_lines,
        },
        # The share as the terminal prints it (JavaScript rounds halves differently).
        "operations": [
            {**op, "error_share": format_share(op["error_rate"])} for op in stats["operations"]
        ],
        "edges": stats["edges"],
        "histogram_bounds_ms": list(HISTOGRAM_BOUNDS_MS),
        "histograms": _histograms(unique),
        "traces": trace_rows,
        "traces_not_listed": len(listed) - len(trace_rows),
        "waterfalls": details,
    }


# --------------------------------------------------------------------------- page


def _embed_json(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES)


def render_html(data: dict[str, Any]) -> str:
    """The page: the template with ``data`` embedded and the title escaped."""
    template = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    title = "ClStock traces" + (f": {Path(data['source']).name}" if data.get("source") else "")
    # The data last: nothing in it is searched for a mark afterwards.
    page = template.replace(_TITLE_MARK, html.escape(title))
    return page.replace(_DATA_MARK, _embed_json(data))


def write_html_report(
    spans: Iterable[ReceivedSpan],
    path: str | os.PathLike[str],
    *,
    report: Report | None = None,
    source: str = "",
) -> Path:
    """Write the page for ``spans`` to ``path`` (parents created); returns its absolute path."""
    target = Path(path).expanduser().resolve()
    page = render_html(build_page_data(spans, report=report, source=source))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target
