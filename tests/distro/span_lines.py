"""Hand-built OTLP JSON lines for the report tests, read back with the public reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from clstock_otel_distro.tools.spanfile import read_spans

BASE_NS = 1_700_000_000_000_000_000
MS = 1_000_000
KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}


def value(item: Any) -> dict[str, Any]:
    """An OTLP AnyValue."""
    if isinstance(item, bool):
        return {"boolValue": item}
    if isinstance(item, str):
        return {"stringValue": item}
    if isinstance(item, int):
        return {"intValue": str(item)}
    if isinstance(item, (list, tuple)):
        return {"arrayValue": {"values": [value(v) for v in item]}}
    return {"doubleValue": item}


def span(
    trace: int,
    span_id: str,
    parent: str | None,
    name: str,
    *,
    kind: str = "INTERNAL",
    start_ms: float = 0,
    duration_ms: float = 1,
    error: str | None = None,
    attributes: dict[str, Any] | None = None,
    events: list[tuple[str, float, dict[str, Any]]] = (),
) -> dict[str, Any]:
    """One OTLP JSON span of trace number ``trace``; ``error`` is its status message."""
    start = BASE_NS + int(start_ms * MS)
    out: dict[str, Any] = {"traceId": f"{trace:032x}", "spanId": span_id}
    if parent:
        out["parentSpanId"] = parent
    out.update(
        name=name,
        kind=KINDS[kind],
        startTimeUnixNano=str(start),
        endTimeUnixNano=str(start + int(duration_ms * MS)),
        attributes=[{"key": k, "value": value(v)} for k, v in (attributes or {}).items()],
        events=[
            {
                "timeUnixNano": str(BASE_NS + int(at_ms * MS)),
                "name": event_name,
                "attributes": [{"key": k, "value": value(v)} for k, v in event_attrs.items()],
            }
            for event_name, at_ms, event_attrs in events
        ],
        status={"code": 2, "message": error} if error is not None else {},
    )
    return out


def line(spans_by_service: dict[str, list[dict[str, Any]]]) -> str:
    """One OTLP JSON line (an ExportTraceServiceRequest) with a resource per service."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": value(name)}]},
                    "scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}],
                }
                for name, spans in spans_by_service.items()
            ]
        }
    )


def write(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` as a span file."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def received(path: Path, lines: list[str]) -> list[ReceivedSpan]:
    """The spans of ``lines``, as the reader decodes them (every line must be good)."""
    spans, skipped = read_spans(write(path, lines))
    assert skipped == 0
    return spans
