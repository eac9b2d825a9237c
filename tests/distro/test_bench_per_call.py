"""bench/per_call_instructions.py without valgrind: the split's arithmetic, the worker's modes."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def per_call() -> Iterator[ModuleType]:
    """bench/per_call_instructions.py, imported as the script sees its helpers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        yield importlib.import_module("per_call_instructions")
        for name in ("per_call_instructions", "_call_worker", "_callgrind", "_common",
                     "_services"):
            sys.modules.pop(name, None)


def _rows(per_call_cost: float, fixed: int = 1_000_000) -> list[list[int]]:
    """One repeat's windows of 512 and 1536 calls costing ``per_call_cost`` each."""
    return [[512, int(fixed + 512 * per_call_cost), 1536, int(fixed + 1536 * per_call_cost)]]


def test_split_differences_the_modes(per_call: ModuleType) -> None:
    """all-in, export, metric and span are mode differences; the machinery is the rest."""
    modes = {"bare": _rows(10_000), "traced": _rows(170_000), "noexport": _rows(135_000),
             "nometric": _rows(88_000), "span": _rows(34_000)}
    parts = per_call.split(modes)
    assert parts["all-in"].median == 160_000
    assert parts["export"].median == 35_000
    assert parts["metric record"].median == 82_000
    assert parts["span start/end"].median == 24_000
    assert parts["wrapper+machinery"].median == 160_000 - 35_000 - 82_000 - 24_000
    report = per_call.report({"modes": modes})
    assert "| wrapper+machinery | 19.0 [19.0-19.0] k |" in report


def test_worker_runs_every_mode_and_exports_only_traced_spans(per_call: ModuleType) -> None:
    """The worker, instrumented by this distro (no valgrind): each mode answers; only
    the traced and nometric calls' spans reach the sink."""
    from _services import Sink

    commands = ["settle", "run traced 5", "run noexport 4", "run nometric 3", "run span 2",
                "run bare 2", "quit"]
    with Sink() as sink:
        done = subprocess.run(per_call.worker_command(None), input="\n".join(commands) + "\n",
                              capture_output=True, text=True, timeout=120,
                              env=per_call.worker_env(sink, {}), cwd=BENCH, check=False)
        spans = sink.spans_of(per_call.SERVICE)
    assert done.stdout.split() == ["ready", "settled", *["done"] * 5], done.stderr[-2000:]
    warm_up = 2 * importlib.import_module("_call_worker").WARM_UP_CALLS  # traced, nometric
    assert spans == warm_up + 5 + 3
