"""Memory: resident set size of the API after start-up and after N requests.

    python bench/memory.py [--requests 3000] [--variants plain,ours,upstream]

Starts one API process per variant (``bench/_services.py``; caches warmed by one
request per endpoint), reads VmRSS from /proc/PID/status, then sends the same
requests to each (a mix of /api/v1/recommendations, /api/v1/predict/7203 and /health,
in that order, driven by the load generator at concurrency 4, every variant at once)
and reads VmRSS and VmHWM (the peak) again. What the distro costs is the difference
to plain: at start (modules, providers) and the growth while serving (queued spans,
metric streams; it should stop growing once the batch queue is exported).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine
from _services import stack

HERE = Path(__file__).resolve().parent
# (path, share of the requests)
MIX = (("/api/v1/recommendations?top_n=5", 0.1), ("/api/v1/predict/7203", 0.3),
       ("/health", 0.6))


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def drive(urls: list[str], requests: int) -> None:
    """Send ``requests`` requests, in the MIX proportions, to every URL at once."""
    for path, share in MIX:
        count = max(1, int(requests * share))
        loads = [subprocess.Popen(
            [sys.executable, str(HERE / "loadgen.py"), url + path, "--concurrency", "4",
             "--seconds", "600", "--max-requests", str(count)],
            stdout=subprocess.DEVNULL) for url in urls]
        for load in loads:
            load.wait(timeout=900)


def run(variants: list[str], requests: int, settle: float) -> dict[str, dict[str, int]]:
    with stack(variants) as (services, _sink):
        time.sleep(settle)
        before = {name: status_kb(services.pid(name)) for name in variants}
        drive([services.apis[name].url for name in variants], requests)
        time.sleep(settle)  # the batch processor exports what is queued
        after = {name: status_kb(services.pid(name)) for name in variants}
    return {name: {"start_rss": before[name]["VmRSS"], "rss": after[name]["VmRSS"],
                   "hwm": after[name]["VmHWM"]} for name in variants}


def report(data: dict[str, dict[str, int]], requests: int) -> str:
    plain = data["plain"]
    lines = [f"| variant | RSS after start MiB | RSS after {requests} requests MiB | peak (VmHWM) "
             "MiB | growth MiB | vs plain after start | vs plain after requests |",
             "|---|---|---|---|---|---|---|"]
    for name, values in data.items():
        lines.append(
            f"| {name} | {values['start_rss'] / 1024:.1f} | {values['rss'] / 1024:.1f} "
            f"| {values['hwm'] / 1024:.1f} | {(values['rss'] - values['start_rss']) / 1024:+.1f} "
            f"| {(values['start_rss'] - plain['start_rss']) / 1024:+.1f} "
            f"| {(values['rss'] - plain['rss']) / 1024:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--variants", default="plain,ours,upstream")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait before each reading (exports, timers)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if variants[0] != "plain":
        variants.insert(0, "plain")
    started = time.monotonic()
    print(report(run(variants, args.requests, args.settle), args.requests))
    print(f"\n({time.monotonic() - started:.0f} s; mix "
          + ", ".join(f"{int(share * 100)}% {path}" for path, share in MIX)
          + f"; {machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
