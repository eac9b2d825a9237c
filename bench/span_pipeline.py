"""Instructions per span, all-in: the SDK's span pipeline against the distro's.

    python bench/span_pipeline.py [--small 1100] [--large 3300] [--repeat 1]

Each pipeline runs the same workload twice under ``valgrind --tool=callgrind`` (which
counts the instructions a process executes, every thread included): traces of one
root and 10 children made with ``start_as_current_span``, five attributes on each
span (two strings, an int, a float, a bool), every span exported as OTLP/HTTP
protobuf to a sink HTTP server running in another process (it answers 200 and
keeps nothing). The difference between the two runs' totals divided by the
difference in spans is the cost of one span: start, attributes, end, batch
processor, encoding and HTTP export; start-up and imports cancel out.

Pipelines:

- ``sdk``: ``opentelemetry.sdk.trace.TracerProvider`` with a ``BatchSpanProcessor``
  and the ``OTLPSpanExporter`` (http/protobuf), as upstream configures it;
- ``pipeline``: :class:`clstock_otel_distro.sdk.pipeline.PipelineTracerProvider` with
  its processor on the same exporter (what the distro configures by default).

Needs valgrind (Debian package ``valgrind``). Results go in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PIPELINES = ("sdk", "pipeline")
CHILDREN_PER_ROOT = 10
SYMBOLS = ("7203", "6758", "9984", "8306", "6861", "9432", "4063", "6098", "8035", "4502")
_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve_sink() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin
    server.shutdown()


def _provider(pipeline: str, endpoint: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint)
    # Batches sent when full (as under load), the rest at the final flush.
    settings = {"max_queue_size": 8192, "max_export_batch_size": 512,
                "schedule_delay_millis": 3_600_000}
    if pipeline == "sdk":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter, **settings))
        return provider
    from clstock_otel_distro.sdk.pipeline import (
        PipelineSpanProcessor,
        PipelineTracerProvider,
    )
    from clstock_otel_distro.sdk.pipeline.transport import otlp_http_sender

    provider = PipelineTracerProvider(shutdown_on_exit=False)
    sender = otlp_http_sender(exporter)
    assert sender is not None, "the installed OTLP exporter has an unknown shape"
    provider.add_span_processor(PipelineSpanProcessor(exporter, sender, **settings))
    assert provider.pipeline_active
    return provider


def _traces(tracer, count: int) -> None:
    for index in range(count):
        symbol = SYMBOLS[index % len(SYMBOLS)]
        with tracer.start_as_current_span("StockPredictor.get_top_recommendations") as root:
            _five_attributes(root, symbol, index)
            for child in range(CHILDREN_PER_ROOT):
                with tracer.start_as_current_span("StockPredictor.calculate_score") as span:
                    _five_attributes(span, SYMBOLS[child], child)


def _five_attributes(span, symbol: str, index: int) -> None:
    span.set_attribute("clstock.symbol", symbol)
    span.set_attribute("clstock.period", "1y")
    span.set_attribute("clstock.data_points", 250 + index % 7)
    span.set_attribute("clstock.score", 0.5 + index / 1000)
    span.set_attribute("clstock.cached", index % 2 == 0)


def _workload(pipeline: str, spans: int, endpoint: str) -> None:
    provider = _provider(pipeline, endpoint)
    tracer = provider.get_tracer("bench.span_pipeline", "1.0")
    _traces(tracer, 20)  # warm-up: first-use costs, caches, the HTTP connection
    provider.force_flush()
    _traces(tracer, spans // (CHILDREN_PER_ROOT + 1))
    provider.force_flush()
    provider.shutdown()


def _instructions(pipeline: str, spans: int, endpoint: str, workdir: Path) -> int:
    out = workdir / f"callgrind.{pipeline}.{spans}.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE", None)
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
         sys.executable, __file__, "--workload", pipeline, "--spans", str(spans),
         "--endpoint", endpoint],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    match = _TOTAL.search(out.read_bytes())
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def _measure(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())
        endpoint = f"http://127.0.0.1:{port}/v1/traces"
        per_span: dict[str, list[float]] = {name: [] for name in args.pipelines}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeat):
                for name in args.pipelines:
                    small = _instructions(name, args.small, endpoint, Path(tmp))
                    large = _instructions(name, args.large, endpoint, Path(tmp))
                    per_span[name].append((large - small) / (args.large - args.small))
                    print(f"  {name}: {per_span[name][-1] / 1000:.1f} k instructions/span",
                          flush=True)
    finally:
        sink.stdin.close()
        sink.wait(timeout=10)
    print(f"\ninstructions per span, all-in ({args.large} - {args.small} spans, "
          f"{CHILDREN_PER_ROOT} children per root, 5 attributes, OTLP/HTTP to a sink)")
    for name, values in per_span.items():
        spread = f" [{min(values) / 1000:.1f}-{max(values) / 1000:.1f}]" if len(values) > 1 else ""
        print(f"  {name:<9} {statistics.median(values) / 1000:7.1f} k{spread}")
    if "sdk" in per_span and "pipeline" in per_span:
        ratio = statistics.median(per_span["pipeline"]) / statistics.median(per_span["sdk"])
        goal = statistics.median(per_span["pipeline"]) <= 75_000
        print(f"  pipeline / sdk: {ratio:.3f}; goal <= 75 k per span: "
              f"{'MET' if goal else 'NOT MET'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1100, help="spans in the small run")
    parser.add_argument("--large", type=int, default=3300, help="spans in the large run")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per pipeline")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--spans", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        _serve_sink()
        return 0
    if args.workload:
        _workload(args.workload, args.spans, args.endpoint)
        return 0
    return _measure(args)


if __name__ == "__main__":
    sys.exit(main())
