"""bench/instructions.py without valgrind: callgrind.out parsing, differencing, ratios, goals."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# What callgrind 3.19 writes for a dump with --dump-instr=no --dump-line=no (abridged).
CALLGRIND_OUT = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 17972
cmd:  /venv/bin/python bench/_counted_server.py app.main:app --port 35303
part: 3

desc: I1 cache:
desc: D1 cache:
desc: LL cache:
desc: Timerange: Basic block 1210 - 15733044
desc: Trigger: Client Request: dump

positions: line
events: {events}
summary: {summary}

ob=(1) /usr/bin/python3.11
fl=(1) ???
fn=(1) _PyEval_EvalFrameDefault
0 1000

totals: {totals}
"""


def callgrind_out(totals: str, summary: str | None = None, events: str = "Ir") -> str:
    return CALLGRIND_OUT.format(events=events, totals=totals, summary=summary or totals)


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """bench/_callgrind.py and bench/instructions.py, imported as the scripts see them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        modules = {name: importlib.import_module(name)
                   for name in ("_callgrind", "instructions", "_counted_server")}
        yield modules
        for name in (*modules, "_common", "_services"):
            sys.modules.pop(name, None)


@pytest.fixture
def callgrind(bench: dict[str, ModuleType]) -> ModuleType:
    return bench["_callgrind"]


@pytest.fixture
def instructions(bench: dict[str, ModuleType]) -> ModuleType:
    return bench["instructions"]


def test_parse_totals_reads_the_totals_line(callgrind: ModuleType) -> None:
    """The totals line gives the count of each event named by the events line."""
    text = callgrind_out("218618004", summary="218617535")
    assert callgrind.parse_totals(text) == {"Ir": 218618004}


def test_parse_totals_several_events_and_summary_only(callgrind: ModuleType) -> None:
    """Several events map in order; an old file with only ``summary:`` still parses."""
    text = callgrind_out("12 3 4", events="Ir Dr Dw").replace("totals: 12 3 4\n", "")
    assert callgrind.parse_totals(text) == {"Ir": 12, "Dr": 3, "Dw": 4}
    # Trailing events without a number count zero, as in callgrind's cost lines.
    assert callgrind.parse_totals(callgrind_out("7", events="Ir Dr")) == {"Ir": 7, "Dr": 0}


@pytest.mark.parametrize("text", ["totals: 5\n", callgrind_out("5").replace("totals: 5\n", "")
                                  .replace("summary: 5\n", ""), callgrind_out("1 2")])
def test_parse_totals_rejects_incomplete_files(callgrind: ModuleType, text: str) -> None:
    """No events line, no totals (a dump still being written), too many numbers: an error."""
    with pytest.raises(callgrind.CallgrindError):
        callgrind.parse_totals(text)


def test_per_unit_differences_two_windows(callgrind: ModuleType) -> None:
    """What both windows pay cancels: (high - low) / (high units - low units)."""
    fixed = 5_000_000
    low = callgrind.Window(10, fixed + 10 * 120_000_000)
    high = callgrind.Window(30, fixed + 30 * 120_000_000)
    assert callgrind.per_unit(low, high) == 120_000_000
    assert callgrind.per_unit(high, low) == 120_000_000
    with pytest.raises(ValueError):
        callgrind.per_unit(low, low)


def test_figure_spread_and_ratio_by_repeat(callgrind: ModuleType) -> None:
    """The spread is (max - min) / median; a ratio pairs repeat i with repeat i."""
    ours = callgrind.Figure("ours", [101.0, 103.0, 102.0])
    plain = callgrind.Figure("plain", [100.0, 100.0, 102.0])
    assert ours.median == 102.0
    assert ours.spread == pytest.approx(2 / 102)
    assert callgrind.ratio(ours, plain).values == pytest.approx([1.01, 1.03, 1.0])
    assert callgrind.Figure("one", [5.0]).spread == 0.0
    with pytest.raises(ValueError):
        callgrind.ratio(ours, callgrind.Figure("short", [1.0]))


def test_target_lines(callgrind: ModuleType) -> None:
    """A target is met when the median is at most its limit, and says so."""
    target = callgrind.Target("ours: recommendations", 1.02)
    assert target.line(callgrind.Figure("r", [1.01, 1.02])).startswith(
        "- MET     ours: recommendations: 1.015x [1.010-1.020] (at most 1.020x)")
    assert target.line(callgrind.Figure("r", [1.03, 1.01, 1.04])).startswith("- NOT MET")
    spans = callgrind.Target("ours: per span", 75_000, "instructions")
    assert spans.line(callgrind.Figure("s", [74_000.0, 76_000.0])) == (
        "- MET     ours: per span: 75.0 [74.0-76.0] k instructions (at most 75 k)")


def test_spread_line_names_figures_above_one_percent(callgrind: ModuleType) -> None:
    """The repeatability line gives the widest spread and lists those above 1%."""
    line = callgrind.spread_line([callgrind.Figure("a", [100.0, 100.5]),
                                  callgrind.Figure("b", [100.0, 103.0])])
    assert "widest spread (max-min over median) is 2.96% (b)" in line
    assert "Above 1%: b 2.96%" in line
    assert "not measured" in callgrind.spread_line([callgrind.Figure("a", [1.0])])


def _windows(callgrind: ModuleType, per_unit: float, fixed: int = 3_000_000,
             units: tuple[int, int] = (10, 30)) -> list[int]:
    """A repeat's [n1, ir1, n2, ir2], each count read back from a synthetic dump."""
    row: list[int] = []
    for count in units:
        text = callgrind_out(str(int(fixed + count * per_unit)))
        row += [count, callgrind.parse_totals(text)["Ir"]]
    return row


def test_report_judges_every_goal(callgrind: ModuleType, instructions: ModuleType) -> None:
    """Per-request ratios to plain and the per-span figure are judged against issue 12's goals."""
    def served(per_request: list[float], spans: float, units: tuple[int, int] = (10, 30)) -> dict:
        return {"windows": [_windows(callgrind, value, units=units) for value in per_request],
                "spans": [spans] * len(per_request)}

    data = {
        "requests": {
            "plain": {"recommendations": served([100e6, 100.2e6], 0),
                      "predict": served([20e6, 20e6], 0),
                      "health": served([1.6e6, 1.6e6], 0, (50, 150))},
            "ours": {"recommendations": served([101e6, 101.4e6], 22),
                     "predict": served([24e6, 24e6], 7),
                     "health": served([1.9e6, 1.9e6], 1, (50, 150))},
            "ours-off": {"recommendations": served([100.6e6, 100.8e6], 0)},
        },
        "spans": {"sdk": {"windows": [_windows(callgrind, 430e3, 10**6, (506, 1518))] * 2},
                  "ours": {"windows": [_windows(callgrind, 70e3, 10**6, (506, 1518))] * 2}},
    }
    text = instructions.report(data)
    assert "| recommendations | ours | 22 | 101.20 [101.00-101.40] M | 1.011 [1.010-1.012]x" in text
    assert "| health | plain | 0 | 1.60 [1.60-1.60] M | 1.000 [1.000-1.000]x | 0.00% |" in text
    assert "| ours | 70.0 [70.0-70.0] k | 0.163 [0.163-0.163]x | 0.00% |" in text
    lines = text.splitlines()
    assert "- MET     ours: recommendations instructions per request vs plain: 1.011x" \
        " [1.010-1.012] (at most 1.020x)" in lines
    assert any(line.startswith("- NOT MET ours: predict") and "1.200x" in line for line in lines)
    assert any(line.startswith("- MET     ours: health") and "1.188x" in line for line in lines)
    assert any(line.startswith("- NOT MET ours-off: recommendations") and "1.006x" in line
               for line in lines)
    assert any(line.startswith("- MET     ours: instructions per span") for line in lines)
    assert lines[-1].startswith("Repeatability: the widest spread")


def test_report_without_plain_gives_no_ratio(instructions: ModuleType,
                                             callgrind: ModuleType) -> None:
    """A variant measured without plain has its figure but no ratio and no goal."""
    row = _windows(callgrind, 2e6)
    text = instructions.report({"requests": {"ours": {"health": {"windows": [row],
                                                                 "spans": [1.0]}}}})
    assert "| health | ours | 1 | 2.00 [2.00-2.00] M | - | 0.00% |" in text
    assert "MET" not in text


def test_resolve_variants(instructions: ModuleType) -> None:
    """Known variants, ``--env`` additions, new ``ours-*`` ones; unknown names are errors."""
    resolved = instructions.resolve_variants(
        ["plain", "ours", "ours-off", "ours-sdk", "ours-big"],
        ["ours-big:OTEL_BSP_MAX_EXPORT_BATCH_SIZE=1024", "ours-off:X=a=b"])
    assert resolved["ours-off"].env == {"OTEL_TRACES_SAMPLER": "always_off", "X": "a=b"}
    assert resolved["ours-sdk"].env == {"OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE": "sdk"}
    assert (resolved["ours-big"].base, resolved["ours-big"].env) == (
        "ours", {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1024"})
    # The module's own definitions are not changed by --env.
    assert instructions.OWN_VARIANTS["ours-off"].env == {"OTEL_TRACES_SAMPLER": "always_off"}
    for names, extra in ((["mine"], []), (["ours"], ["ours-x:A=1"]), (["ours"], ["ours:A"])):
        with pytest.raises(ValueError):
            instructions.resolve_variants(names, extra)
    spans = instructions.resolve_span_variants(["sdk", "ours", "sdk-small"],
                                               ["sdk-small:OTEL_BSP_MAX_EXPORT_BATCH_SIZE=253"])
    assert (spans["sdk"].base, spans["ours"].base, spans["sdk-small"].base) == (
        "plain", "ours", "plain")
    assert spans["sdk-small"].env == {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "253"}
    with pytest.raises(ValueError):
        instructions.resolve_span_variants(["plain"], [])


def test_counted_server_runs_only_python_under_valgrind(instructions: ModuleType,
                                                       tmp_path: Path) -> None:
    """opentelemetry-instrument execs valgrind, which runs Python with the launcher."""
    from clstock_otel_distro.tools.devstack import ServiceProcess

    template = ServiceProcess("api-ours", "app.main:app", tmp_path, env={"A": "1"},
                              instrumented=True)
    server = instructions.CountedServer(template, tmp_path, tmp_path / "ack")
    command = server.command()
    assert command[0].endswith("opentelemetry-instrument")
    assert command[1:3] == ["valgrind", "--tool=callgrind"]
    assert "--instr-atstart=no" in command
    at = command.index(sys.executable)
    assert command[at + 1:at + 3] == [str(instructions.LAUNCHER), "app.main:app"]
    assert "-m" not in command
    assert command[-2:] == ["--timeout-keep-alive", "3600"]  # one connection for the run
    assert server.env["BENCH_ACK_FILE"] == str(tmp_path / "ack")
    assert server.env["OTEL_BSP_SCHEDULE_DELAY"] == "3600000"
    assert server.env["CLSTOCK_CACHE_TTL"] == "86400"  # caches stay warm however slow
    plain = ServiceProcess("api-plain", "app.main:app", tmp_path, instrumented=False)
    assert instructions.CountedServer(plain, tmp_path, tmp_path / "ack").command()[0] == "valgrind"


FAKE_CONTROL = """\
#!{python}
import os, sys
args, pid = sys.argv[1:-1], sys.argv[-1]
with open(os.environ["FAKE_CONTROL_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if args == ["--dump"]:
    out = os.environ["FAKE_CONTROL_OUT"]
    number = len([n for n in os.listdir(out) if n.startswith("callgrind.out." + pid + ".")]) + 1
    with open(os.path.join(out, "callgrind.out.%s.%d" % (pid, number)), "w") as dump:
        dump.write(os.environ["FAKE_CONTROL_TEXT"])
"""


def test_counter_switches_dumps_and_reads(callgrind: ModuleType, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A window: on, zero, dump, off, always naming the pid; the new dump is read and removed."""
    fake = tmp_path / "callgrind_control"
    fake.write_text(FAKE_CONTROL.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "control.log"
    (tmp_path / "callgrind.out.4242.1").write_text(callgrind_out("1"))  # an older dump
    monkeypatch.setattr(callgrind, "CALLGRIND_CONTROL", str(fake))
    monkeypatch.setenv("FAKE_CONTROL_LOG", str(log))
    monkeypatch.setenv("FAKE_CONTROL_OUT", str(tmp_path))
    monkeypatch.setenv("FAKE_CONTROL_TEXT", callgrind_out("123456789"))
    counter = callgrind.Counter(4242, tmp_path)
    counter.start()
    assert counter.stop() == 123456789
    assert log.read_text().splitlines() == ["--instr=on 4242", "--zero 4242", "--dump 4242",
                                            "--instr=off 4242"]
    assert not (tmp_path / "callgrind.out.4242.2").exists()
    assert (tmp_path / "callgrind.out.4242.1").exists()


def test_counter_reports_control_errors(callgrind: ModuleType, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """callgrind_control's "Error:" answer (it exits 0) is an error here."""
    fake = tmp_path / "callgrind_control"
    fake.write_text(f"#!{sys.executable}\nprint(\"Error: Callgrind task with PID/name "
                    "'1' not detected.\")\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(callgrind, "CALLGRIND_CONTROL", str(fake))
    with pytest.raises(callgrind.CallgrindError, match="not detected"):
        callgrind.Counter(1, tmp_path).start()


def test_launcher_acknowledges_flush_and_settle(bench: dict[str, ModuleType], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher's handlers flush what providers exist and append one line each."""
    launcher = bench["_counted_server"]
    flushed: list[str] = []

    class Provider:
        def force_flush(self) -> bool:
            flushed.append("flushed")
            return True

    monkeypatch.setattr(launcher, "_providers", lambda: [Provider(), object()])
    monkeypatch.setenv("BENCH_ACK_FILE", str(tmp_path / "ack"))
    launcher._flush()
    launcher._settle()
    assert flushed == ["flushed"]
    assert (tmp_path / "ack").read_text() == "flushed\nsettled\n"


def test_launcher_signal_work_waits_for_the_current_task_step(
        bench: dict[str, ModuleType]) -> None:
    """A signal arriving inside a request's last step is handled after that step (the
    server span ends in the window it belongs to); with no loop running, at once."""
    launcher = bench["_counted_server"]
    order: list[str] = []
    handler = launcher._on_the_loop(lambda: order.append("flush"))

    async def request_tail() -> None:
        handler(signal.SIGUSR1, None)  # as if delivered between two bytecodes
        order.append("span ended")
        await asyncio.sleep(0)
        order.append("next step")

    asyncio.run(request_tail())
    assert order == ["span ended", "flush", "next step"]
    order.clear()
    handler(signal.SIGUSR1, None)
    assert order == ["flush"]


def test_launcher_main_loop_ticks_refresh_the_date_header_each_time(
        bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    """The slow main loop calls on_tick with multiples of 10 (uvicorn's once-a-second
    header refresh) until on_tick says to exit."""
    launcher = bench["_counted_server"]
    monkeypatch.setattr(launcher, "TICK_SECONDS", 0)
    counters: list[int] = []

    class Server:
        async def on_tick(self, counter: int) -> bool:
            counters.append(counter)
            return len(counters) == 3

    asyncio.run(launcher._slow_main_loop(Server()))
    assert counters == [0, 10, 20]


LOOP_PROGRAM = """\
import sys
print("ready", flush=True)
for line in sys.stdin:
    total = 0
    for number in range(int(line)):
        total += number * number
    print("done", flush=True)
"""


def _require_tool(tool: str, package: str) -> None:
    if shutil.which(tool):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is missing in CI: apt-get install {package}")
    pytest.skip(f"needs {tool} (Debian package {package})")


def test_real_callgrind_counts_windows_repeatably(callgrind: ModuleType, tmp_path: Path) -> None:
    """Under real callgrind, counting around windows of 20 000 and 60 000 loop turns gives
    the same instructions per turn twice over (within 1%), and nothing before the first."""
    _require_tool("valgrind", "valgrind")
    _require_tool("callgrind_control", "valgrind")
    program = tmp_path / "loop.py"
    program.write_text(LOOP_PROGRAM)
    process = subprocess.Popen(
        [*callgrind.valgrind_command(tmp_path), sys.executable, "-S", str(program)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "ready"
        counter = callgrind.Counter(process.pid, tmp_path)
        per_turn = []
        for _ in range(2):
            windows = []
            for turns in (20_000, 60_000):
                counter.start()
                process.stdin.write(f"{turns}\n")
                process.stdin.flush()
                assert process.stdout.readline().strip() == "done"
                windows.append(callgrind.Window(turns, counter.stop()))
            per_turn.append(callgrind.per_unit(*windows))
        figure = callgrind.Figure("turn", per_turn)
        # A CPython loop turn with a multiply and an add: tens to hundreds of instructions.
        assert 10 < figure.median < 2000
        assert figure.spread < 0.01
        assert not list(tmp_path.glob(f"callgrind.out.{process.pid}.*"))  # dumps read, removed
    finally:
        process.stdin.close()
        process.wait(60)
