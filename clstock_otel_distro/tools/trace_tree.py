"""Render one trace as an indented tree with a time bar, for a terminal.

``clstock-otel collect`` prints each trace this way once it is complete, and
``clstock-otel demo`` prints each workflow's trace::

    from clstock_otel_distro.tools.trace_tree import render_trace

    print(render_trace(spans_of_one_trace))

which reads (``width=12``)::

    trace 0af7651916cd43dd8448eb211c80319c  3 spans, 2 services, 40.0 ms, 1 error
    [api] GET /predict/{symbol}  40.0 ms |████████████| http.response.status_code=502
      GET                        30.0 ms | ██████████ | url.full=http://data/prices/6502
        [data] GET /prices       20.0 ms |   ██████   | ERROR DataFetchError: no data

Children are indented under their parent and sorted by start time. The service name
is shown in brackets on the trace's top spans and wherever it changes from the
parent's, so a hop across services stands out. The bar places each span on the
trace's time line: its full width is the root span's duration (the whole trace's
extent when there are several top spans). Spans whose parent is not among the given
spans (not received, or in a process that exports elsewhere) are shown at the top
level and say so. A span with an ERROR status ends with ``ERROR`` and what is known of
the error: its ``error.type`` (or the type of its ``exception`` event) and its status
message (or the exception message).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

from clstock_otel_distro.semconv import (
    CLSTOCK_SCORE,
    CLSTOCK_SYMBOL,
    ERROR_TYPE,
    HTTP_RESPONSE_STATUS_CODE,
    URL_FULL,
    YFINANCE_TICKER,
)
from clstock_otel_distro.tools.otlp_data import ReceivedSpan

__all__ = [
    "BAR_WIDTH",
    "KEY_ATTRIBUTES",
    "format_duration",
    "render_trace",
    "supports_unicode",
]

BAR_WIDTH = 24
"""Characters of the time bar; the whole trace spans all of them."""

# Shown after the bar, in this order, at most _MAX_ATTRIBUTES of them per span: what
# tells one request, fetch or prediction from another. The older HTTP keys are listed
# for services still on the pre-stable HTTP conventions.
KEY_ATTRIBUTES: tuple[str, ...] = (
    HTTP_ROUTE,
    HTTP_RESPONSE_STATUS_CODE,
    "http.status_code",
    URL_FULL,
    "http.url",
    CLSTOCK_SYMBOL,
    YFINANCE_TICKER,
    CLSTOCK_SCORE,
)
_MAX_ATTRIBUTES = 4
_MAX_VALUE_CHARS = 60
_MAX_LABEL_CHARS = 64
_MAX_ERROR_CHARS = 100
_EXCEPTION_EVENT = "exception"


def format_duration(duration_ns: int) -> str:
    """``0.25 ms`` below a millisecond, ``12.3 ms`` below ten seconds, ``12.35 s`` above."""
    ms = duration_ns / 1e6
    if ms < 1:
        return f"{ms:.2f} ms"
    return f"{ms:.1f} ms" if ms < 10_000 else f"{ms / 1000:.2f} s"


def supports_unicode(stream: TextIO) -> bool:
    """Whether ``stream`` can print the block characters of the time bar."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "█…".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _truncate(text: str, limit: int, ellipsis: str) -> str:
    return text if len(text) <= limit else text[: limit - len(ellipsis)] + ellipsis


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return ",".join(_format_value(item) for item in value)
    return str(value)


def _key_attributes(span: ReceivedSpan, ellipsis: str) -> list[str]:
    shown: list[str] = []
    for key in KEY_ATTRIBUTES:
        value = span.attributes.get(key)
        if value is None or value == "":
            continue
        text = _format_value(value)
        # "GET /api/v1/predict/{symbol}" already says its route.
        if text in span.name:
            continue
        shown.append(f"{key}={_truncate(text, _MAX_VALUE_CHARS, ellipsis)}")
        if len(shown) == _MAX_ATTRIBUTES:
            break
    return shown


def _error_text(span: ReceivedSpan, ellipsis: str) -> str:
    if span.status_code != "ERROR":
        return ""
    error_type = span.attributes.get(ERROR_TYPE)
    message = span.status_message
    for event in span.events:
        if event.name == _EXCEPTION_EVENT:
            error_type = error_type or event.attributes.get("exception.type")
            message = message or event.attributes.get("exception.message")
            break
    text = "ERROR"
    if error_type:
        text += f" {error_type}"
    if message:
        text += f": {message}"
    # Tracebacks and multi-line messages would break the tree: keep the first line.
    return _truncate(text.splitlines()[0], _MAX_ERROR_CHARS, ellipsis)


def depth_first(spans: Iterable[ReceivedSpan]) -> list[tuple[int, ReceivedSpan]]:
    """``(depth, span)`` of a trace's spans, depth first, siblings in start order.

    A span whose parent is missing is a top; a span received twice counts once; spans
    caught in a parent cycle (bad data) never reach a top and are listed at the top
    level after the others.
    """
    by_id: dict[str, ReceivedSpan] = {}
    for span in spans:
        by_id.setdefault(span.span_id, span)
    children: dict[str, list[ReceivedSpan]] = {}
    tops: list[ReceivedSpan] = []
    for span in by_id.values():
        parent = span.parent_span_id
        if parent is not None and parent in by_id and parent != span.span_id:
            children.setdefault(parent, []).append(span)
        else:
            tops.append(span)
    rows: list[tuple[int, ReceivedSpan]] = []
    seen: set[str] = set()
    # Iteratively; `seen` guards against parent cycles.
    stack = [(0, span) for span in sorted(tops, key=_start_order, reverse=True)]
    while stack:
        depth, span = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        rows.append((depth, span))
        for child in sorted(children.get(span.span_id, ()), key=_start_order, reverse=True):
            stack.append((depth + 1, child))
    rows += [(0, span) for span in sorted(by_id.values(), key=_start_order)
             if span.span_id not in seen]
    return rows


def _bar(span: ReceivedSpan, start: int, total: int, width: int, fill: str) -> str:
    # Floor the start and ceil the end, so that a span too short for one cell still
    # shows one, where it happened.
    first = math.floor((span.start_time_unix_nano - start) * width / total)
    last = math.ceil((span.end_time_unix_nano - start) * width / total)
    first = min(max(first, 0), width - 1)
    last = min(max(last, first + 1), width)
    return " " * first + fill * (last - first) + " " * (width - last)


def render_trace(
    spans: Iterable[ReceivedSpan],
    *,
    width: int = BAR_WIDTH,
    ascii_only: bool = False,
    max_spans: int | None = None,
) -> str:
    """The spans of one trace as an indented tree, one line per span, with a header.

    ``ascii_only`` draws the bar with ``#`` for terminals without Unicode;
    ``max_spans`` cuts very large traces short (saying how many spans were left out).
    A span received twice is shown once.
    """
    by_id: dict[str, ReceivedSpan] = {}
    for span in spans:
        by_id.setdefault(span.span_id, span)
    if not by_id:
        return ""
    fill, ellipsis = ("#", "...") if ascii_only else ("█", "…")
    start = min(s.start_time_unix_nano for s in by_id.values())
    end = max(s.end_time_unix_nano for s in by_id.values())
    total = max(end - start, 1)

    rows: list[tuple[int, ReceivedSpan, bool]] = []
    services: dict[int, str] = {}  # the service of the row last seen at each depth
    for depth, span in depth_first(by_id.values()):
        service = span.service_name or "?"
        rows.append((depth, span, depth == 0 or services.get(depth - 1) != service))
        services[depth] = service

    omitted = 0
    if max_spans is not None and len(rows) > max_spans:
        omitted = len(rows) - max_spans
        rows = rows[:max_spans]

    labels = []
    for depth, span, service_changed in rows:
        label = "  " * depth
        if service_changed:
            label += f"[{span.service_name or '?'}] "
        label += span.name
        if depth == 0 and span.parent_span_id is not None:
            if span.parent_span_id in by_id:
                label += " (in a parent cycle)"
            else:
                label += f" (parent {span.parent_span_id[:8]}{ellipsis} not received)"
        labels.append(_truncate(label, _MAX_LABEL_CHARS, ellipsis))
    label_width = max(len(label) for label in labels)
    durations = [format_duration(span.duration_ns) for _, span, _ in rows]
    duration_width = max(len(text) for text in durations)

    lines = [_header(list(by_id.values()), end - start)]
    for label, duration, (_, span, _) in zip(labels, durations, rows):
        line = (
            f"{label:<{label_width}}  {duration:>{duration_width}} "
            f"|{_bar(span, start, total, width, fill)}|"
        )
        extras = _key_attributes(span, ellipsis)
        error = _error_text(span, ellipsis)
        if error:
            extras.append(error)
        if extras:
            line += " " + "  ".join(extras)
        lines.append(line)
    if omitted:
        lines.append(f"{ellipsis} {omitted} more span{'s' if omitted != 1 else ''} not shown")
    return "\n".join(lines)


def _start_order(span: ReceivedSpan) -> tuple[int, int, str]:
    # Ties (same start) keep a stable, meaningful order: longer (enclosing) span first.
    return (span.start_time_unix_nano, -span.end_time_unix_nano, span.span_id)


def _header(spans: Sequence[ReceivedSpan], extent_ns: int) -> str:
    services = {span.service_name or "?" for span in spans}
    errors = sum(1 for span in spans if span.status_code == "ERROR")
    parts = [
        f"{len(spans)} span{'s' if len(spans) != 1 else ''}",
        f"{len(services)} service{'s' if len(services) != 1 else ''}",
        format_duration(extent_ns),
    ]
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    return f"trace {spans[0].trace_id}  " + ", ".join(parts)
