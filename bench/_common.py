"""Helpers the benchmarks share: statistics, formatting, goals and the machine."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["Goal", "fmt", "goal_lines", "machine", "median"]

ROOT = Path(__file__).resolve().parent.parent
# Benchmarks run as `python bench/X.py` (bench/ first on sys.path): the repository root
# too, so that they share the tests' helpers (tests.support) instead of copying them.
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def fmt(values: Sequence[float], digits: int = 1) -> str:
    """``median [min-max]`` of ``values``."""
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}-{max(values):.{digits}f}]")


class Goal:
    """One goal a benchmark checks: a name, whether it was met, and the figure."""

    def __init__(self, name: str, met: bool, figure: str) -> None:
        self.name, self.met, self.figure = name, met, figure

    def line(self) -> str:
        return f"- {'MET    ' if self.met else 'NOT MET'} {self.name}: {self.figure}"


def goal_lines(goals: Iterable[Goal]) -> list[str]:
    return [goal.line() for goal in goals]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine() -> str:
    """One line describing the machine, the interpreter and the OpenTelemetry versions."""
    try:
        load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load ?"
    return (f"{os.cpu_count()} CPUs ({_cpu_model()}), {load}; Python "
            f"{platform.python_version()} ({sys.implementation.name}); "
            f"opentelemetry-sdk {_version('opentelemetry-sdk')}, instrumentation "
            f"{_version('opentelemetry-instrumentation')}, fastapi {_version('fastapi')}, "
            f"uvicorn {_version('uvicorn')}; clstock-otel-distro "
            f"{_version('clstock-otel-distro')}")
