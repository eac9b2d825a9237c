"""Per-request overhead: ClStock served plain, with this distro, and with upstream's.

    python bench/per_request.py [--rounds 3] [--seconds 3] [--concurrency 4]

Three API processes run side by side from the same checkout, fetching replayed market
data (caches warm):

- plain     ``uvicorn app.main:app``
- ours      ``opentelemetry-instrument uvicorn app.main:app`` with this distro,
            exporting OTLP/HTTP to a live receiver
- upstream  the same launch line with the upstream opentelemetry-distro and
            configurator selected, the same exporter, and only the upstream
            FastAPI/requests/threading/logging instrumentations (ours disabled)

Rounds alternate A B C A B C per endpoint; a load generator in a second process
drives each for a fixed time at fixed concurrency. The table gives throughput, p50
and p99 (median over rounds, min-max in brackets) and, per round, the ratio to plain
measured in that same round, plus the CPU microseconds each distro adds per request
(1/throughput difference: the server is one saturated process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from clstock_otel_distro.devstack import ServiceProcess, find_app_dir, upstream_distro_path
from clstock_otel_distro.otlp_receiver import OTLPReceiver

HERE = Path(__file__).resolve().parent
ENDPOINTS = {
    "recommendations": "/api/v1/recommendations?top_n=5",
    "predict": "/api/v1/predict/7203",
    "health": "/health",
}
OUR_INSTRUMENTORS = "clstock_predictor,clstock_data_provider,yfinance,curl_cffi,clstock_methods"
VARIANTS = ("plain", "ours", "upstream")


def _variant_env(variant: str, receiver: OTLPReceiver) -> dict[str, str]:
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": f"bench-{variant}"}
    if variant == "ours":
        return otlp
    if variant == "upstream":
        return {**otlp, "PYTHONPATH": str(upstream_distro_path()),
                "OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator",
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": OUR_INSTRUMENTORS}
    return {}


def _load(url: str, seconds: float, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), url, "--concurrency", str(concurrency),
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _fmt(values: list[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}]")


def run(rounds: int, seconds: float, concurrency: int) -> dict:
    app_dir = find_app_dir()
    results: dict[str, dict[str, list[dict]]] = {e: {v: [] for v in VARIANTS} for e in ENDPOINTS}
    services: list[ServiceProcess] = []
    with OTLPReceiver(retain=False) as receiver:
        try:
            replay = ServiceProcess("replay", "app.market_replay:app", app_dir,
                                    instrumented=False).start()
            services.append(replay)
            apis = {}
            for variant in VARIANTS:
                env = {**_variant_env(variant, receiver), "CLSTOCK_YAHOO_URL": replay.url}
                apis[variant] = ServiceProcess(f"api-{variant}", "app.main:app", app_dir,
                                               instrumented=variant != "plain", env=env).start()
                services.append(apis[variant])
            for api in apis.values():  # warm caches and code paths before measuring
                for path in ENDPOINTS.values():
                    requests.get(api.url + path, timeout=60).raise_for_status()
                _load(api.url + ENDPOINTS["health"], 1.0, concurrency)
            for round_no in range(rounds):
                for endpoint, path in ENDPOINTS.items():
                    for variant in VARIANTS:
                        result = _load(apis[variant].url + path, seconds, concurrency)
                        result["round"] = round_no
                        results[endpoint][variant].append(result)
                        print(f"  round {round_no + 1} {endpoint:<16} {variant:<9} "
                              f"{result['rps']:8.1f} req/s  p50 {result['p50_ms']:7.3f} ms  "
                              f"p99 {result['p99_ms']:7.3f} ms  errors {result['errors']}",
                              file=sys.stderr)
        finally:
            for service in reversed(services):
                service.stop()
        received = receiver.stats()["http"].spans
    return {"results": results, "spans_received": received}


def report(data: dict) -> str:
    lines = ["| endpoint | variant | req/s | p50 ms | p99 ms | req/s vs plain | p50 vs plain "
             "| p99 vs plain | µs added / request |", "|---" * 9 + "|"]
    goals: list[tuple[str, bool, str]] = []
    added: dict[tuple[str, str], float] = {}
    for endpoint, by_variant in data["results"].items():
        plain = by_variant["plain"]
        for variant in VARIANTS:
            runs = by_variant[variant]
            ratios = [(r["rps"] / p["rps"], r["p50_ms"] / p["p50_ms"], r["p99_ms"] / p["p99_ms"])
                      for r, p in zip(runs, plain)]
            micros = [(1 / r["rps"] - 1 / p["rps"]) * 1e6 for r, p in zip(runs, plain)]
            added[endpoint, variant] = statistics.median(micros)
            lines.append(
                f"| {endpoint} | {variant} | {_fmt([r['rps'] for r in runs])} "
                f"| {_fmt([r['p50_ms'] for r in runs], 3)} "
                f"| {_fmt([r['p99_ms'] for r in runs], 3)} "
                f"| {_fmt([x[0] for x in ratios], 3)} | {_fmt([x[1] for x in ratios], 3)} "
                f"| {_fmt([x[2] for x in ratios], 3)} | {_fmt(micros, 0)} |")
            if endpoint == "recommendations" and variant == "ours":
                rps, p50, p99 = (statistics.median(x[i] for x in ratios) for i in range(3))
                goals.append(("recommendations throughput within 2% of plain", rps >= 0.98,
                              f"{rps:.3f}x"))
                goals.append(("recommendations p50 within 2% of plain", p50 <= 1.02,
                              f"{p50:.3f}x"))
                goals.append(("recommendations p99 within 1.5x of plain", p99 <= 1.5,
                              f"{p99:.3f}x"))
    ours, upstream = added["health", "ours"], added["health", "upstream"]
    goals.append(("/health: µs we add <= half of upstream's", ours <= upstream / 2,
                  f"{ours:.0f} µs vs {upstream:.0f} µs"))
    lines.append("")
    lines += [f"- {'MET    ' if ok else 'NOT MET'} {name}: {detail}" for name, ok, detail in goals]
    lines.append(f"\nspans received by the live receiver during the run: {data['spans_received']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    data = run(args.rounds, args.seconds, args.concurrency)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    print(report(data))
    print(f"\n({time.monotonic() - started:.0f} s; {args.rounds} rounds x {args.seconds} s, "
          f"concurrency {args.concurrency})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
