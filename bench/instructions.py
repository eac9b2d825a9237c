"""Instructions per request and per span, counted by callgrind: the judge of the overhead goals.

    python bench/instructions.py [--repeats 2] [--variants plain,ours,upstream,ours-off]
                                 [--endpoints recommendations,predict,health]
                                 [--env NAME:VARIABLE=VALUE ...] [--quick] [--json FILE]

Per request. ClStock's API is served by uvicorn under valgrind's callgrind, one
variant at a time (``plain``, ``ours``, ``upstream``: see ``bench/_services.py``;
``ours-off`` is ours with ``OTEL_TRACES_SAMPLER=always_off``, on /recommendations
only; ``ours-sdk`` is ours with ``OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE=sdk``; ``--env``
adds variables to a variant, or defines a new ``ours-*`` / ``upstream-*`` one). The
market replay and the OTLP receiver (``Sink``, in this process) run outside valgrind:
only the API process is counted. After start-up (uninstrumented: nothing counted)
each endpoint gets 5 warm-up requests (caches warm, and kept warm:
``CLSTOCK_CACHE_TTL`` is a day, as a variant's windows can outlast the default 5
minutes under valgrind), then, per repeat and endpoint, two windows of sequential
requests on one keep-alive connection, N1 and N2 of them (10 and 30 by default; 50
and 150 for /health, whose requests are small), in alternating order. Instructions
per request = (window N2 - window N1) / (N2 - N1).

What makes the difference attribute all of a request's cost, export included, to it:

- counting is switched on only around a window (``callgrind_control -i on`` ... dump,
  ``-i off``; the process starts with ``--instr-atstart=no``);
- every window starts in the same state: a full collection first (SIGUSR2 to the
  launcher, ``bench/_counted_server.py``), uncounted, and the exporters' queues empty;
- every window ends with the tracer, meter and logger providers flushed (SIGUSR1; the
  launcher acknowledges once ``force_flush()`` has returned, i.e. once the receiver
  has answered): every span of the window is encoded and sent inside it;
- timers are kept out of the windows: ``OTEL_BSP_SCHEDULE_DELAY`` and
  ``OTEL_METRIC_EXPORT_INTERVAL`` are an hour, so the batch span processor sends only
  full batches (512 spans, as under load) plus the window's final flush, and metrics
  are collected and exported once per window, by the flush. What each window pays
  whatever its size (the flush's fixed part, the control requests) cancels out in
  the difference. (A window that fills no batch, e.g. /health's, leaves out its
  spans' share of a batch's HTTP request: bench/README.md gives its size.)
- what is paid per second of wall time is kept out, as a request is about forty
  times slower under callgrind: the launcher slows uvicorn's idle tick, and
  ``CLSTOCK_CACHE_TTL`` (above) keeps prices cached.

Per span. ``bench/_span_worker.py`` makes traces of a root and ten children, five
attributes each, with ``start_as_current_span``: ``sdk`` through a TracerProvider, a
BatchSpanProcessor and an OTLP/HTTP exporter wired by hand; ``ours`` through the
provider this distro configures (the worker runs under ``opentelemetry-instrument``);
both export to the Sink. Instructions per span, all-in (start, attributes, end,
batch processor, encoding, sending) = (window of N2 traces - window of N1) / (11 x
(N2 - N1)). The windows are one and three full export batches (46 traces, 506 spans
each, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE=506``), so the difference holds two whole
batches' encoding and sending and nothing of a partial one.

Each figure is repeated (``--repeats``, default 2) and printed as median [min-max]
with its spread; ratios are taken repeat by repeat against plain (or the SDK). Every
repeat of a served variant runs in a server launched for it, round by round (plain,
ours, ... then again): what differs between launches (plain's /recommendations moved
by up to 0.5% from one to the next) is in the spread, and a ratio compares variants
measured in the same round. The
goals (issue 12) are printed MET / NOT MET. valgrind is the Debian package
``valgrind``: installed with apt-get when missing and running as root, else this
prints the command and exits 2.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
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
    Target,
    Window,
    per_unit,
    ratio,
    spread_line,
    valgrind_command,
)
from _common import machine
from _services import OTHER_VARIANTS, VARIANTS, Sink, Stack, Variant, variant_env

from clstock_otel_distro.tools.devstack import ServiceProcess

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "_counted_server.py"
SPAN_WORKER = HERE / "_span_worker.py"
VALGRIND_PACKAGE = "valgrind"

ENDPOINTS = {
    "recommendations": "/api/v1/recommendations?top_n=5",
    "predict": "/api/v1/predict/7203",
    "health": "/health",
}
# Requests in the two windows of each endpoint: full run, quick run.
COUNTS = {"recommendations": (10, 30), "predict": (10, 30), "health": (50, 150)}
QUICK_COUNTS = {"recommendations": (2, 6), "predict": (4, 12), "health": (20, 60)}
WARM_UP_REQUESTS = 5
CHILDREN_PER_ROOT = 10
SPANS_PER_TRACE = 1 + CHILDREN_PER_ROOT
# The span windows are whole export batches: 46 traces of 11 spans fill a batch of
# 506 (the SDK's default is 512), so a window of 1 or 3 batches sends exactly 1 or 3
# full requests to the receiver and the difference carries the cost of sending too.
TRACES_PER_BATCH = 46
BATCH_SPANS = TRACES_PER_BATCH * SPANS_PER_TRACE
TRACE_COUNTS = (TRACES_PER_BATCH, 3 * TRACES_PER_BATCH)
QUICK_TRACE_COUNTS = (TRACES_PER_BATCH, 2 * TRACES_PER_BATCH)
DEFAULT_VARIANTS = ("plain", "ours", "upstream", "ours-off")
QUICK_VARIANTS = ("plain", "ours")
QUICK_ENDPOINTS = ("recommendations", "health")
SPAN_VARIANTS = ("sdk", "ours")
SDK = "sdk"
HOUR_MS = "3600000"
# Timers out of the windows (see the module docstring): batches are sent when full
# and at each window's flush, metrics at each window's flush. String hashes seeded
# alike in every process: dict and set layouts (and what their probing costs) do not
# differ by chance between variants, or between runs.
COUNTING_ENV = {"OTEL_BSP_SCHEDULE_DELAY": HOUR_MS, "OTEL_BLRP_SCHEDULE_DELAY": HOUR_MS,
                "OTEL_METRIC_EXPORT_INTERVAL": HOUR_MS, "PYTHONHASHSEED": "0"}
# ClStock's price cache keeps a history for 5 minutes; under callgrind a variant's
# windows last longer than that, and a window that refetched would count a cold cache.
WARM_CACHE_ENV = {"CLSTOCK_CACHE_TTL": "86400"}
SPAN_PIPELINE = "OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE"
KEEP_ALIVE_SECONDS = "3600"
START_TIMEOUT = 300.0  # start-up under valgrind on a shared 2-CPU machine
REQUEST_TIMEOUT = 600.0
ACK_TIMEOUT = 300.0

# Variants of this benchmark besides bench/_services.py's, and the endpoints each is
# measured on when not all.
OWN_VARIANTS: dict[str, Variant] = {
    "ours-off": Variant("ours-off", "ours", {"OTEL_TRACES_SAMPLER": "always_off"}),
    "ours-sdk": Variant("ours-sdk", "ours", {SPAN_PIPELINE: "sdk"}),
}
VARIANT_ENDPOINTS = {"ours-off": ("recommendations",)}

# The goals of issue 12: (variant, endpoint, at most this ratio to plain).
REQUEST_GOALS = (
    ("ours", "recommendations", 1.02),
    ("ours", "predict", 1.03),
    ("ours", "health", 1.20),
    ("ours-off", "recommendations", 1.005),
)
SPAN_GOAL = ("ours", 75_000.0)


def ensure_valgrind() -> None:
    """valgrind and callgrind_control on PATH: installed when missing and root, else exit 2."""
    def present() -> bool:
        return bool(shutil.which("valgrind") and shutil.which("callgrind_control"))

    if present():
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", VALGRIND_PACKAGE]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"valgrind missing: {' '.join(command)}", file=sys.stderr, flush=True)
        subprocess.run(["apt-get", "update"], check=False)
        subprocess.run(command, check=False)
        if present():
            return
    print(f"bench/instructions.py needs valgrind (Debian package {VALGRIND_PACKAGE!r}): "
          f"sudo {' '.join(command)}", file=sys.stderr)
    raise SystemExit(2)


def resolve_variants(names: Sequence[str], extra: Sequence[str],
                     own: Mapping[str, Variant] = OWN_VARIANTS) -> dict[str, Variant]:
    """Variants by name, with ``--env NAME:VARIABLE=VALUE`` settings added.

    A name not defined anywhere is a new variant of the base its name starts with
    (``ours-big`` is ours plus its ``--env`` settings).
    """
    known = {**OTHER_VARIANTS, **own}
    resolved: dict[str, Variant] = {}
    for name in names:
        if name in known:
            spec = known[name]
            resolved[name] = Variant(spec.name, spec.base, spec.env)
        elif name in VARIANTS:
            resolved[name] = Variant(name)
        elif name.split("-", 1)[0] in VARIANTS:
            resolved[name] = Variant(name, name.split("-", 1)[0])
        else:
            raise ValueError(f"unknown variant {name!r} (a new one must start with "
                             f"{', '.join(VARIANTS)} and a dash)")
    for setting in extra:
        name, _, assignment = setting.partition(":")
        variable, equals, value = assignment.partition("=")
        if not equals or not variable:
            raise ValueError(f"--env {setting!r}: expected NAME:VARIABLE=VALUE")
        if name not in resolved:
            raise ValueError(f"--env {setting!r}: variant {name!r} is not measured")
        resolved[name].env[variable] = value
    return resolved


def resolve_span_variants(names: Sequence[str], extra: Sequence[str]) -> dict[str, Variant]:
    """Span pipelines: ``sdk`` (wired by hand) and traced variants (``ours``, ``ours-*``)."""
    if "plain" in names:
        raise ValueError("plain makes no spans: span pipelines are sdk and traced variants")
    # The SDK wired by hand (sdk, or sdk-* with --span-env settings) runs in a plain,
    # uninstrumented Python.
    by_hand = {name: Variant(name, "plain") for name in names
               if name == SDK or name.startswith(f"{SDK}-")}
    return resolve_variants(names, extra, {**OWN_VARIANTS, **by_hand})


# --- the served variants -------------------------------------------------------------


class CountedServer(ServiceProcess):
    """The API process of one variant, its Python run under callgrind by the launcher."""

    def __init__(self, template: ServiceProcess, out_dir: Path, ack: Path) -> None:
        env = {**template.env, **COUNTING_ENV, **WARM_CACHE_ENV, "BENCH_ACK_FILE": str(ack)}
        # One keep-alive connection for the whole run: uvicorn closes an idle one after
        # 5 s, and between windows (a collection, callgrind_control) it can be idle longer.
        super().__init__(template.name, template.app, template.app_dir, env=env,
                         instrumented=template.instrumented, log_path=out_dir / "server.log",
                         server_args=[*template.server_args, "--timeout-keep-alive",
                                      KEEP_ALIVE_SECONDS])
        self.out_dir = out_dir
        self.ack = ack

    def command(self) -> list[str]:
        # [opentelemetry-instrument] PYTHON -m uvicorn ARGS -> [opentelemetry-instrument]
        # valgrind ... PYTHON _counted_server.py ARGS: opentelemetry-instrument sets the
        # environment and execs valgrind, so only the server's Python is counted.
        command = super().command()
        at = command.index("-m")
        return [*command[:at - 1], *valgrind_command(self.out_dir), command[at - 1],
                str(LAUNCHER), *command[at + 2:]]

    def signal_and_wait(self, signum: int) -> None:
        """Send the launcher a signal and wait for its acknowledgement."""
        assert self.process is not None
        before = _lines(self.ack)
        os.kill(self.process.pid, signum)
        deadline = time.monotonic() + ACK_TIMEOUT
        while _lines(self.ack) <= before:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no acknowledgement of signal {signum}:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.02)


def _lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _get(connection: http.client.HTTPConnection, path: str) -> None:
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"GET {path}: {answer.status}")


def measure_requests(spec: Variant, endpoints: Sequence[str],
                     counts: Mapping[str, tuple[int, int]], repeat: int,
                     stack: Stack, sink: Sink, work: Path,
                     keep_dumps: Path | None = None) -> dict[str, Any]:
    """Repeat ``repeat`` (from 0) of one variant, in a server launched for it:
    ``{endpoint: {"windows": [[n1, ir1, n2, ir2]], "spans": [per request]}}``."""
    out_dir = work / f"{spec.name}-r{repeat + 1}"
    out_dir.mkdir()
    server = CountedServer(stack.api(spec), out_dir, out_dir / "ack")
    results: dict[str, Any] = {e: {"windows": [], "spans": []} for e in endpoints}
    started = time.monotonic()
    server.start(timeout=START_TIMEOUT)
    try:
        assert server.process is not None
        counter = Counter(server.process.pid, out_dir)
        connection = http.client.HTTPConnection("127.0.0.1", server.port,
                                                timeout=REQUEST_TIMEOUT)
        for endpoint in endpoints:
            for _ in range(WARM_UP_REQUESTS):
                _get(connection, ENDPOINTS[endpoint])
        server.signal_and_wait(signal.SIGUSR1)  # the warm-up's telemetry sent
        print(f"  {spec.name}: started and warmed up in {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)
        for endpoint in endpoints:
            low, high = counts[endpoint]
            windows: dict[int, Window] = {}
            spans: dict[int, int] = {}
            # Alternate the order, so that any drift falls on both sides.
            for units in (low, high) if repeat % 2 == 0 else (high, low):
                server.signal_and_wait(signal.SIGUSR2)
                received = sink.spans_of(spec.name)
                counter.start()
                for _ in range(units):
                    _get(connection, ENDPOINTS[endpoint])
                server.signal_and_wait(signal.SIGUSR1)
                keep = (None if keep_dumps is None else
                        keep_dumps / f"{spec.name}-{endpoint}-{units}-r{repeat + 1}.callgrind")
                windows[units] = Window(units, counter.stop(keep))
                spans[units] = sink.spans_of(spec.name) - received
            results[endpoint]["windows"].append(
                [low, windows[low].instructions, high, windows[high].instructions])
            results[endpoint]["spans"].append((spans[high] - spans[low]) / (high - low))
            print(f"  {spec.name} {endpoint} repeat {repeat + 1}: "
                  f"{per_unit(windows[low], windows[high]) / 1e6:.3f} M instructions "
                  f"per request ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr, flush=True)
        connection.close()
    finally:
        server.stop(timeout=60)
    return results


# --- the per-span workload -----------------------------------------------------------


class SpanWorker(LineWorker):
    """``bench/_span_worker.py`` under callgrind, driven line by line."""

    name = "span worker"

    def __init__(self, spec: Variant, sink: Sink, out_dir: Path) -> None:
        mode = SDK if spec.base == "plain" else "distro"
        env = {**os.environ, **COUNTING_ENV,
               "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(BATCH_SPANS)}
        if mode == "distro":
            env.update(variant_env(spec.base, sink, f"span-{spec.name}"))
        env.update(spec.env)
        python = [*valgrind_command(out_dir), sys.executable, str(SPAN_WORKER), mode,
                  sink.endpoint]
        command = python if mode == SDK else [_venv_bin("opentelemetry-instrument"), *python]
        super().__init__(command, env, out_dir, HERE, START_TIMEOUT, ACK_TIMEOUT)


def _venv_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def measure_spans(spec: Variant, counts: tuple[int, int], repeats: int, sink: Sink,
                  work: Path) -> dict[str, Any]:
    """The windows of one span pipeline: ``{"windows": [[n1, ir1, n2, ir2], ...]}``,
    in spans."""
    out_dir = work / f"span-{spec.name}"
    out_dir.mkdir()
    started = time.monotonic()
    worker = SpanWorker(spec, sink, out_dir)
    windows_out: list[list[int]] = []
    try:
        counter = Counter(worker.process.pid, out_dir)
        low, high = counts
        for repeat in range(repeats):
            windows: dict[int, Window] = {}
            for traces in (low, high) if repeat % 2 == 0 else (high, low):
                worker.send("settle", "settled")
                counter.start()
                worker.send(f"run {traces}", "done")
                windows[traces] = Window(traces * SPANS_PER_TRACE, counter.stop())
            windows_out.append([windows[low].units, windows[low].instructions,
                                windows[high].units, windows[high].instructions])
            print(f"  span {spec.name} repeat {repeat + 1}: "
                  f"{per_unit(windows[low], windows[high]) / 1e3:.1f} k instructions per span "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        worker.close()
    return {"windows": windows_out}


# --- the report ----------------------------------------------------------------------


def figure(name: str, windows: Sequence[Sequence[int]]) -> Figure:
    """Instructions per unit, one value per repeat, from ``[n1, ir1, n2, ir2]`` rows."""
    return Figure(name, [per_unit(Window(n1, ir1), Window(n2, ir2))
                         for n1, ir1, n2, ir2 in windows])


def report(data: Mapping[str, Any]) -> str:
    """The tables, the goals (MET / NOT MET) and the repeatability of ``data``."""
    lines: list[str] = []
    figures: list[Figure] = []
    goals: list[str] = []
    per_request: dict[tuple[str, str], Figure] = {}
    requests = data.get("requests", {})
    if requests:
        lines += ["| endpoint | variant | spans / request | instructions / request | vs plain "
                  "| spread |", "|---" * 6 + "|"]
        for endpoint in ENDPOINTS:
            for name, by_endpoint in requests.items():
                if endpoint not in by_endpoint:
                    continue
                result = by_endpoint[endpoint]
                measured = figure(f"{name} {endpoint}", result["windows"])
                figures.append(measured)
                per_request[name, endpoint] = measured
                plain = per_request.get(("plain", endpoint))
                versus = "-" if plain is None else _ratio_text(ratio(measured, plain))
                spans = Figure("spans", result["spans"]).median if result["spans"] else 0
                lines.append(f"| {endpoint} | {name} | {spans:g} | {measured.millions()} "
                             f"| {versus} | {measured.spread:.2%} |")
        for name, endpoint, limit in REQUEST_GOALS:
            measured, plain = per_request.get((name, endpoint)), per_request.get(("plain",
                                                                                  endpoint))
            if measured is not None and plain is not None:
                goals.append(Target(f"{name}: {endpoint} instructions per request vs plain",
                                    limit).line(ratio(measured, plain)))
    spans_data = data.get("spans", {})
    if spans_data:
        if lines:
            lines.append("")
        lines += ["| span pipeline | instructions / span | vs SDK | spread |", "|---" * 4 + "|"]
        sdk = figure(SDK, spans_data[SDK]["windows"]) if SDK in spans_data else None
        per_span: dict[str, Figure] = {}
        for name, result in spans_data.items():
            measured = figure(f"span {name}", result["windows"])
            figures.append(measured)
            per_span[name] = measured
            versus = "-" if sdk is None or name == SDK else _ratio_text(ratio(measured, sdk))
            lines.append(f"| {name} | {measured.thousands()} | {versus} "
                         f"| {measured.spread:.2%} |")
        name, limit = SPAN_GOAL
        if name in per_span:
            goals.append(Target(f"{name}: instructions per span, all-in", limit,
                                "instructions").line(per_span[name]))
    lines += ["", *goals, "", spread_line(figures)]
    return "\n".join(lines).strip()


def _ratio_text(measured: Figure) -> str:
    return (f"{measured.median:.3f} [{min(measured.values):.3f}-"
            f"{max(measured.values):.3f}]x")


# --- main ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = resolve_variants(args.variants, args.env)
    span_variants = resolve_span_variants(args.span_variants, args.span_env)
    counts = QUICK_COUNTS if args.quick else COUNTS
    data: dict[str, Any] = {"requests": {}, "spans": {}, "repeats": args.repeats,
                            "counts": {e: counts[e] for e in args.endpoints},
                            "trace_counts": args.traces}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp, Sink() as sink:
        work = Path(tmp)
        if variants:
            with Stack([], sink, warm=False) as stack:  # the market replay only
                # Round by round, each variant in a server launched afresh: the spread
                # then holds what differs from one launch to the next (plain's own
                # /recommendations moved by 0.5% between launches when the repeats
                # shared one), and each ratio compares variants of the same round.
                for repeat in range(args.repeats):
                    for name, spec in variants.items():
                        endpoints = [e for e in args.endpoints
                                     if e in VARIANT_ENDPOINTS.get(name, ENDPOINTS)]
                        if not endpoints:
                            continue
                        measured = measure_requests(spec, endpoints, counts, repeat, stack,
                                                    sink, work, args.keep_dumps)
                        merged = data["requests"].setdefault(
                            name, {e: {"windows": [], "spans": []} for e in endpoints})
                        for endpoint, figures in measured.items():
                            merged[endpoint]["windows"] += figures["windows"]
                            merged[endpoint]["spans"] += figures["spans"]
        for name, spec in span_variants.items():
            data["spans"][name] = measure_spans(spec, args.traces, args.repeats, sink, work)
    return data


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests and traces per window, and by default "
                             f"variants {','.join(QUICK_VARIANTS)} on "
                             f"{','.join(QUICK_ENDPOINTS)}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", type=_names,
                        help=f"served variants (default {','.join(DEFAULT_VARIANTS)}); "
                             "plain is added first, as the reference; '' for none")
    parser.add_argument("--endpoints", type=_names,
                        help=f"default {','.join(ENDPOINTS)} ({','.join(QUICK_ENDPOINTS)} "
                             "with --quick)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME:VARIABLE=VALUE",
                        help="an extra variable for a served variant (repeatable)")
    parser.add_argument("--span-variants", type=_names, default=list(SPAN_VARIANTS),
                        help=f"span pipelines (default {','.join(SPAN_VARIANTS)}: the SDK "
                             "by hand, this distro); sdk-* and ours-* ones take --span-env; "
                             "'' for none")
    parser.add_argument("--span-env", action="append", default=[],
                        metavar="NAME:VARIABLE=VALUE", help="an extra variable for a span "
                        "pipeline (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the raw counts here")
    parser.add_argument("--keep-dumps", type=Path, metavar="DIR",
                        help="keep each request window's callgrind dump here (per C "
                             "function; callgrind_annotate reads them)")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="print the report of a --json file instead of measuring")
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = list(QUICK_VARIANTS if args.quick else DEFAULT_VARIANTS)
    if args.variants and args.variants[0] != "plain":
        args.variants = ["plain", *(v for v in args.variants if v != "plain")]
    if args.endpoints is None:
        args.endpoints = list(QUICK_ENDPOINTS if args.quick else ENDPOINTS)
    unknown = [e for e in args.endpoints if e not in ENDPOINTS]
    if unknown:
        parser.error(f"unknown endpoint {', '.join(unknown)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.traces = QUICK_TRACE_COUNTS if args.quick else TRACE_COUNTS
    try:
        resolve_variants(args.variants, args.env)
        resolve_span_variants(args.span_variants, args.span_env)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    ensure_valgrind()
    started = time.monotonic()
    data = run(args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    counts = ", ".join(f"{e} {n1}/{n2}" for e, (n1, n2) in data["counts"].items())
    print(report(data))
    print(f"\n({time.monotonic() - started:.0f} s; callgrind {_valgrind_version()}, "
          f"{args.repeats} repeats; requests per window {counts}; "
          f"{WARM_UP_REQUESTS} warm-up requests per endpoint; traces of "
          f"{SPANS_PER_TRACE} spans per window {args.traces[0]}/{args.traces[1]}; "
          f"{machine()})")
    return 0


def _valgrind_version() -> str:
    try:
        return subprocess.run(["valgrind", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip().removeprefix("valgrind-")
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
