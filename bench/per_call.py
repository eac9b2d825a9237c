"""Per-call overhead of the traced-call wrapper, against a bare call and a hand-written span.

    python bench/per_call.py [--rounds 7] [--calls 20000]

In one process, with a real SDK TracerProvider (default sampler, BatchSpanProcessor
exporting to an exporter that drops everything) and the distro's own instrumentors
(their real extractors) on ClStock-shaped classes (``bench/_subject.py``: the
signatures of ``StockPredictor.calculate_score`` and of the async
``AsyncStockDataProvider.get_stock_data``, bodies that return at once), it times:

- bare                the method, never instrumented
- wrapper, recording  our wrapper, the call a child of a sampled span
- hand-written        ``start_as_current_span`` with the same attributes, as the tracing
                      plan writes it (plus ``histogram.record`` of the duration when a
                      MeterProvider is configured: what our wrapper also does)
- wrapper, non-sampled / hand-written, non-sampled: the same inside a trace whose parent
                      is not sampled (a remote parent with sampled=0)
- uninstrumented      the method after ``uninstrument()``: the original again

each under three metric configurations: no MeterProvider (the API's no-op), an SDK
MeterProvider with a reader (metrics exported), and an SDK MeterProvider without a
reader (what the SDK installs for ``OTEL_METRICS_EXPORTER=none``). Rounds interleave
every variant and configuration, each timed in interleaved batches (a round keeps a
variant's fastest batch); the table gives the median and min-max over rounds of the
time per call and of the time added to the bare call in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _subject
from _common import Goal, fmt, goal_lines, machine, median
from opentelemetry import context as otel_context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)

from clstock_otel_distro.instrumentors._machinery import Target
from clstock_otel_distro.instrumentors.data_provider import (
    ClStockDataProviderInstrumentor,
)
from clstock_otel_distro.instrumentors.predictor import (
    ClStockPredictorInstrumentor,
)
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    DURATION_BUCKETS,
    SCHEMA_URL,
)

CONFIGS = ("no MeterProvider", "SDK MeterProvider", "SDK MeterProvider, not deferred",
           "SDK MeterProvider, no reader")
# The goals are for the default behaviour, with and without a MeterProvider; the other
# two configurations are shown for reference (deferral turned off; the provider the SDK
# installs for OTEL_METRICS_EXPORTER=none, which nothing ever collects).
GOAL_CONFIGS = CONFIGS[:2]
VARIANTS = ("bare", "wrapper, recording", "hand-written", "wrapper, non-sampled",
            "hand-written, non-sampled", "uninstrumented")
MODES = ("sync", "async")
BATCHES = 5
RECORDING_RATIO_GOAL = 1.15
NON_SAMPLED_GOAL_US = 1.5


class DroppingExporter(SpanExporter):
    """Accepts every batch and keeps nothing: the processor's work, not the network's."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _meter_provider(config: str, reader: InMemoryMetricReader) -> Any:
    if config == "no MeterProvider":
        return NoOpMeterProvider()
    if config.endswith("no reader"):
        return MeterProvider(metric_readers=[])
    return MeterProvider(metric_readers=[reader])


class Bench:
    """The providers, instrumentors and subjects of one benchmark run."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.tracer_provider = TracerProvider()
        # The distro's batch settings: 8192 queued spans, 512 per export, every second.
        self.tracer_provider.add_span_processor(BatchSpanProcessor(
            DroppingExporter(), max_queue_size=8192, max_export_batch_size=512,
            schedule_delay_millis=1000))
        self.tracer = self.tracer_provider.get_tracer("bench.manual", schema_url=SCHEMA_URL)
        self.readers = {config: InMemoryMetricReader() for config in CONFIGS}
        self.meter_providers = {config: _meter_provider(config, self.readers[config])
                                for config in CONFIGS}
        self.loop = asyncio.new_event_loop()
        self.predictor = _subject.StockPredictor()
        self.provider = _subject.AsyncStockDataProvider()
        for subject, cls, name in ((self.predictor, _subject.StockPredictor, "calculate_score"),
                                   (self.provider, _subject.AsyncStockDataProvider,
                                    "get_stock_data")):
            subject.tracer = self.tracer
            subject.static_attributes = Target(cls, name, vars(cls)[name]).code_attributes()
        # A sampled parent (recording children) and a remote non-sampled one.
        self.sampled_parent = self.tracer.start_span("request")
        self.unsampled_parent = NonRecordingSpan(SpanContext(
            trace_id=0x5B8EFFF798038103D269B633813FC60C, span_id=0xEEE19B7EC3C1B174,
            is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT)))

    # -- instrumentation -------------------------------------------------------------

    def instrument(self, config: str) -> None:
        meter_provider = self.meter_providers[config]
        kwargs = {"tracer_provider": self.tracer_provider, "meter_provider": meter_provider,
                  "defer_unsampled_durations": not config.endswith("not deferred")}
        ClStockPredictorInstrumentor().instrument(targets=["_subject:StockPredictor"], **kwargs)
        ClStockDataProviderInstrumentor().instrument(
            targets=["_subject:AsyncStockDataProvider"], **kwargs)
        histogram = meter_provider.get_meter("bench.manual", schema_url=SCHEMA_URL) \
            .create_histogram(CLSTOCK_OPERATION_DURATION, unit="s",
                              explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.predictor.histogram = self.provider.histogram = histogram
        self.metered = config != "no MeterProvider"

    def uninstrument(self) -> None:
        ClStockPredictorInstrumentor().uninstrument()
        ClStockDataProviderInstrumentor().uninstrument()

    # -- timing ----------------------------------------------------------------------

    def _method(self, mode: str, variant: str) -> Callable[..., Any]:
        subject = self.predictor if mode == "sync" else self.provider
        base = "calculate_score" if mode == "sync" else "get_stock_data"
        if variant.startswith("hand-written"):
            return getattr(subject, f"{base}_manual{'_metric' if self.metered else ''}")
        return getattr(subject, base)

    def time(self, mode: str, variant: str, calls: int) -> float:
        """Microseconds per call of one variant, over one batch of ``calls`` calls."""
        method = self._method(mode, variant)
        parent = None
        if variant in ("wrapper, recording", "hand-written"):
            parent = self.sampled_parent
        elif variant.endswith("non-sampled"):
            parent = self.unsampled_parent
        token = otel_context.attach(set_span_in_context(parent)) if parent else None
        try:
            if mode == "sync":
                started = time.perf_counter()
                for _ in range(calls):
                    method("7203")
                elapsed = time.perf_counter() - started
            else:
                async def run() -> float:
                    started = time.perf_counter()
                    for _ in range(calls):
                        await method("7203")
                    return time.perf_counter() - started
                elapsed = self.loop.run_until_complete(run())
        finally:
            if token is not None:
                otel_context.detach(token)
        return elapsed / calls * 1e6

    def timed(self, variants: tuple[str, ...], results: dict, config: str) -> None:
        """Each variant in both modes, in BATCHES interleaved batches: the round's value
        of a variant is its fastest batch (as timeit reports: a slower batch measures
        what else ran on the machine meanwhile, not the code)."""
        batches: dict[tuple[str, str], list[float]] = {}
        gc.collect()
        for _ in range(BATCHES):
            for variant in variants:
                for mode in MODES:
                    batches.setdefault((mode, variant), []).append(
                        self.time(mode, variant, max(1, self.calls // BATCHES)))
        for (mode, variant), values in batches.items():
            results[config, mode, variant].append(min(values))

    def round(self, results: dict) -> None:
        for config in CONFIGS:
            self.timed(("bare",), results, config)
            self.instrument(config)
            try:
                self.timed(VARIANTS[1:-1], results, config)
                # What waits for the next collection is recorded then: the same work
                # on the collecting thread (timed per value in flush_cost()).
            finally:
                self.uninstrument()
            self.timed(("uninstrumented",), results, config)

    def flush_cost(self, values: int = 5000) -> float:
        """Microseconds the collection spends per deferred duration it records."""
        config = "SDK MeterProvider"
        reader = self.readers[config]
        self.instrument(config)
        try:
            reader.get_metrics_data()
            started = time.perf_counter()
            reader.get_metrics_data()
            empty = time.perf_counter() - started
            self.time("sync", "wrapper, non-sampled", values)
            started = time.perf_counter()
            reader.get_metrics_data()
            full = time.perf_counter() - started
        finally:
            self.uninstrument()
        return (full - empty) / values * 1e6

    def close(self) -> None:
        self.sampled_parent.end()
        self.tracer_provider.shutdown()
        for provider in self.meter_providers.values():
            if isinstance(provider, MeterProvider):
                provider.shutdown()
        self.loop.close()


def run(rounds: int, calls: int) -> dict:
    bench = Bench(calls)
    results: dict[Any, list[float]] = {
        (c, m, v): [] for c in CONFIGS for m in MODES for v in VARIANTS}
    try:
        bench.round({key: [] for key in results})  # warm-up round, discarded
        for number in range(rounds):
            bench.round(results)
            results.setdefault("flush", []).append(bench.flush_cost())
            print(f"  round {number + 1}/{rounds} done", file=sys.stderr)
    finally:
        bench.close()
    return results


def report(results: dict) -> str:
    lines = ["| metrics | mode | variant | µs / call | µs added to bare | vs hand-written |",
             "|---|---|---|---|---|---|"]
    goals: list[Goal] = []
    references: list[str] = []
    for config in CONFIGS:
        for mode in MODES:
            bare = results[config, mode, "bare"]
            added = {v: [x - b for x, b in zip(results[config, mode, v], bare)]
                     for v in VARIANTS}
            for variant in VARIANTS:
                ratio = ""
                pair = {"wrapper, recording": "hand-written",
                        "wrapper, non-sampled": "hand-written, non-sampled"}.get(variant)
                if pair:
                    ratios = [x / max(h, 1e-3) for x, h in zip(added[variant], added[pair])]
                    ratio = fmt(ratios, 2) + "x"
                lines.append(f"| {config} | {mode} | {variant} "
                             f"| {fmt(results[config, mode, variant], 2)} "
                             f"| {fmt(added[variant], 2) if variant != 'bare' else '-'} "
                             f"| {ratio} |")
            recording = median(x / max(h, 1e-3) for x, h in zip(
                added["wrapper, recording"], added["hand-written"]))
            unsampled = median(added["wrapper, non-sampled"])
            if config not in GOAL_CONFIGS:
                references.append(f"- (reference) {config}, {mode}: recording wrapper "
                                  f"{recording:.2f}x the hand-written span; non-sampled "
                                  f"wrapper adds {unsampled:.2f} µs")
                continue
            goals.append(Goal(
                f"{config}, {mode}: recording wrapper <= {RECORDING_RATIO_GOAL}x the "
                "hand-written span", recording <= RECORDING_RATIO_GOAL, f"{recording:.2f}x"))
            goals.append(Goal(
                f"{config}, {mode}: non-sampled wrapper adds <= {NON_SAMPLED_GOAL_US} µs",
                unsampled <= NON_SAMPLED_GOAL_US, f"{unsampled:.2f} µs"))
    flush = results["flush"]
    notes = [
        "", f"Deferred durations (non-sampled calls, SDK MeterProvider): recorded when the "
        f"reader collects, at {fmt(flush, 2)} µs per value on the collecting thread (the "
        "\"not deferred\" rows pay it on the call's thread instead)."]
    return "\n".join([*lines, *notes, "", *goal_lines(goals), *references])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=10000,
                        help="calls per variant per round")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = run(args.rounds, args.calls)
    print(report(results))
    print(f"\n({time.monotonic() - started:.0f} s; {args.rounds} rounds x {args.calls} calls "
          f"per variant; {machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
