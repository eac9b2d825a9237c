"""``clstock-otel collect``: an OTLP receiver for one machine, no collector needed.

Start it, point the deployment's exporters at it, and watch each trace arrive as a tree::

    clstock-otel collect --output traces.jsonl
    # in the deployment's shell:
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
    opentelemetry-instrument uvicorn app.main:app

It listens for OTLP/HTTP (4318) and OTLP/gRPC (4317) on 127.0.0.1 and

- appends every span to ``--output`` as OTLP JSON lines, in the encoding the
  OpenTelemetry Collector's ``file`` exporter writes (:mod:`clstock_otel_distro.tools.spanfile`),
  so that ``clstock-otel report`` and any tool reading collector files read either;
- prints each trace as a tree (:mod:`clstock_otel_distro.tools.trace_tree`) once it is
  complete: its root span (one without a parent) has arrived and no span of the trace
  arrived for ``--quiet-period`` seconds. A trace whose root never arrives (its
  parent lives in a process exporting elsewhere) is printed after three quiet
  periods. Traces completing together print in the order they started (their
  earliest span start), the order of the requests. Spans arriving after their trace
  was printed print it again, marked as an update;
- on SIGINT or SIGTERM prints the traces still pending, flushes and closes the file,
  says how many spans, traces and export requests it received, and exits 0.

Metrics and logs sent to it are accepted (so exporters do not log errors) and
counted, not kept. Receiving never waits on a terminal: the exporter's request thread
only encodes and appends to a buffered file under a lock and files the spans by
trace; a background thread decides what is complete and renders it.

In Python::

    with Collector(http_port=0, grpc_port=0, output="spans.jsonl") as collector:
        ...  # export to collector.http_endpoint
    stats = collector.stats
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver
from clstock_otel_distro.tools.spanfile import SpanFileWriter
from clstock_otel_distro.tools.trace_tree import render_trace, supports_unicode

__all__ = [
    "CollectStats",
    "Collector",
    "CompletedTrace",
    "TraceAssembler",
    "run_collect",
]

_logger = logging.getLogger(__name__)

DEFAULT_QUIET_PERIOD = 1.5
# A trace without a parentless span may still be waiting for its root: give it longer.
_ORPHAN_FACTOR = 3
# Printed traces kept (with their spans) so that late spans can reprint them whole.
_REMEMBERED_TRACES = 512
_MAX_TREE_SPANS = 200

# --------------------------------------------------------------------------- assembling


class CompletedTrace(NamedTuple):
    """A trace ready to print; ``late_spans`` > 0 when it was printed before."""

    trace_id: str
    spans: list[ReceivedSpan]
    late_spans: int


@dataclass
class _Pending:
    spans: list[ReceivedSpan]
    last_arrival: float
    has_root: bool = False
    late_spans: int = 0
    reopened: bool = False


class TraceAssembler:
    """Files streamed spans by trace and hands out the traces that are complete.

    A trace is complete when no span of it arrived for ``quiet_period`` seconds and it
    has a root (a span without a parent); without a root, after ``orphan_period``
    (default three quiet periods). The last ``remember`` completed traces are kept, so
    that spans arriving late reopen their trace whole. Thread-safe.
    """

    def __init__(
        self,
        quiet_period: float = DEFAULT_QUIET_PERIOD,
        *,
        orphan_period: float | None = None,
        remember: int = _REMEMBERED_TRACES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if quiet_period < 0:
            raise ValueError(f"quiet_period must be >= 0, not {quiet_period!r}")
        self.quiet_period = quiet_period
        self.orphan_period = (
            _ORPHAN_FACTOR * quiet_period if orphan_period is None else orphan_period
        )
        self._remember = remember
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._done: OrderedDict[str, list[ReceivedSpan]] = OrderedDict()
        self.trace_count = 0
        """Traces seen (a trace reopened by late spans is not counted again)."""

    def add(self, spans: Sequence[ReceivedSpan]) -> None:
        """File ``spans`` under their traces."""
        now = self._clock()
        with self._lock:
            for span in spans:
                pending = self._pending.get(span.trace_id)
                if pending is None:
                    printed = self._done.pop(span.trace_id, None)
                    if printed is None:
                        pending = _Pending([], now)
                        self.trace_count += 1
                    else:
                        pending = _Pending(printed, now, reopened=True)
                        pending.has_root = any(s.parent_span_id is None for s in printed)
                    self._pending[span.trace_id] = pending
                pending.spans.append(span)
                pending.last_arrival = now
                if span.parent_span_id is None:
                    pending.has_root = True
                if pending.reopened:
                    pending.late_spans += 1

    def pop_complete(self) -> list[CompletedTrace]:
        """The traces complete by now, in start order; they leave the pending set."""
        now = self._clock()
        with self._lock:
            ready = [
                trace_id
                for trace_id, pending in self._pending.items()
                if (idle := now - pending.last_arrival) >= self.quiet_period
                and (pending.has_root or idle >= self.orphan_period)
            ]
            return [self._complete(trace_id) for trace_id in self._start_order(ready)]

    def pop_all(self) -> list[CompletedTrace]:
        """Every pending trace, complete or not (at shutdown), in start order."""
        with self._lock:
            return [self._complete(trace_id) for trace_id in self._start_order(self._pending)]

    def _start_order(self, trace_ids: Iterable[str]) -> list[str]:
        # A trace's spans arrive when they end, the root last: the order in which
        # traces go quiet is not the order of the requests, their earliest start is.
        def started(trace_id: str) -> tuple[int, str]:
            spans = self._pending[trace_id].spans
            return (min(s.start_time_unix_nano for s in spans), trace_id)

        return sorted(trace_ids, key=started)

    def pending_count(self) -> int:
        """Traces received and not yet complete."""
        with self._lock:
            return len(self._pending)

    def _complete(self, trace_id: str) -> CompletedTrace:
        pending = self._pending.pop(trace_id)
        self._done[trace_id] = pending.spans
        while len(self._done) > self._remember:
            self._done.popitem(last=False)
        return CompletedTrace(trace_id, list(pending.spans), pending.late_spans)


# --------------------------------------------------------------------------- collector


@dataclass(frozen=True)
class CollectStats:
    """What a :class:`Collector` received, and wrote."""

    spans: int
    traces: int
    trace_requests: dict[str, int] = field(default_factory=dict)  # per transport
    metric_requests: int = 0
    log_requests: int = 0
    spans_written: int = 0
    write_errors: int = 0

    def summary(self) -> str:
        """One line for the terminal."""
        requests = sum(self.trace_requests.values())
        per_transport = ", ".join(f"{t} {n}" for t, n in self.trace_requests.items() if n)
        text = (
            f"received {self.spans} span{'s' if self.spans != 1 else ''} in "
            f"{self.traces} trace{'s' if self.traces != 1 else ''} "
            f"({requests} export request{'s' if requests != 1 else ''}"
            + (f": {per_transport}" if per_transport else "")
            + ")"
        )
        ignored = []
        if self.metric_requests:
            ignored.append(f"{self.metric_requests} metric")
        if self.log_requests:
            ignored.append(f"{self.log_requests} log")
        if ignored:
            plural = "s" if self.metric_requests + self.log_requests != 1 else ""
            text += f"; {' and '.join(ignored)} export request{plural} not kept"
        return text


class Collector:
    """The embedded receiver, a span file and the trace printer, started together.

    ``output`` None writes no file; ``max_trees_per_second`` 0 prints no trees (above
    the rate, trees are counted and skipped, so a benchmark does not flood the
    terminal). Ports 0 pick free ones.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        http_port: int = 4318,
        grpc_port: int = 4317,
        output: str | os.PathLike[str] | None = None,
        quiet_period: float = DEFAULT_QUIET_PERIOD,
        out: TextIO | None = None,
        max_trees_per_second: float = 20,
    ) -> None:
        self._out = out if out is not None else sys.stdout
        self._output = None if output is None else Path(output)
        self._receiver = OTLPReceiver(host, http_port, grpc_port, retain=False)
        self._assembler = TraceAssembler(quiet_period)
        self._writer: SpanFileWriter | None = None
        self._max_trees = max_trees_per_second
        self._tokens = float(max_trees_per_second)
        self._refilled = time.monotonic()
        self._skipped_trees = 0
        self._write_errors = 0
        self._errors_lock = threading.Lock()
        self._ascii_only = not supports_unicode(self._out)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Check often enough that a trace prints within ~1/4 quiet period of completing.
        self._tick = min(0.25, max(quiet_period / 4, 0.02))
        self.stats: CollectStats | None = None
        """Set by :meth:`stop`."""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Collector:
        """Open the file and bind the ports; raises ``OSError`` if either fails."""
        if self._output is not None:
            self._writer = SpanFileWriter(self._output)
        self._receiver.add_listener(self._on_spans)
        try:
            self._receiver.start()
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            raise
        self._thread = threading.Thread(target=self._run, name="clstock-collect", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> CollectStats:
        """Stop receiving, print the pending traces, close the file; returns the stats."""
        # Requests in progress finish first, so that what the exporters were told was
        # received is in the file.
        self._receiver.stop(grace=2.0)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._print_traces(self._assembler.pop_all(), final=True)
        if self._writer is not None:
            self._writer.close()
        stats = self._receiver.stats()
        self.stats = CollectStats(
            spans=sum(s.spans for s in stats.values()),
            traces=self._assembler.trace_count,
            trace_requests={t: s.trace_requests for t, s in stats.items()},
            metric_requests=sum(s.metric_requests for s in stats.values()),
            log_requests=sum(s.log_requests for s in stats.values()),
            spans_written=0 if self._writer is None else self._writer.spans_written,
            write_errors=self._write_errors,
        )
        return self.stats

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def http_endpoint(self) -> str:
        """``http://host:port`` for OTLP/HTTP."""
        return self._receiver.http_endpoint

    @property
    def grpc_endpoint(self) -> str | None:
        """``http://host:port`` for OTLP/gRPC."""
        return self._receiver.grpc_endpoint

    @property
    def output(self) -> Path | None:
        """The span file, if any."""
        return self._output

    # ---------------------------------------------------------------- receiving

    def _on_spans(self, spans: Sequence[ReceivedSpan]) -> None:
        # On the exporter's request thread: only cheap work here.
        if self._writer is not None:
            try:
                self._writer.write(spans)
            except (OSError, ValueError) as exc:
                with self._errors_lock:
                    self._write_errors += 1
                    first = self._write_errors == 1
                if first:  # one message, not one per request
                    _logger.error("cannot write spans to %s: %s", self._output, exc)
        self._assembler.add(spans)  # also with no trees to print: it counts the traces

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            try:
                self._print_traces(self._assembler.pop_complete())
                if self._writer is not None:
                    self._writer.flush()
            except Exception:  # the printer must outlive a bad trace or a closed terminal
                _logger.exception("clstock-otel collect: printing traces failed")

    def _print_traces(self, traces: list[CompletedTrace], *, final: bool = False) -> None:
        if self._max_trees <= 0:
            return
        now = time.monotonic()
        self._tokens = min(
            float(self._max_trees), self._tokens + (now - self._refilled) * self._max_trees
        )
        self._refilled = now
        blocks = []
        for trace in traces:
            if self._tokens < 1:
                self._skipped_trees += 1
                continue
            self._tokens -= 1
            tree = render_trace(trace.spans, ascii_only=self._ascii_only, max_spans=_MAX_TREE_SPANS)
            if trace.late_spans:
                late = trace.late_spans
                tree += f"\n(update: {late} span{'s' if late != 1 else ''} arrived late)"
            blocks.append(tree)
        if self._skipped_trees and (blocks or final):
            skipped = self._skipped_trees
            blocks.append(
                f"({skipped} more trace{'s' if skipped != 1 else ''} completed, not shown: "
                f"more than {self._max_trees:g} per second)"
            )
            self._skipped_trees = 0
        if blocks:
            print("\n\n".join(blocks) + "\n", file=self._out, flush=True)


# --------------------------------------------------------------------------- command


def run_collect(
    *,
    host: str = "127.0.0.1",
    http_port: int = 4318,
    grpc_port: int = 4317,
    output: str | os.PathLike[str] | None = None,
    quiet_period: float = DEFAULT_QUIET_PERIOD,
    max_trees_per_second: float = 20,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The ``clstock-otel collect`` command: run until SIGINT/SIGTERM, then 0."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    collector = Collector(
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        output=output,
        quiet_period=quiet_period,
        out=out,
        max_trees_per_second=max_trees_per_second,
    )
    signalled: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        # No locks in a signal handler (it may interrupt their holder): just a note.
        signalled.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            collector.start()
        except OSError as exc:
            print(
                f"clstock-otel collect: {exc}\n"
                "(another collector on these ports? choose others with --http-port and "
                "--grpc-port)",
                file=err,
            )
            return 1
        print(_listening_message(collector), file=out, flush=True)
        while not signalled:
            time.sleep(0.1)  # woken early by a signal; its handler runs on this thread
        # A second Ctrl-C while flushing interrupts the flush.
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("\nclstock-otel collect: stopping", file=out, flush=True)
        stats = collector.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"clstock-otel collect: {stats.summary()}", file=out, flush=True)
    if collector.output is not None:
        print(f"  spans written to {collector.output}", file=out, flush=True)
        if stats.write_errors:
            print(
                f"clstock-otel collect: {stats.write_errors} export request(s) could not be "
                f"written to {collector.output} ({stats.spans - stats.spans_written} spans)",
                file=err,
                flush=True,
            )
            return 1
    return 0


def _listening_message(collector: Collector) -> str:
    lines = [
        "clstock-otel collect: listening on",
        f"  OTLP/HTTP  {collector.http_endpoint}  (POST /v1/traces, /v1/metrics, /v1/logs)",
    ]
    if collector.grpc_endpoint is not None:
        lines.append(f"  OTLP/gRPC  {collector.grpc_endpoint}")
    lines += [
        "Point the deployment's exporters here:",
        f"  export OTEL_EXPORTER_OTLP_ENDPOINT={collector.http_endpoint}",
    ]
    if collector.grpc_endpoint is not None:
        lines.append(
            "  (or OTEL_EXPORTER_OTLP_PROTOCOL=grpc "
            f"OTEL_EXPORTER_OTLP_ENDPOINT={collector.grpc_endpoint})"
        )
    if collector.output is not None:
        lines.append(f"Appending spans to {collector.output} (OTLP JSON lines).")
    lines.append("Each trace prints once complete. Ctrl-C to stop.")
    return "\n".join(lines)
