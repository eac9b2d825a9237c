"""OTLP encoding per span: the SDK's encoder, with and without the distro's attribute cache.

    python bench/encoding.py [--rounds 5] [--spans 512]

Encodes (``encode_spans(...).SerializeToString()``, what the OTLP exporters do on
the batch processor's thread) one batch of finished spans of two shapes: a FastAPI
server span (13 attributes, the shape of every request) and the ClStock spans of a
``/api/v1/recommendations`` request (``calculate_score`` and ``get_stock_data``
with their ``code.*`` and ``clstock.*`` attributes, a float score each). Each round
encodes the batch with the SDK's ``_encode_attributes`` and with the distro's cached
one, alternately; the table gives µs per span (median [min-max] over rounds, each
round's best of 5 passes), the ratio, and whether the bytes are identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine
from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from clstock_otel_distro.patches import otlp_attribute_cache as _attribute_cache
from clstock_otel_distro.patches import registry, resource_hash

SDK_ENCODE_ATTRIBUTES = trace_encoder._encode_attributes
SYMBOLS = ("7203", "6758", "9984", "8306", "6861", "9432", "4063", "6098", "8035", "4502")


def _server(index: int) -> tuple[str, SpanKind, dict[str, Any]]:
    port = 40000 + index % 4  # four keep-alive connections
    return "GET /health", SpanKind.SERVER, {
        "http.request.method": "GET", "url.scheme": "http", "server.address": "127.0.0.1",
        "server.port": 8000, "network.protocol.version": "1.1", "url.path": "/health",
        "client.address": "127.0.0.1", "client.port": port,
        "user_agent.original": "python-requests/2.32.3", "http.route": "/health",
        "http.response.status_code": 200, "network.peer.address": "127.0.0.1",
        "network.peer.port": port}


def _clstock(index: int) -> tuple[str, SpanKind, dict[str, Any]]:
    symbol = SYMBOLS[index // 2 % len(SYMBOLS)]
    code = {"code.file.path": "/srv/clstock/models/predictor.py", "code.line.number": 88}
    if index % 2:
        return "StockDataProvider.get_stock_data", SpanKind.INTERNAL, {
            "code.function.name": "data.stock_data.StockDataProvider.get_stock_data",
            **code, "clstock.symbol": symbol, "clstock.period": "1y",
            "clstock.ticker": f"{symbol}.T", "clstock.data_points": 250}
    return "MomentumPredictor.calculate_score", SpanKind.INTERNAL, {
        "code.function.name": "models.predictor.MomentumPredictor.calculate_score",
        **code, "clstock.symbol": symbol, "clstock.score": 0.5 + index / 7919}


SHAPES: dict[str, Callable[[int], tuple[str, SpanKind, dict[str, Any]]]] = {
    "FastAPI server span": _server, "ClStock recommendation spans": _clstock}


def finished_spans(shape: Callable[[int], tuple[str, SpanKind, dict[str, Any]]],
                   count: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(
        {"service.name": "clstock", "host.name": "bench", "process.pid": 1}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench.encoding", "1")
    for index in range(count):
        name, kind, attributes = shape(index)
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes):
            pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _per_span(spans: list[ReadableSpan]) -> tuple[float, bytes]:
    best, data = float("inf"), b""
    for _ in range(5):
        started = time.perf_counter()
        data = encode_spans(spans).SerializeToString()
        best = min(best, time.perf_counter() - started)
    return best / len(spans) * 1e6, data


def run(rounds: int, count: int) -> tuple[str, bool]:
    """The table, and whether every batch encoded to the same bytes both ways."""
    registry.install(resource_hash.PATCH)  # as under the distro, for both: only attributes differ
    _attribute_cache.patch(trace_encoder)
    cached = trace_encoder._encode_attributes
    identical = True
    lines = ["| spans | SDK µs / span | cached µs / span | cached / SDK | same bytes |",
             "|---|---|---|---|---|"]
    for label, shape in SHAPES.items():
        spans = finished_spans(shape, count)
        sdk, ours, ratios, same = [], [], [], True
        for _ in range(rounds):
            trace_encoder._encode_attributes = SDK_ENCODE_ATTRIBUTES
            plain_us, plain_bytes = _per_span(spans)
            trace_encoder._encode_attributes = cached
            cached_us, cached_bytes = _per_span(spans)
            sdk.append(plain_us)
            ours.append(cached_us)
            ratios.append(cached_us / plain_us)
            same &= plain_bytes == cached_bytes
        identical &= same
        lines.append(f"| {label} | {fmt(sdk, 1)} | {fmt(ours, 1)} | {fmt(ratios, 2)}x "
                     f"| {'yes' if same else 'NO'} |")
    trace_encoder._encode_attributes = SDK_ENCODE_ATTRIBUTES
    return "\n".join(lines), identical


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spans", type=int, default=512, help="spans per batch")
    args = parser.parse_args(argv)
    started = time.monotonic()
    table, identical = run(args.rounds, args.spans)
    print(table)
    print(f"\n({time.monotonic() - started:.0f} s; {args.rounds} rounds x {args.spans} spans, "
          f"best of 5 passes each; {machine()})")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
