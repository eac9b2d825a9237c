"""Tail latency and garbage-collector pauses, with and without tracing.

    python bench/gc_pauses.py [--rounds 2] [--seconds 5] [--variants ...]

Each variant's API runs through ``bench/_gc_probe.py`` (uvicorn's command line, with
``gc.callbacks`` timing every collection; under ``opentelemetry-instrument`` for the
traced ones), so plain and traced processes are measured the same way. The load
generator drives ``/api/v1/predict/7203`` (9 spans per request with this distro,
about 100 requests a second: enough requests in a few seconds to see the rare full
collections) for a fixed time; before it the probe's pause log is reset (SIGUSR2), after it the
log is read (SIGUSR1). Rounds alternate the variants.

Variants: ``plain``, ``ours`` (which freezes the start-up heap once uvicorn has
started), ``upstream``, and settings tried against the pauses:

- ``ours-nofreeze``: ours with ``OTEL_PYTHON_CLSTOCK_GC_FREEZE=false``;
- ``*-freeze``: ``gc.collect()`` and ``gc.freeze()`` once the application is
  imported: the start-up objects (modules, classes, the SDK's providers...) leave the
  generations that full collections traverse; ``*-early-freeze``: the same right after
  ``opentelemetry-instrument``'s sitecustomize, before the application is imported;
  ``*-startup-freeze``: ``gc.freeze()`` alone when uvicorn's startup returns (what
  ours does);
- ``*-threshold``: ``gc.set_threshold(7000, 10, 10)`` (Python 3.11's is 700): ten
  times fewer young collections, each on more objects.

The table gives, per 1000 requests, the number of collections of each generation,
the collector's CPU time (the collecting thread's CPU clock: not inflated when the
machine is busy), the longest pause in wall time, and the requests' p50 and p99
latency (median over rounds, min-max in brackets).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Goal, fmt, goal_lines, machine
from _services import Sink, Stack, Variant

HERE = Path(__file__).resolve().parent
PATH = "/api/v1/predict/7203"
SETTINGS = {
    "-freeze": {"BENCH_GC_FREEZE": "1"},
    "-early-freeze": {"BENCH_GC_FREEZE": "early"},
    "-startup-freeze": {"BENCH_GC_FREEZE": "startup"},
    "-threshold": {"BENCH_GC_THRESHOLD": "7000,10,10"},
    "-nofreeze": {"OTEL_PYTHON_CLSTOCK_GC_FREEZE": "false"},
    "-freeze-threshold": {"BENCH_GC_FREEZE": "1", "BENCH_GC_THRESHOLD": "7000,10,10"},
}
DEFAULT_VARIANTS = ("plain", "ours-nofreeze", "ours", "upstream")


def make_variant(name: str, log_dir: Path) -> Variant:
    """``plain`` / ``ours`` / ``upstream``, optionally with a SETTINGS suffix."""
    base, env = name, {}
    for suffix in sorted(SETTINGS, key=len, reverse=True):
        if suffix and name.endswith(suffix):
            base, env = name[: -len(suffix)], SETTINGS[suffix]
            break
    return Variant(name, base, {**env, "BENCH_GC_LOG": str(log_dir / f"{name}.json")})


def _signal_and_read(pid: int, path: Path) -> dict:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # still being written
        time.sleep(0.02)
    raise RuntimeError(f"no GC log from {pid}")


def _load(url: str, seconds: float, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), url, "--concurrency", str(concurrency),
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(variants: list[str], rounds: int, seconds: float, concurrency: int) -> dict:
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as logs, Sink() as sink, \
            Stack([make_variant(name, Path(logs)) for name in variants], sink) as services:
        for round_no in range(rounds):
            for name in variants:
                pid, log = services.pid(name), Path(logs) / f"{name}.json"
                os.kill(pid, signal.SIGUSR2)
                load = _load(services.apis[name].url + PATH, seconds, concurrency)
                pauses = _signal_and_read(pid, log)
                results[name].append({"load": load, "gc": pauses})
                flat = [p for gen in pauses["cpu"].values() for p in gen]
                print(f"  round {round_no + 1} {name:<22} {load['rps']:6.1f} req/s  "
                      f"p99 {load['p99_ms']:7.1f} ms  {len(flat)} collections, "
                      f"{sum(flat) * 1000:6.1f} ms CPU, {len(pauses['cpu']['2'])} full",
                      file=sys.stderr)
    return results


def report(results: dict) -> str:
    lines = ["| variant | req/s | p50 ms | p99 ms | gen0 / 1000 req | gen1 / 1000 req "
             "| gen2 / 1000 req | GC CPU ms / 1000 req | gen2 CPU ms / 1000 req "
             "| longest pause ms (wall) |", "|---" * 10 + "|"]
    cpu_per_request: dict[str, float] = {}
    longest_pause: dict[str, float] = {}
    for name, runs in results.items():
        per_k = {gen: [] for gen in ("0", "1", "2")}
        total, full, longest, per_request = [], [], [], []
        for run in runs:
            requests = max(1, run["load"]["requests"])
            k = requests / 1000
            for gen in per_k:
                per_k[gen].append(len(run["gc"]["pauses"][gen]) / k)
            cpu = run["gc"]["cpu"]
            spent = sum(p for gen in cpu.values() for p in gen)
            total.append(spent * 1000 / k)
            full.append(sum(cpu["2"]) * 1000 / k)
            per_request.append(spent * 1e6 / requests)
            longest.append(max((p for gen in run["gc"]["pauses"].values() for p in gen),
                               default=0.0) * 1000)
        cpu_per_request[name] = statistics.median(per_request)
        longest_pause[name] = statistics.median(longest)
        lines.append(
            f"| {name} | {fmt([r['load']['rps'] for r in runs])} "
            f"| {fmt([r['load']['p50_ms'] for r in runs], 1)} "
            f"| {fmt([r['load']['p99_ms'] for r in runs], 1)} "
            + "".join(f"| {fmt(per_k[gen], 0)} " for gen in ("0", "1", "2"))
            + f"| {fmt(total, 1)} | {fmt(full, 1)} | {fmt(longest, 2)} |")
    lines.append("\nCollector CPU per request: " + ", ".join(
        f"{name} {value:.0f} µs" for name, value in cpu_per_request.items()) + ".")
    if "ours" in results and "ours-nofreeze" in results:
        # The pauses the spans cause, with the distro's remedy and without it.
        ours, nofreeze = "ours", "ours-nofreeze"
        goals = [
            Goal("ours: collector CPU per request below ours without gc.freeze()",
                 cpu_per_request[ours] < cpu_per_request[nofreeze],
                 f"{cpu_per_request[ours]:.0f} µs vs {cpu_per_request[nofreeze]:.0f} µs"),
            Goal("ours: longest pause below ours without gc.freeze()",
                 longest_pause[ours] < longest_pause[nofreeze],
                 f"{longest_pause[ours]:.1f} ms vs {longest_pause[nofreeze]:.1f} ms"),
        ]
        lines += ["", *goal_lines(goals)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    started = time.monotonic()
    results = run(variants, args.rounds, args.seconds, args.concurrency)
    print(report(results))
    print(f"\n({time.monotonic() - started:.0f} s; {args.rounds} rounds x {args.seconds} s of "
          f"{PATH}, concurrency {args.concurrency}; {machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
