"""Callgrind for the benchmarks: count a process's instructions around windows of work.

A process runs under ``valgrind --tool=callgrind --instr-atstart=no``: start-up, warm-up
and everything between windows run uninstrumented (and count nothing). Around each
window the driver switches instrumentation on and zeroes the counters
(``callgrind_control -i on``, ``-z``), has the process do the work, then dumps the
counters to a ``callgrind.out`` file (``--dump``) and switches instrumentation off
again; :func:`parse_totals` reads the file's ``events:`` and ``totals:`` lines.

The cost of one unit of work (a request, a span) is the difference between a window of
N2 units and a window of N1 units divided by N2 - N1: what every window pays whatever
its size (switching counting on and off, flushing the exporters, the event loop's idle
ticks) cancels out. :class:`Figure` keeps the repeats of one such cost and says how far
they spread; :class:`Target` is a goal on a figure or on a ratio of two.

This module is pure Python and the standard library, so that the arithmetic can be
tested without valgrind (tests/distro/test_bench_instructions.py).
"""

from __future__ import annotations

import re
import select
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CallgrindError",
    "Counter",
    "Figure",
    "LineWorker",
    "Target",
    "Window",
    "parse_totals",
    "per_unit",
    "ratio",
    "spread_line",
    "valgrind_command",
]

CALLGRIND_CONTROL = "callgrind_control"
EVENT = "Ir"  # instructions executed
OUT_PREFIX = "callgrind.out."
# A dump is requested through vgdb, which reaches a process blocked in a system call
# only when it next wakes up (uvicorn's event loop ticks ten times a second).
CONTROL_TIMEOUT = 120.0
_EVENTS = re.compile(r"^events:\s*(.+)$", re.M)
_TOTALS = re.compile(r"^(totals|summary):\s*(.+)$", re.M)


class CallgrindError(RuntimeError):
    """callgrind_control failed, or a callgrind.out file is not what was expected."""


def valgrind_command(out_dir: Path) -> list[str]:
    """The valgrind prefix of a command run with counting off until switched on."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            # Totals are all that is read: no per-instruction or per-line tables.
            "--dump-instr=no", "--dump-line=no",
            f"--callgrind-out-file={out_dir / OUT_PREFIX}%p",
            f"--log-file={out_dir}/valgrind.%p.log"]


def parse_totals(text: str) -> dict[str, int]:
    """The total of each event of a callgrind.out file, e.g. ``{"Ir": 218617535}``.

    The ``totals:`` line (written by every callgrind since 3.x) is preferred to the
    older ``summary:`` line; both list one number per name of the ``events:`` line.
    """
    events = _EVENTS.search(text)
    if events is None:
        raise CallgrindError("no 'events:' line: not a callgrind.out file")
    names = events.group(1).split()
    found = {kind: values.split() for kind, values in _TOTALS.findall(text)}
    values = found.get("totals") or found.get("summary")
    if values is None:
        raise CallgrindError("no 'totals:' or 'summary:' line: the dump is incomplete")
    if len(values) > len(names):
        raise CallgrindError(f"{len(values)} totals for {len(names)} events")
    # Trailing events with no count are zero, as in callgrind's cost lines.
    return {name: int(values[i]) if i < len(values) else 0 for i, name in enumerate(names)}


@dataclass(frozen=True)
class Window:
    """One counted window: how many units of work it did and the instructions it took."""

    units: int
    instructions: int


def per_unit(low: Window, high: Window) -> float:
    """Instructions per unit: the difference of two windows over their difference in units."""
    if high.units == low.units:
        raise ValueError("the two windows must differ in units of work")
    return (high.instructions - low.instructions) / (high.units - low.units)


@dataclass
class Figure:
    """The repeats of one measured cost (instructions per unit)."""

    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats: 0.01 is 1%."""
        if len(self.values) < 2 or self.median == 0:
            return 0.0
        return (max(self.values) - min(self.values)) / abs(self.median)

    def millions(self, digits: int = 2) -> str:
        """``median [min-max]`` in millions of instructions."""
        return (f"{self.median / 1e6:.{digits}f} "
                f"[{min(self.values) / 1e6:.{digits}f}-{max(self.values) / 1e6:.{digits}f}] M")

    def thousands(self) -> str:
        """``median [min-max]`` in thousands of instructions."""
        return (f"{self.median / 1e3:.1f} "
                f"[{min(self.values) / 1e3:.1f}-{max(self.values) / 1e3:.1f}] k")


def ratio(figure: Figure, reference: Figure) -> Figure:
    """``figure / reference`` repeat by repeat (repeat i of one against repeat i of the
    other: the windows of a repeat were counted one after the other)."""
    if len(figure.values) != len(reference.values):
        raise ValueError(f"{figure.name} has {len(figure.values)} repeats, "
                         f"{reference.name} {len(reference.values)}")
    return Figure(f"{figure.name} / {reference.name}",
                  [value / base for value, base in zip(figure.values, reference.values)])


@dataclass(frozen=True)
class Target:
    """A goal: a figure (or a ratio) at most ``limit``; judged on the median of the repeats."""

    name: str
    limit: float
    unit: str = "x"

    def met(self, figure: Figure) -> bool:
        return figure.median <= self.limit

    def line(self, figure: Figure) -> str:
        """``- MET     name: 1.013x (limit 1.020x)``, the format of bench/_common.Goal."""
        verdict = "MET    " if self.met(figure) else "NOT MET"
        if self.unit == "x":
            shown = (f"{figure.median:.3f}x [{min(figure.values):.3f}-{max(figure.values):.3f}]"
                     f" (at most {self.limit:.3f}x)")
        else:
            shown = f"{figure.thousands()} {self.unit} (at most {self.limit / 1e3:.0f} k)"
        return f"- {verdict} {self.name}: {shown}"


class Counter:
    """Switches callgrind's counting on and off in one process and reads its dumps."""

    def __init__(self, pid: int, out_dir: Path) -> None:
        self.pid = pid
        self.out_dir = out_dir
        self._seen: set[Path] = set(self._dumps())

    def _dumps(self) -> list[Path]:
        return list(self.out_dir.glob(f"{OUT_PREFIX}{self.pid}.*"))

    def control(self, *args: str) -> None:
        # Always with the pid: without one callgrind_control acts on every callgrind
        # run on the machine.
        result = subprocess.run([CALLGRIND_CONTROL, *args, str(self.pid)],
                                capture_output=True, text=True, timeout=CONTROL_TIMEOUT,
                                check=False)
        if result.returncode != 0 or "Error" in result.stdout:
            raise CallgrindError(f"callgrind_control {' '.join(args)} {self.pid}: "
                                 f"{(result.stdout + result.stderr).strip()[-500:]}")

    def start(self) -> None:
        """Count from now on, from zero."""
        self.control("--instr=on")
        self.control("--zero")

    def stop(self, keep_as: Path | None = None) -> int:
        """Dump the counters, stop counting; the instructions counted since :meth:`start`.

        The dump is deleted, or moved to ``keep_as`` (per C function: read it with
        ``callgrind_annotate``).
        """
        self.control("--dump")
        path = self._new_dump()
        self.control("--instr=off")
        total = parse_totals(path.read_text())[EVENT]
        if keep_as is None:
            path.unlink()
        else:
            keep_as.parent.mkdir(parents=True, exist_ok=True)
            path.replace(keep_as)
        return total

    def _new_dump(self) -> Path:
        deadline = time.monotonic() + CONTROL_TIMEOUT
        while time.monotonic() < deadline:
            for path in set(self._dumps()) - self._seen:
                # The totals line is written last: a file without it is still being written.
                if _TOTALS.search(path.read_text()):
                    self._seen.add(path)
                    return path
            time.sleep(0.05)
        raise CallgrindError(f"no new callgrind dump of process {self.pid} in {self.out_dir}")


def spread_line(figures: Sequence[Figure], limit: float = 0.01) -> str:
    """One line on the repeatability of ``figures``: the widest spread, and any above ``limit``."""
    measured = [figure for figure in figures if len(figure.values) > 1]
    if not measured:
        return "Repeatability: one repeat per figure, spread not measured."
    widest = max(measured, key=lambda figure: figure.spread)
    above = [f"{figure.name} {figure.spread:.2%}" for figure in measured if figure.spread > limit]
    line = (f"Repeatability: the widest spread (max-min over median) is {widest.spread:.2%} "
            f"({widest.name}), over {len(measured)} figures.")
    if above:
        line += f" Above {limit:.0%}: {', '.join(above)}."
    return line


class LineWorker:
    """A worker process driven line by line: a command on stdin, a one-word answer on stdout.

    Its stderr goes to ``out_dir/worker.log``; it answers ``ready`` once started.
    """

    name = "worker"

    def __init__(self, command: list[str], env: dict[str, str], out_dir: Path, cwd: Path,
                 start_timeout: float, answer_timeout: float) -> None:
        self.answer_timeout = answer_timeout
        self.log = open(out_dir / "worker.log", "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=env, cwd=cwd)
        self.expect("ready", start_timeout)

    def expect(self, word: str, timeout: float) -> None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().strip() if ready else ""
        if line != word:
            raise RuntimeError(f"{self.name}: expected {word!r}, got {line!r} "
                               f"(exit status {self.process.poll()}; see {self.log.name})")

    def send(self, command: str, answer: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self.expect(answer, self.answer_timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
