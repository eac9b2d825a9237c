"""Where a served request's time goes: py-spy on the API process under load.

    python bench/profile_server.py [--variant ours] [--endpoint health] [--seconds 8]

Starts the stack (``bench/_services.py``) for the variant, drives the endpoint with
the load generator, and samples the API process with py-spy (every thread, idle
frames left out). Prints the functions with the most samples, self and inclusive,
and the share of samples under each telemetry package: where the distro's cost per
request comes from. ``--raw FILE`` keeps py-spy's collapsed stacks (flamegraph.pl /
speedscope input). Needs ``py-spy`` (``pip install py-spy``; not a dependency of the
distro) and permission to trace the process (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _services import OTHER_VARIANTS, VARIANTS, stack

HERE = Path(__file__).resolve().parent
ENDPOINTS = {
    "recommendations": "/api/v1/recommendations?top_n=5",
    "predict": "/api/v1/predict/7203",
    "health": "/health",
}
# A sample is charged to the innermost frame that is not the standard library
# (threading, contextvars, json... are charged to their caller), bucketed by the
# first of these found in its file path: which part of the telemetry costs what.
BUCKETS = (
    ("clstock_otel_distro", "clstock_otel_distro"),
    ("opentelemetry/instrumentation/asgi", "instrumentation-asgi"),
    ("opentelemetry/instrumentation/fastapi", "instrumentation-fastapi"),
    ("opentelemetry/instrumentation/logging", "instrumentation-logging"),
    ("opentelemetry/instrumentation/threading", "instrumentation-threading"),
    ("opentelemetry/instrumentation", "instrumentation (other)"),
    ("opentelemetry/sdk/trace/export", "sdk trace export (BSP)"),
    ("opentelemetry/sdk/_shared_internal", "sdk batch processor (queue, worker)"),
    ("opentelemetry/sdk/trace", "sdk trace"),
    ("opentelemetry/sdk/metrics", "sdk metrics"),
    ("opentelemetry/exporter", "exporters (OTLP encode, HTTP)"),
    ("opentelemetry/util/http", "util-http"),
    ("opentelemetry/semconv", "semconv"),
    ("opentelemetry", "opentelemetry api/other"),
    ("wrapt", "wrapt"),
)


def _py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is needed: pip install py-spy")
    return found


# Frames where a thread waits rather than works: left out of the shares.
IDLE = ("Condition.wait", "EpollSelector.select", "Event.wait", "Thread._wait_for_tstate_lock",
        "_worker (concurrent", "Queue.get", "selector.poll")
_LINE = re.compile(r":\d+\)$")


def _frames(stack: str) -> list[str]:
    """The frames of one collapsed stack, line numbers dropped, thread labels skipped."""
    return [_LINE.sub(")", frame) for frame in stack.split(";")
            if not frame.startswith(("thread (", "process "))]


_STDLIB = sysconfig.get_paths()["stdlib"]


def _charged(frames: list[str]) -> str:
    """The bucket a sample is charged to (see BUCKETS)."""
    for frame in reversed(frames):
        if _STDLIB in frame and "site-packages" not in frame:
            continue
        return _bucket(frame) or "application / server (no telemetry)"
    return "standard library only"


def _bucket(frame: str) -> str | None:
    for needle, name in BUCKETS:
        if needle in frame:
            return name
    return None


def summarize(raw: str, top: int) -> str:
    """Tables of self and inclusive samples per function, and telemetry buckets."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if not frames or frames[-1].startswith(IDLE):
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        buckets[_charged(frames)] += count
    if not total:
        return "no samples"
    untraced = buckets["application / server (no telemetry)"] + buckets["standard library only"]
    lines = [f"{total} samples (idle waits left out); telemetry's share: "
             f"{100 * (total - untraced) / total:.1f}%", "",
             "| share | charged to (innermost non-stdlib frame) |", "|---|---|"]
    lines += [f"| {100 * n / total:5.1f}% | {name} |" for name, n in buckets.most_common()]
    lines += ["", "| self | function |", "|---|---|"]
    lines += [f"| {100 * n / total:5.1f}% | {frame} |"
              for frame, n in self_counts.most_common(top)]
    telemetry = [(frame, n) for frame, n in inclusive.most_common()
                 if _bucket(frame) is not None][:top]
    lines += ["", "| inclusive | telemetry function |", "|---|---|"]
    lines += [f"| {100 * n / total:5.1f}% | {frame} |" for frame, n in telemetry]
    return "\n".join(lines)


def profile(variant: str, endpoint: str, seconds: float, rate: int, concurrency: int) -> str:
    with stack([variant]) as (services, _sink):
        api = services.apis[variant]
        url = api.url + ENDPOINTS[endpoint]
        load = subprocess.Popen(
            [sys.executable, str(HERE / "loadgen.py"), url, "--concurrency", str(concurrency),
             "--seconds", str(seconds + 2)], stdout=subprocess.PIPE, text=True)
        with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
            subprocess.run(
                [_py_spy(), "record", "--pid", str(services.pid(variant)), "--duration",
                 str(int(seconds)), "--rate", str(rate), "--format", "raw", "--output",
                 out.name, "--nonblocking", "--full-filenames", "--gil"],
                check=True, capture_output=True, timeout=seconds + 60)
            raw = Path(out.name).read_text()
        print(load.communicate(timeout=60)[0].strip(), file=sys.stderr)
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=[*VARIANTS, *OTHER_VARIANTS], default="ours")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="health")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="also write py-spy's collapsed stacks here")
    args = parser.parse_args(argv)
    raw = profile(args.variant, args.endpoint, args.seconds, args.rate, args.concurrency)
    if args.raw:
        args.raw.write_text(raw)
    print(f"## {args.variant} on /{args.endpoint}\n")
    print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
