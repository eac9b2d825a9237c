"""Start-up cost: plain, with this distro, and with upstream's, and what our imports cost.

    python bench/startup.py [--runs 7] [--importtime-runs 3]

Two measurements, each variant run N times interleaved (A B C A B C ...), median and
min-max of the wall time:

- ``python -c pass``: the interpreter alone, then under ``opentelemetry-instrument``
  (ours; upstream's distro and configurator with only upstream's instrumentations);
- ``uvicorn app.main:app`` until its first answered request (``GET /health``, polled
  every 2 ms from the moment the process is spawned), in wall time and in the CPU
  time the server used until then (the figure a loaded machine disturbs least).

``ours-nobootstrap`` is ours with the instrumentations ``opentelemetry-bootstrap``
adds for ClStock disabled, as if not installed: "ours" against it is what installing
them costs at start-up (issue 16's goal: within 10%).

Both traced variants export OTLP over HTTP/protobuf to a live receiver. Sources are
byte-compiled first, as an install does. Then
``python -X importtime`` under each distro gives the modules imported at start-up:
how many, and the biggest cumulative and self import times, with what only ours
imports (median of a few runs): where our start-up time goes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Goal, fmt, goal_lines, machine
from _services import Sink, variant_env

from clstock_otel_distro.tools.devstack import find_app_dir, free_port
from tests.support.upstream import upstream_distro_path

HERE = Path(__file__).resolve().parent
VARIANTS = ("plain", "ours", "upstream", "ours-nobootstrap")
# The instrumentations `opentelemetry-bootstrap -a install` adds for ClStock (entry point
# names), installed in the dev venv: "ours" loads them (or leaves them out, by its own
# policy); "ours-nobootstrap" disables them all, as if they were not installed.
BOOTSTRAP_ENTRY_POINTS = ("asyncio", "click", "exceptions", "grpc_aio_client",
                          "grpc_aio_server", "grpc_client", "grpc_server", "sqlite3",
                          "starlette", "tortoiseorm", "urllib", "urllib3")
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _environ(variant: str, sink: Sink, app_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCH_"))}
    env.pop("PYTHONPATH", None)
    extra = variant_env("ours" if variant == "ours-nobootstrap" else variant, sink)
    if variant == "ours-nobootstrap":
        extra["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = ",".join(BOOTSTRAP_ENTRY_POINTS)
    paths = [p for p in (extra.pop("PYTHONPATH", None), str(app_dir) if app_dir else None) if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _command(variant: str, *args: str) -> list[str]:
    python = [sys.executable, *args]
    return python if variant == "plain" else [_bin("opentelemetry-instrument"), *python]


def compile_sources(app_dir: Path) -> None:
    """Byte-compile the distro, ClStock and upstream's distro first, as an install does:
    a checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile our modules
    (not site-packages') at every start, a cost no installed deployment pays."""
    for path in (HERE.parent / "clstock_otel_distro", app_dir, upstream_distro_path()):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(path)], check=True,
                       stdout=subprocess.DEVNULL, timeout=300)


def time_pass(variant: str, sink: Sink) -> float:
    """Seconds for ``python -c pass`` (under opentelemetry-instrument when traced)."""
    started = time.perf_counter()
    subprocess.run(_command(variant, "-c", "pass"), env=_environ(variant, sink), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return time.perf_counter() - started


def time_uvicorn(variant: str, sink: Sink, app_dir: Path) -> tuple[float, float]:
    """Seconds from spawning ``uvicorn app.main:app`` to its first answered request, and
    the CPU seconds the server used until then (less sensitive to a loaded machine)."""
    port = free_port()
    command = _command(variant, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                       "--port", str(port), "--no-access-log")
    url = f"http://127.0.0.1:{port}/health"
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=app_dir, env=_environ(variant, sink, app_dir),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{variant}: uvicorn exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        wall = time.perf_counter() - started
                        process.kill()  # no shutdown work in the CPU figure
                        _, _, usage = os.wait4(process.pid, 0)
                        return wall, usage.ru_utime + usage.ru_stime
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"{variant}: no answer after 60 s")
            time.sleep(0.002)
    finally:
        if process.returncode is None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def importtime(variant: str, sink: Sink) -> dict[str, tuple[int, int, int]]:
    """``module -> (self µs, cumulative µs, depth)`` from ``-X importtime -c pass``."""
    result = subprocess.run(_command(variant, "-X", "importtime", "-c", "pass"),
                            env=_environ(variant, sink), capture_output=True, text=True,
                            check=True, timeout=120)
    modules: dict[str, tuple[int, int, int]] = {}
    for line in result.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            own, total, indent, name = match.groups()
            modules[name] = (int(own), int(total), len(indent) // 2)
    return modules


def _median_imports(runs: list[dict[str, tuple[int, int, int]]]) -> dict[str, tuple[int, int, int]]:
    names = set().union(*runs)
    merged = {}
    for name in names:
        values = [run[name] for run in runs if name in run]
        merged[name] = (int(statistics.median(v[0] for v in values)),
                        int(statistics.median(v[1] for v in values)), values[0][2])
    return merged


def _top(modules: dict[str, tuple[int, int, int]], key: int, count: int,
         only: set[str] | None = None) -> list[str]:
    chosen = [(name, data) for name, data in modules.items() if only is None or name in only]
    chosen.sort(key=lambda item: -item[1][key])
    return [f"| {name} | {data[0] / 1000:.1f} | {data[1] / 1000:.1f} |"
            for name, data in chosen[:count]]


def report(timings: dict[str, dict[str, list[float]]],
           imports: dict[str, dict[str, tuple[int, int, int]]], top: int) -> str:
    lines = ["| measurement | variant | seconds | vs plain | vs upstream |",
             "|---|---|---|---|---|"]
    goals: list[Goal] = []
    for measurement, by_variant in timings.items():
        for name in VARIANTS:
            runs = by_variant[name]
            vs_plain = [r / p for r, p in zip(runs, by_variant["plain"])]
            vs_upstream = [r / u for r, u in zip(runs, by_variant["upstream"])]
            lines.append(f"| {measurement} | {name} | {fmt(runs, 3)} | {fmt(vs_plain, 2)}x "
                         f"| {fmt(vs_upstream, 2)}x |")
        ours = statistics.median(by_variant["ours"])
        upstream = statistics.median(by_variant["upstream"])
        # "No slower": within the noise of upstream's own runs (its min-max).
        slack = max(by_variant["upstream"]) - upstream
        goals.append(Goal(f"{measurement}: start-up no slower than upstream's distro",
                          ours <= upstream + slack,
                          f"ours {ours:.3f} s vs upstream {upstream:.3f} s "
                          f"(upstream's own spread +{slack:.3f} s)"))
        without = statistics.median(by_variant["ours-nobootstrap"])
        goals.append(Goal(f"{measurement}: with bootstrap's instrumentations installed "
                          "within 10% of without (issue 16)", ours <= 1.10 * without,
                          f"ours {ours:.3f} s vs {without:.3f} s with them disabled "
                          f"({ours / without:.3f}x)"))
    ours, upstream = imports["ours"], imports["upstream"]
    lines += ["", f"Modules imported by `python -c pass`: plain {len(imports['plain'])}, "
              f"ours {len(ours)}, upstream {len(upstream)}; only ours: "
              f"{len(set(ours) - set(upstream))}, only upstream's: "
              f"{len(set(upstream) - set(ours))}."]
    heavy = [(name, name in upstream)
             for name in ("grpc", "clstock_otel_distro.tools.otlp_receiver", "google.protobuf",
                          "requests", "opentelemetry.semconv._incubating.attributes")
             if name in ours]
    lines.append("Heavy modules imported by ours at start-up: " + (", ".join(
        f"{name} ({'upstream too' if both else 'ours only'})" for name, both in heavy)
        or "none") + ("" if {"grpc", "clstock_otel_distro.tools.otlp_receiver"} & set(ours)
                      else "; neither grpc nor the dev receiver is imported") + ".")
    total = {name: sum(d[0] for d in mods.values()) / 1000 for name, mods in imports.items()}
    lines.append("Sum of self import times (ms): " + ", ".join(
        f"{name} {value:.0f}" for name, value in total.items()))
    only_ours = set(ours) - set(upstream)
    lines += ["", f"Ours: the {top} biggest cumulative imports (ms)", "", "| module | self | "
              "cumulative |", "|---|---|---|", *_top(ours, 1, top)]
    lines += ["", f"Ours: the {top} biggest self import times (ms)", "", "| module | self | "
              "cumulative |", "|---|---|---|", *_top(ours, 0, top)]
    lines += ["", f"Imported by ours only (not by upstream's distro): the {top} biggest, "
              "cumulative (ms)", "", "| module | self | cumulative |", "|---|---|---|",
              *_top(ours, 1, top, only_ours)]
    lines += ["", *goal_lines(goals)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--importtime-runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    started = time.monotonic()
    app_dir = find_app_dir(HERE.parent / "clstock")
    timings: dict[str, dict[str, list[float]]] = {
        "python -c pass": {v: [] for v in VARIANTS},
        "uvicorn to first answer": {v: [] for v in VARIANTS},
        "uvicorn to first answer, CPU": {v: [] for v in VARIANTS}}
    compile_sources(app_dir)
    with Sink() as sink:
        for variant in VARIANTS:  # warm the file cache
            time_pass(variant, sink)
        for number in range(args.runs):
            for variant in VARIANTS:
                timings["python -c pass"][variant].append(time_pass(variant, sink))
            for variant in VARIANTS:
                wall, cpu = time_uvicorn(variant, sink, app_dir)
                timings["uvicorn to first answer"][variant].append(wall)
                timings["uvicorn to first answer, CPU"][variant].append(cpu)
            print(f"  run {number + 1}/{args.runs} done", file=sys.stderr)
        imports = {variant: _median_imports([importtime(variant, sink)
                                             for _ in range(args.importtime_runs)])
                   for variant in ("plain", "ours", "upstream")}
    print(report(timings, imports, args.top))
    print(f"\n({time.monotonic() - started:.0f} s; {args.runs} interleaved runs; {machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
