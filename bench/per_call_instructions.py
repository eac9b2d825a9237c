"""Instructions per traced call of a real ClStock method, counted by callgrind, and split.

    python bench/per_call_instructions.py [--repeats 1] [--calls 512,1536] [--json FILE]
                                          [--env VARIABLE=VALUE ...] [--report FILE]

``bench/_call_worker.py`` runs under ``opentelemetry-instrument`` (this distro, every
trace sampled, OTLP/HTTP to the benchmark's ``Sink``, metrics on: the distro's
defaults) and valgrind's callgrind, and calls ClStock's real, instrumented
``MomentumPredictor.calculate_score`` under a sampled parent span (its data access
replaced by a precomputed features dict: see the worker). Per mode and repeat, two
windows of N1 and N2 calls (512 and 1536: one and three full export batches of 512
spans, so the difference holds two whole batches, their encoding and sending), each
started after a full collection and ended by the tracer provider's ``force_flush()``;
instructions per call = (window N2 - window N1) / (N2 - N1), as in
``bench/instructions.py`` (same counting helpers, ``bench/_callgrind.py``).

The split (each a difference of two modes, see the worker):

- all-in            traced - bare
- export            traced - noexport: the processor's enqueue, the OTLP encoding and
                    the HTTP send of the span
- metric record     traced - nometric: the duration's ``Histogram.record`` (the SDK's)
- span start/end    span: ``start_span`` with the call's attributes, one
                    ``set_attributes``, ``end`` (no processor)
- wrapper+machinery the rest: all-in - export - metric record - span start/end

Needs valgrind (Debian package ``valgrind``). Results go in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _callgrind import (
    Counter,
    Figure,
    LineWorker,
    Window,
    per_unit,
    spread_line,
    valgrind_command,
)
from _common import machine
from _services import Sink, variant_env

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_call_worker.py"
MODES = ("bare", "traced", "noexport", "nometric", "span")
CALLS = (512, 1536)
SERVICE = "call-ours"  # the worker's service name (bench-call-ours)
HOUR_MS = "3600000"
# Timers out of the windows: spans leave in full batches of 512 and at each flush;
# metrics are collected once an hour (never inside a window).
COUNTING_ENV = {"OTEL_BSP_SCHEDULE_DELAY": HOUR_MS, "OTEL_BLRP_SCHEDULE_DELAY": HOUR_MS,
                "OTEL_METRIC_EXPORT_INTERVAL": HOUR_MS, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"}
START_TIMEOUT = 300.0
ACK_TIMEOUT = 600.0


def worker_env(sink: Sink, extra_env: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: this distro's defaults, exporting to ``sink``."""
    return {**os.environ, **COUNTING_ENV, "PYTHONHASHSEED": "0",
            **variant_env("ours", sink, SERVICE), **extra_env}


def worker_command(out_dir: Path | None) -> list[str]:
    """opentelemetry-instrument [valgrind ... (when ``out_dir``)] python _call_worker.py."""
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    counted = valgrind_command(out_dir) if out_dir is not None else []
    return [str(instrument), *counted, sys.executable, str(WORKER)]


class CallWorker(LineWorker):
    """``bench/_call_worker.py`` under opentelemetry-instrument and callgrind, line by line."""

    name = "call worker"

    def __init__(self, sink: Sink, out_dir: Path, extra_env: Mapping[str, str]) -> None:
        super().__init__(worker_command(out_dir), worker_env(sink, extra_env), out_dir, HERE,
                         START_TIMEOUT, ACK_TIMEOUT)


def measure(calls: tuple[int, int], repeats: int, extra_env: Mapping[str, str],
            keep_dumps: Path | None = None) -> dict[str, Any]:
    """``{mode: [[n1, ir1, n2, ir2], ...]}``, one row per repeat (each window's callgrind
    dump kept in ``keep_dumps`` as MODE-N-rR.callgrind when given)."""
    results: dict[str, list[list[int]]] = {mode: [] for mode in MODES}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-per-call-") as tmp, Sink() as sink:
        out_dir = Path(tmp)
        worker = CallWorker(sink, out_dir, extra_env)
        try:
            counter = Counter(worker.process.pid, out_dir)
            low, high = calls
            for repeat in range(repeats):
                for mode in MODES:
                    windows: dict[int, Window] = {}
                    for count in (low, high) if repeat % 2 == 0 else (high, low):
                        worker.send("settle", "settled")
                        counter.start()
                        worker.send(f"run {mode} {count}", "done")
                        kept = (keep_dumps / f"{mode}-{count}-r{repeat + 1}.callgrind"
                                if keep_dumps is not None else None)
                        windows[count] = Window(count, counter.stop(keep_as=kept))
                    results[mode].append([low, windows[low].instructions,
                                          high, windows[high].instructions])
                    print(f"  {mode} repeat {repeat + 1}: "
                          f"{per_unit(windows[low], windows[high]) / 1e3:.1f} k instructions "
                          f"per call ({time.monotonic() - started:.0f} s)",
                          file=sys.stderr, flush=True)
        finally:
            worker.close()
        spans = sink.spans_of(SERVICE)
    return {"calls": list(calls), "repeats": repeats, "modes": results, "spans": spans}


def _figure(name: str, rows: Sequence[Sequence[int]]) -> Figure:
    return Figure(name, [per_unit(Window(n1, ir1), Window(n2, ir2)) for n1, ir1, n2, ir2 in rows])


def split(modes: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, Figure]:
    """The parts of a traced call, repeat by repeat, from the modes' windows."""
    per_mode = {mode: _figure(mode, rows) for mode, rows in modes.items()}

    def combine(name: str, signs: Mapping[str, int]) -> Figure:
        count = len(per_mode["traced"].values)
        return Figure(name, [sum(sign * per_mode[mode].values[i] for mode, sign in signs.items())
                             for i in range(count)])

    parts = {
        "all-in": combine("all-in", {"traced": 1, "bare": -1}),
        "export": combine("export", {"traced": 1, "noexport": -1}),
        "metric record": combine("metric record", {"traced": 1, "nometric": -1}),
        "span start/end": combine("span start/end", {"span": 1, "bare": -1}),
    }
    parts["wrapper+machinery"] = Figure("wrapper+machinery", [
        all_in - export - metric - span for all_in, export, metric, span in zip(
            parts["all-in"].values, parts["export"].values, parts["metric record"].values,
            parts["span start/end"].values)])
    return {**{f"mode {mode}": figure for mode, figure in per_mode.items()}, **parts}


def report(data: Mapping[str, Any]) -> str:
    figures = split(data["modes"])
    lines = ["| part | instructions / call |", "|---|---|"]
    order = ("all-in", "wrapper+machinery", "span start/end", "export", "metric record")
    for name in order:
        lines.append(f"| {name} | {figures[name].thousands()} |")
    lines += ["", "| mode | instructions / call |", "|---|---|"]
    for mode in MODES:
        lines.append(f"| {mode} | {figures[f'mode {mode}'].thousands()} |")
    lines += ["", spread_line([figures[f"mode {mode}"] for mode in MODES])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--calls", default=",".join(map(str, CALLS)),
                        help="calls in the two windows (default %(default)s)")
    parser.add_argument("--env", action="append", default=[], metavar="VARIABLE=VALUE",
                        help="an extra variable for the worker (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the raw counts here")
    parser.add_argument("--keep-dumps", type=Path, metavar="DIR",
                        help="keep each window's callgrind dump here (callgrind_annotate)")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="print the report of a --json file instead of measuring")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    low, high = (int(n) for n in args.calls.split(","))
    extra = dict(setting.split("=", 1) for setting in args.env)
    started = time.monotonic()
    data = measure((low, high), args.repeats, extra, args.keep_dumps)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    print(report(data))
    print(f"\n({time.monotonic() - started:.0f} s; {args.repeats} repeats; calls per window "
          f"{low}/{high}; {data['spans']} spans received; {machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
