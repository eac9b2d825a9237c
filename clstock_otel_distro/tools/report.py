"""``clstock-otel report FILE``: latency, throughput, errors and service dependencies.

Reads OTLP JSON lines, as ``clstock-otel collect --output`` writes them or as the
OpenTelemetry Collector's ``file`` exporter does (``format: json``), and prints::

    clstock-otel report traces.jsonl           # aligned tables
    clstock-otel report traces.jsonl --json    # the same numbers, for scripts

Overall: the traces, the share of failed traces (a trace failed when any of its spans
has an ERROR status, as Jaeger and Zipkin mark a trace) and the traces per second over
the file's time window. Per service and span name: the span count, the throughput
(spans per second over the file's time window, from the earliest span start to the
latest span end), the p50, p90 and p99 durations in milliseconds, and the share of
spans with an ERROR status.

Percentiles use the nearest-rank method: the p-th percentile of n sorted durations is
the one at 1-based rank ceil(p/100 * n). It is always a duration that was observed
(no interpolation); for 1..10 ms, p50 is 5 ms, p90 9 ms and p99 10 ms.

Service dependencies are counted per call, from parent links: a span whose parent is
in the file makes an edge ``parent's service -> span's service`` when the two
services differ, or when the parent is a CLIENT span and the span a SERVER span (or
PRODUCER and CONSUMER), as when a service calls itself. A call is an error when
either side has an ERROR status.

Blank lines are skipped; a line that is not OTLP JSON traces is skipped with one
warning on stderr naming its line number. A span found twice (an exporter retry) is
counted once.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from clstock_otel_distro.tools.spanfile import read_spans

__all__ = [
    "EDGE_HEADER",
    "PERCENTILE_METHOD",
    "TABLE_HEADER",
    "Edge",
    "OperationStats",
    "Report",
    "build_report",
    "format_overall",
    "format_per_second",
    "format_report",
    "format_share",
    "percentile",
    "run_report",
]

PERCENTILE_METHOD = "nearest-rank"
TABLE_HEADER = ("SERVICE", "SPAN", "COUNT", "SPANS/S", "P50 MS", "P90 MS", "P99 MS", "ERRORS")
EDGE_HEADER = ("CLIENT", "", "SERVER", "CALLS", "ERRORS")
_UNKNOWN_SERVICE = "(unknown)"
_CALL_KINDS = {("CLIENT", "SERVER"), ("PRODUCER", "CONSUMER")}

# --------------------------------------------------------------------------- computing


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (0 < p <= 100) of ascending ``sorted_values``."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p!r}")
    # round() first: 0.9 * 10 is 9.000000000000002 in floating point, whose ceil is 10.
    rank = math.ceil(round(p / 100 * len(sorted_values), 9))
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True)
class OperationStats:
    """The numbers of one (service, span name)."""

    service: str
    name: str
    count: int
    errors: int
    throughput: float | None  # spans/s over the file's window; None for a zero window
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        """Errors over count, 0..1."""
        return self.errors / self.count


@dataclass(frozen=True)
class Edge:
    """Calls from one service to another."""

    client: str
    server: str
    calls: int
    errors: int


@dataclass(frozen=True)
class Report:
    """Everything ``clstock-otel report`` prints."""

    spans: int
    traces: int
    start_unix_nano: int
    end_unix_nano: int
    operations: tuple[OperationStats, ...]
    edges: tuple[Edge, ...]
    skipped_lines: int = 0
    duplicate_spans: int = 0
    failed_traces: int = 0  # traces with at least one ERROR span

    @property
    def failed_trace_rate(self) -> float:
        """Failed traces over traces, 0..1 (0 for no traces)."""
        return self.failed_traces / self.traces if self.traces else 0.0

    @property
    def traces_per_second(self) -> float | None:
        """Traces over the window; None for a zero window."""
        window = self.window_seconds
        return self.traces / window if window > 0 else None

    @property
    def window_seconds(self) -> float:
        """From the earliest span start to the latest span end."""
        return max(self.end_unix_nano - self.start_unix_nano, 0) / 1e9

    @property
    def services(self) -> list[str]:
        """Every service with spans, sorted."""
        return sorted({op.service for op in self.operations})

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``--json``; its keys are stable."""
        return {
            "spans": self.spans,
            "traces": self.traces,
            "services": self.services,
            "window": {
                "start_unix_nano": self.start_unix_nano,
                "end_unix_nano": self.end_unix_nano,
                "seconds": round(self.window_seconds, 6),
            },
            "failed_traces": self.failed_traces,
            "failed_trace_rate": round(self.failed_trace_rate, 6),
            "traces_per_s": (
                None if self.traces_per_second is None else round(self.traces_per_second, 6)
            ),
            "percentile_method": PERCENTILE_METHOD,
            "skipped_lines": self.skipped_lines,
            "duplicate_spans": self.duplicate_spans,
            "operations": [
                {
                    "service": op.service,
                    "name": op.name,
                    "count": op.count,
                    "errors": op.errors,
                    "error_rate": round(op.error_rate, 6),
                    "throughput_per_s": None if op.throughput is None else round(op.throughput, 6),
                    "p50_ms": round(op.p50_ms, 6),
                    "p90_ms": round(op.p90_ms, 6),
                    "p99_ms": round(op.p99_ms, 6),
                }
                for op in self.operations
            ],
            "edges": [
                {"client": e.client, "server": e.server, "calls": e.calls, "errors": e.errors}
                for e in self.edges
            ],
        }


def build_report(spans: Iterable[ReceivedSpan], *, skipped_lines: int = 0) -> Report:
    """Compute the report of ``spans`` (any order; duplicates counted once)."""
    unique: dict[tuple[str, str], ReceivedSpan] = {}
    duplicates = 0
    for span in spans:
        key = (span.trace_id, span.span_id)
        if key in unique:
            duplicates += 1
        else:
            unique[key] = span
    if not unique:
        return Report(0, 0, 0, 0, (), (), skipped_lines, duplicates)

    start = min(s.start_time_unix_nano for s in unique.values())
    end = max(s.end_time_unix_nano for s in unique.values())
    window = (end - start) / 1e9

    durations: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], int] = {}
    for span in unique.values():
        key = (span.service_name or _UNKNOWN_SERVICE, span.name)
        durations.setdefault(key, []).append(span.duration_ns / 1e6)
        errors[key] = errors.get(key, 0) + (span.status_code == "ERROR")
    operations = []
    for (service, name), values in sorted(durations.items()):
        values.sort()
        operations.append(
            OperationStats(
                service=service,
                name=name,
                count=len(values),
                errors=errors[(service, name)],
                throughput=len(values) / window if window > 0 else None,
                p50_ms=percentile(values, 50),
                p90_ms=percentile(values, 90),
                p99_ms=percentile(values, 99),
            )
        )

    calls: dict[tuple[str, str], list[int]] = {}
    for span in unique.values():
        if span.parent_span_id is None:
            continue
        parent = unique.get((span.trace_id, span.parent_span_id))
        if parent is None:
            continue
        client = parent.service_name or _UNKNOWN_SERVICE
        server = span.service_name or _UNKNOWN_SERVICE
        if client == server and (parent.kind, span.kind) not in _CALL_KINDS:
            continue
        counts = calls.setdefault((client, server), [0, 0])
        counts[0] += 1
        counts[1] += parent.status_code == "ERROR" or span.status_code == "ERROR"
    edges = tuple(Edge(client, server, n, e) for (client, server), (n, e) in sorted(calls.items()))
    failed = {span.trace_id for span in unique.values() if span.status_code == "ERROR"}
    return Report(
        spans=len(unique),
        traces=len({trace_id for trace_id, _ in unique}),
        failed_traces=len(failed),
        start_unix_nano=start,
        end_unix_nano=end,
        operations=tuple(operations),
        edges=edges,
        skipped_lines=skipped_lines,
        duplicate_spans=duplicates,
    )


# --------------------------------------------------------------------------- printing


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def format_share(rate: float) -> str:
    """A 0..1 share as the report prints it: ``14.3%``."""
    return f"{rate:.1%}"


def format_per_second(rate: float | None) -> str:
    """A rate as the report prints it: ``0.52``, or ``-`` for a zero window."""
    return "-" if rate is None else f"{rate:.2f}"


def format_overall(report: Report) -> str:
    """The overall line: failed traces and their share, and traces per second."""
    return (
        f"failed traces: {report.failed_traces} of {report.traces} "
        f"({format_share(report.failed_trace_rate)}); "
        f"throughput: {format_per_second(report.traces_per_second)} traces/s"
    )


def format_report(report: Report) -> str:
    """The report as plain aligned tables."""
    if not report.spans:
        return "no spans"
    summary = (
        f"{report.spans} spans in {report.traces} traces from {len(report.services)} "
        f"service{'s' if len(report.services) != 1 else ''} over "
        f"{report.window_seconds:.3f} s (percentiles: {PERCENTILE_METHOD})"
    )
    if report.duplicate_spans:
        summary += f"; {report.duplicate_spans} duplicate spans ignored"
    rows = [
        (
            op.service,
            op.name,
            str(op.count),
            "-" if op.throughput is None else f"{op.throughput:.2f}",
            f"{op.p50_ms:.2f}",
            f"{op.p90_ms:.2f}",
            f"{op.p99_ms:.2f}",
            f"{op.errors} ({op.error_rate:.1%})" if op.errors else "0",
        )
        for op in report.operations
    ]
    table = _table(TABLE_HEADER, rows, right={2, 3, 4, 5, 6, 7})
    lines = [summary, format_overall(report), "", *table]
    lines += ["", "service dependencies (calls from client to server):"]
    if report.edges:
        edge_rows = [(e.client, "->", e.server, str(e.calls), str(e.errors)) for e in report.edges]
        lines += _table(EDGE_HEADER, edge_rows, right={3, 4})
    else:
        lines.append("  none (no span has a parent in another service)")
    return "\n".join(lines)


def run_report(
    path: str | Path,
    *,
    as_json: bool = False,
    html: str | Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The ``clstock-otel report`` command: 0, or 2 when a file cannot be read or written.

    ``html`` also writes the HTML report (:mod:`clstock_otel_distro.tools.html_report`)
    to that path, from the same numbers.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        spans, skipped = read_spans(path, warn=lambda message: print(message, file=err))
    except OSError as exc:
        print(f"clstock-otel report: cannot read {path}: {exc.strerror or exc}", file=err)
        return 2
    report = build_report(spans, skipped_lines=skipped)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
    else:
        print(format_report(report), file=out)
    if html is not None:
        from clstock_otel_distro.tools.html_report import write_html_report

        try:
            written = write_html_report(spans, html, report=report, source=str(path))
        except OSError as exc:
            print(f"clstock-otel report: cannot write {html}: {exc.strerror or exc}", file=err)
            return 2
        # On stderr with --json, so that stdout stays one JSON document.
        print(f"HTML report: {written}", file=err if as_json else out)
    return 0
