"""The HTML report of a large span file: build time, page size, Chromium load time.

    python bench/html_report.py [--spans 100000] [--spans-per-trace 10] [--runs 3]

Generates an OTLP JSON lines file of ``--spans`` spans in traces shaped like the
demo's (an API request calling the data service, which calls the market replay; one
trace in 50 failing with an exception and its stack), then times what
``clstock-otel report FILE --html OUT`` does: reading the file, computing the report
and writing the page (each of ``--runs`` runs; median [min-max]). Then Chromium
(Debian's ``chromium``, headless) loads the page ``--runs`` times: the load time is
the page's own ``performance.now()`` when its script has drawn everything (from the
start of navigation: parsing the HTML and the embedded JSON included), read from the
dumped DOM; the process's wall time, start-up included, is printed beside it.

Goals (issue 15): build < 20 s, page < 20 MB, Chromium load < 5 s, each printed as
MET or NOT MET. Everything is written to a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Goal, fmt, goal_lines, machine

from clstock_otel_distro.tools.html_report import write_html_report
from clstock_otel_distro.tools.report import build_report
from clstock_otel_distro.tools.spanfile import read_spans

BUILD_GOAL_S = 20.0
SIZE_GOAL_MB = 20.0
LOAD_GOAL_S = 5.0
BASE_NS = 1_760_000_000_000_000_000
SYMBOLS = ("7203", "6758", "9984", "8306", "6861", "9432", "4063", "6098", "8035", "4502")
ROUTES = ("/api/v1/predict/{symbol}", "/api/v1/stock/{symbol}/data", "/api/v1/recommendations")
STACK = "".join(
    f'  File "/srv/clstock/{module}.py", line {n}, in {function}\n    {code}\n'
    for module, n, function, code in (
        ("models/predictor", 137, "predict", "score = self.calculate_score(symbol)"),
        ("models/predictor", 225, "calculate_score", "data = self.provider.get_stock_data(s)"),
        ("data/stock_data", 148, "_fetch_from_data_service", "payload = self._get_json(url)"),
        ("utils/network_manager", 77, "_decode", "raise NetworkError(url, reason, status)"),
    )
)


def _value(item: Any) -> dict[str, Any]:
    if isinstance(item, str):
        return {"stringValue": item}
    if isinstance(item, bool):
        return {"boolValue": item}
    if isinstance(item, int):
        return {"intValue": str(item)}
    return {"doubleValue": item}


def _span(trace_id: str, span_id: int, parent: int | None, name: str, kind: int, start: int,
          duration: int, attributes: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    span: dict[str, Any] = {"traceId": trace_id, "spanId": f"{span_id:016x}", "name": name,
                            "kind": kind, "startTimeUnixNano": str(start),
                            "endTimeUnixNano": str(start + duration),
                            "attributes": [{"key": k, "value": _value(v)}
                                           for k, v in attributes.items()],
                            "status": {}}
    if parent is not None:
        span["parentSpanId"] = f"{parent:016x}"
    if error:
        span["status"] = {"code": 2, "message": error}
        span["events"] = [{"timeUnixNano": str(start + duration // 2), "name": "exception",
                           "attributes": [
                               {"key": "exception.type", "value": _value("DataFetchError")},
                               {"key": "exception.message", "value": _value(error)},
                               {"key": "exception.stacktrace", "value": _value(
                                   "Traceback (most recent call last):\n" + STACK
                                   + f"DataFetchError: {error}")}]}]
    return span


def _trace(number: int, size: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """(service, span) pairs of one trace of ``size`` spans (at least 4)."""
    trace_id = f"{number:032x}"
    ids = iter(range(number * 1000 + 1, number * 1000 + 1000))
    start = BASE_NS + number * 20_000_000  # 50 traces a second
    total = int(rng.lognormvariate(17, 0.8))  # ~25 ms median, a long tail
    failed = number % 50 == 0
    symbol = SYMBOLS[number % len(SYMBOLS)]
    route = ROUTES[number % len(ROUTES)]
    error = f"Market data unavailable for {symbol}" if failed else None
    root, predict, client, server = (next(ids) for _ in range(4))
    spans = [
        ("clstock-api", _span(trace_id, root, None, f"GET {route}", 2, start, total, {
            "http.request.method": "GET", "http.route": route, "url.path": route,
            "http.response.status_code": 502 if failed else 200, "client.address": "10.0.0.7",
            "user_agent.original": "python-requests/2.32.3"}, error)),
        ("clstock-api", _span(trace_id, predict, root, "StockPredictor.predict", 1,
                              start + 100_000, total - 200_000, {
                                  "clstock.symbol": symbol,
                                  "code.function.name": "models.predictor.StockPredictor.predict",
                                  "code.file.path": "/srv/clstock/models/predictor.py",
                                  "code.line.number": 134}, error)),
        ("clstock-api", _span(trace_id, client, predict, "GET", 3, start + 200_000,
                              total - 400_000, {"http.request.method": "GET",
                                                "url.full": f"http://data:8001/prices/{symbol}",
                                                "server.address": "data"}, error)),
        ("clstock-data-service", _span(trace_id, server, client, "GET /prices/{symbol}", 2,
                                       start + 300_000, total - 600_000,
                                       {"http.route": "/prices/{symbol}"}, error)),
    ]
    # The rest: the data service's yfinance calls to the replay, in turn.
    step = max((total - 800_000) // max(size - 4, 1), 1000)
    at = start + 400_000
    while len(spans) < size:
        fetch = next(ids)
        spans.append(("clstock-data-service", _span(trace_id, fetch, server, "yfinance history",
                                                    1, at, step, {"yfinance.ticker": f"{symbol}.T",
                                                                  "yfinance.period": "1y"})))
        if len(spans) < size:
            spans.append(("clstock-market-replay", _span(
                trace_id, next(ids), fetch, "GET /v8/finance/chart/{symbol}", 2, at + step // 4,
                step // 2, {"http.route": "/v8/finance/chart/{symbol}"})))
        at += step
    return spans


def generate(path: Path, spans: int, per_trace: int, seed: int = 15) -> int:
    """Write ``spans`` spans as OTLP JSON lines, one line per trace; returns the traces."""
    rng = random.Random(seed)
    traces = 0
    with open(path, "w", encoding="utf-8") as out:
        written = 0
        while written < spans:
            size = min(per_trace, spans - written)
            by_service: dict[str, list[dict[str, Any]]] = {}
            for service, span in _trace(traces + 1, max(size, 4), rng)[:size]:
                by_service.setdefault(service, []).append(span)
            out.write(json.dumps({"resourceSpans": [
                {"resource": {"attributes": [{"key": "service.name", "value": _value(s)}]},
                 "scopeSpans": [{"scope": {"name": "bench"}, "spans": group}]}
                for s, group in by_service.items()]}, separators=(",", ":")) + "\n")
            written += size
            traces += 1
    return traces


def build(source: Path, page: Path) -> dict[str, float]:
    """What `clstock-otel report SOURCE --html PAGE` does, timed by stage (seconds)."""
    started = time.perf_counter()
    spans, _ = read_spans(source)
    read = time.perf_counter()
    report = build_report(spans)
    computed = time.perf_counter()
    write_html_report(spans, page, report=report, source=str(source))
    written = time.perf_counter()
    return {"read": read - started, "report": computed - read, "page": written - computed,
            "total": written - started}


def chromium_load(
    binary: str, page: Path, profile: Path, fragment: str = ""
) -> tuple[float, float]:
    """(the page's own load-and-draw time, the process's wall time), in seconds."""
    command = [binary, "--headless", "--disable-gpu", "--disable-quic",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--dump-dom", page.as_uri() + fragment]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    match = re.search(r'data-rendered-ms="(\d+)"', result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"chromium did not draw the page: {result.stderr[-500:]}")
    return int(match.group(1)) / 1000, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}.", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="clstock-bench-html-") as tmp:
        work = Path(tmp)
        source, page = work / "spans.jsonl", work / "report.html"
        traces = generate(source, args.spans, args.spans_per_trace)
        file_mb = source.stat().st_size / 1e6
        runs = []
        for run in range(args.runs):
            runs.append(build(source, page))
            print(f"  build {run + 1}: {runs[-1]['total']:.2f} s", file=sys.stderr, flush=True)
        size_mb = page.stat().st_size / 1e6
        first_trace = re.search(r'"traces":\[\{"id":"([0-9a-f]+)"', page.read_text())
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        loads: list[tuple[float, float]] = []
        opened: list[tuple[float, float]] = []
        if binary is not None:
            for _ in range(args.runs):
                loads.append(chromium_load(binary, page, work / "profile"))
                if first_trace:
                    opened.append(chromium_load(binary, page, work / "profile",
                                                f"#trace={first_trace.group(1)}"))

    total = [r["total"] for r in runs]
    print(f"{args.spans} spans in {traces} traces ({args.spans_per_trace} spans each, 3 "
          f"services), file {file_mb:.1f} MB; {args.runs} runs, median [min-max]\n")
    print("| stage | seconds |\n|---|---|")
    for stage in ("read", "report", "page", "total"):
        print(f"| {stage} | {fmt([r[stage] for r in runs], 2)} |")
    print(f"\npage: {size_mb:.2f} MB")
    goals = [
        Goal(f"build < {BUILD_GOAL_S:g} s", max(total) < BUILD_GOAL_S, f"{fmt(total, 2)} s"),
        Goal(f"page < {SIZE_GOAL_MB:g} MB", size_mb < SIZE_GOAL_MB, f"{size_mb:.2f} MB"),
    ]
    if loads:
        drawn = [d for d, _ in loads]
        print(f"Chromium: drawn {fmt(drawn, 2)} s after navigation start (process wall time, "
              f"start-up included: {fmt([w for _, w in loads], 2)} s)")
        if opened:
            print(f"Chromium, a trace opened from the address (#trace=...): drawn "
                  f"{fmt([d for d, _ in opened], 2)} s")
        goals.append(Goal(f"Chromium load < {LOAD_GOAL_S:g} s", max(drawn) < LOAD_GOAL_S,
                          f"{fmt(drawn, 2)} s"))
    else:
        print("Chromium: not measured (install Debian's chromium)")
        goals.append(Goal(f"Chromium load < {LOAD_GOAL_S:g} s", False,
                          "not measured: chromium is not installed"))
    print("\nGoals:")
    print("\n".join(goal_lines(goals)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
