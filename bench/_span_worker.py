"""The per-span workload of ``bench/instructions.py``, run under callgrind.

    python bench/_span_worker.py sdk ENDPOINT            # the SDK, wired by hand
    opentelemetry-instrument python bench/_span_worker.py distro ENDPOINT

A trace is a root span with ten children, made with ``start_as_current_span`` and
five ``set_attribute`` calls each (the tracing plan's hand-written code). ``sdk``
builds a TracerProvider with a BatchSpanProcessor and an OTLP/HTTP exporter to
ENDPOINT; ``distro`` uses whatever provider ``opentelemetry-instrument`` configured
(this distro's, from the ``OTEL_*`` environment).

The driver talks to it one line at a time on stdin/stdout: ``settle`` (a full
collection; answers ``settled``), ``run N`` (N traces, then ``force_flush()``, so the
window's spans are encoded and sent before it ends; answers ``done``), ``quit``.
Before the first command it makes a few traces to warm up and answers ``ready``.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from opentelemetry import trace

CHILDREN = 10
WARM_UP_TRACES = 5
SYMBOLS = ("7203", "6758", "9984", "8306", "6861")


def sdk_provider(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench-span-sdk"}))
    # The batch settings come from the OTEL_BSP_* environment, as the distro's do.
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    return provider


def make_traces(tracer: trace.Tracer, count: int) -> None:
    for number in range(count):
        with tracer.start_as_current_span("StockPredictor.get_top_recommendations") as root:
            root.set_attribute("clstock.top_n", 10)
            root.set_attribute("clstock.symbol_count", CHILDREN)
            root.set_attribute("clstock.market", "TSE")
            root.set_attribute("clstock.batch", number)
            root.set_attribute("clstock.cached", True)
            for child in range(CHILDREN):
                with tracer.start_as_current_span("StockPredictor.calculate_score") as span:
                    span.set_attribute("clstock.symbol", SYMBOLS[child % len(SYMBOLS)])
                    span.set_attribute("clstock.period", "1y")
                    span.set_attribute("clstock.score", 0.5 + child / 100)
                    span.set_attribute("clstock.rows", 245)
                    span.set_attribute("clstock.cached", child % 2 == 0)


def main(argv: list[str]) -> int:
    mode, endpoint = argv
    provider = sdk_provider(endpoint) if mode == "sdk" else trace.get_tracer_provider()
    tracer = provider.get_tracer("bench.span_worker")
    make_traces(tracer, WARM_UP_TRACES)
    provider.force_flush()
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, count = line.strip().partition(" ")
        if command == "settle":
            gc.collect()
            print("settled", flush=True)
        elif command == "run":
            make_traces(tracer, int(count))
            provider.force_flush()
            print("done", flush=True)
        elif command == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
