"""Per-request overhead: ClStock served plain, with this distro, and with upstream's.

    python bench/per_request.py [--rounds 4] [--seconds 3] [--concurrency 4]
                                [--variants plain,ours,upstream] [--endpoints ...]

API processes run side by side from the same checkout, fetching replayed market data
(caches warm); see ``bench/_services.py`` for the variants (``plain``, ``ours``,
``upstream``, and other settings, e.g. ``ours-sampled``: 10% of traces sampled).
Both traced variants export OTLP/HTTP to a live receiver.

Rounds alternate A B C A B C per endpoint; a load generator in a second process
drives each for a fixed time at fixed concurrency. The table gives throughput, p50
and p99 (median over rounds, min-max in brackets) and, per round, the ratio to plain
measured in that same round, plus two measures of what each distro adds per request:
the server process's CPU time per request (from /proc: every thread, the exporting
one included) minus plain's, and 1/throughput minus plain's (the server is one
saturated process on a machine shared with the load generator). At the end, ten
sequential requests per endpoint count the spans each variant exports per request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Goal, fmt, goal_lines, machine
from _services import Sink, Stack, cpu_seconds, stack

HERE = Path(__file__).resolve().parent
ENDPOINTS = {
    "recommendations": "/api/v1/recommendations?top_n=5",
    "predict": "/api/v1/predict/7203",
    "health": "/health",
}
DEFAULT_VARIANTS = ("plain", "ours", "upstream", "upstream-nosend", "ours-sampled")
# Longer than any variant's batch delay (upstream's is the SDK's 5 s).
EXPORT_WAIT = 5.5


def _load(url: str, seconds: float, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), url, "--concurrency", str(concurrency),
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(rounds: int, seconds: float, concurrency: int, variants: list[str],
        endpoints: list[str], span_count: bool = True) -> dict:
    results: dict[str, dict[str, list[dict]]] = {
        e: {v: [] for v in variants} for e in endpoints}
    with stack(variants) as (services, sink):
        for api in services.apis.values():  # warm code paths before measuring
            _load(api.url + ENDPOINTS["health"], 1.0, concurrency)
        for round_no in range(rounds):
            for endpoint in endpoints:
                for name in variants:
                    pid = services.pid(name)
                    cpu = cpu_seconds(pid)
                    result = _load(services.apis[name].url + ENDPOINTS[endpoint], seconds,
                                   concurrency)
                    result["cpu_us"] = (cpu_seconds(pid) - cpu) / max(1, result["requests"]) * 1e6
                    result["round"] = round_no
                    results[endpoint][name].append(result)
                    print(f"  round {round_no + 1} {endpoint:<16} {name:<16} "
                          f"{result['rps']:8.1f} req/s  p50 {result['p50_ms']:7.3f} ms  "
                          f"p99 {result['p99_ms']:7.3f} ms  cpu {result['cpu_us']:7.0f} µs  "
                          f"errors {result['errors']}", file=sys.stderr)
        spans = sink.spans
        per_request = count_spans(services, sink, variants, endpoints) if span_count else {}
    return {"results": results, "spans_received": spans, "spans_per_request": per_request}


def count_spans(services: Stack, sink: Sink, variants: list[str], endpoints: list[str],
                requests_each: int = 10) -> dict[str, dict[str, float]]:
    """Spans each variant exports per request of each endpoint (quiet, sequential)."""
    counts: dict[str, dict[str, float]] = {e: {} for e in endpoints}
    time.sleep(EXPORT_WAIT)  # what the timed runs queued has been exported
    before = {name: sink.spans_of(name) for name in variants}
    for endpoint in endpoints:
        for name in variants:
            for _ in range(requests_each):
                urllib.request.urlopen(services.apis[name].url + ENDPOINTS[endpoint],
                                       timeout=60).read()
        time.sleep(EXPORT_WAIT)
        after = {name: sink.spans_of(name) for name in variants}
        for name in variants:
            counts[endpoint][name] = (after[name] - before[name]) / requests_each
        before = after
    return counts


def report(data: dict) -> str:
    lines = ["| endpoint | variant | spans / request | req/s | p50 ms | p99 ms | req/s vs plain "
             "| p50 vs plain | p99 vs plain | CPU µs / request | CPU µs added "
             "| 1/req/s µs added |", "|---" * 12 + "|"]
    spans = data.get("spans_per_request", {})
    goals: list[Goal] = []
    added: dict[tuple[str, str], float] = {}
    for endpoint, by_variant in data["results"].items():
        plain = by_variant["plain"]
        for name, runs in by_variant.items():
            ratios = [(r["rps"] / p["rps"], r["p50_ms"] / p["p50_ms"], r["p99_ms"] / p["p99_ms"])
                      for r, p in zip(runs, plain)]
            cpu_added = [r["cpu_us"] - p["cpu_us"] for r, p in zip(runs, plain)]
            micros = [(1 / r["rps"] - 1 / p["rps"]) * 1e6 for r, p in zip(runs, plain)]
            added[endpoint, name] = statistics.median(cpu_added)
            count = spans.get(endpoint, {}).get(name)
            lines.append(
                f"| {endpoint} | {name} | {'-' if count is None else f'{count:g}'} "
                f"| {fmt([r['rps'] for r in runs])} "
                f"| {fmt([r['p50_ms'] for r in runs], 2)} "
                f"| {fmt([r['p99_ms'] for r in runs], 2)} "
                f"| {fmt([x[0] for x in ratios], 3)} | {fmt([x[1] for x in ratios], 3)} "
                f"| {fmt([x[2] for x in ratios], 3)} | {fmt([r['cpu_us'] for r in runs], 0)} "
                f"| {fmt(cpu_added, 0)} | {fmt(micros, 0)} |")
            if endpoint == "recommendations" and name.startswith("ours"):
                rps, p50, p99 = (statistics.median(x[i] for x in ratios) for i in range(3))
                goals.append(Goal(f"{name}: recommendations throughput within 2% of plain",
                                  rps >= 0.98, f"{rps:.3f}x"))
                goals.append(Goal(f"{name}: recommendations p50 within 2% of plain",
                                  p50 <= 1.02, f"{p50:.3f}x"))
                goals.append(Goal(f"{name}: recommendations p99 within 1.5x of plain",
                                  p99 <= 1.5, f"{p99:.3f}x"))
                # What the throughput and p50 of a saturated CPU-bound server follow.
                cpu = statistics.median(r["cpu_us"] / p["cpu_us"] for r, p in zip(runs, plain))
                goals.append(Goal(f"{name}: recommendations CPU per request within 2% of plain",
                                  cpu <= 1.02, f"{cpu:.3f}x"))
    upstream = added.get(("health", "upstream"))
    for (endpoint, name), micros in added.items():
        if endpoint == "health" and name.startswith("ours") and upstream is not None:
            goals.append(Goal(f"{name}: /health CPU µs added <= half of upstream's",
                              micros <= upstream / 2, f"{micros:.0f} µs vs {upstream:.0f} µs"))
    lines.append("")
    lines += goal_lines(goals)
    lines.append(f"\nspans received by the live receiver during the run: {data['spans_received']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated; plain first (the reference)")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS))
    parser.add_argument("--no-span-count", action="store_true",
                        help="skip counting the spans per request (saves ~5 s per endpoint)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if variants[0] != "plain":
        variants.insert(0, "plain")
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    started = time.monotonic()
    data = run(args.rounds, args.seconds, args.concurrency, variants, endpoints,
               not args.no_span_count)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    print(report(data))
    print(f"\n({time.monotonic() - started:.0f} s; {args.rounds} rounds x {args.seconds} s, "
          f"concurrency {args.concurrency}; {machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
