"""What a production ``pip install`` gets: the built wheel holds the product, nothing that
only the tests or the benchmarks use and nothing that runs pip, and the runtime a
deployment imports (distro, configurator, instrumentors) imports none of the tools."""

from __future__ import annotations

import ast
import configparser
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "clstock_otel_distro"
# What tests/support holds: none of it may ship.
TEST_ONLY_NAMES = (
    "wait_for_spans",
    "wait_for_metrics",
    "wait_for_logs",
    "children_of",
    "raw_trace_requests",
    "RecordingReceiver",
    "GunicornProcess",
    "GRACEFUL_EXIT_CODES",
    "upstream_distro_path",
)
# Calls that start a program (and os.exec*/os.spawn*): "pip" among their arguments
# means the module runs pip.
_PROCESS_CALLS = frozenset(
    {"run", "Popen", "call", "check_call", "check_output", "system", "popen", "run_module"}
)
_PIP_WORD = re.compile(r"(?<![\w-])pip3?(?![\w-])")


def _build_wheel(source: Path, dist: Path) -> Path:
    # The sources are copied first: building in place would leave build/ in the checkout.
    tree = dist.parent / "source"
    shutil.copytree(source / PACKAGE, tree / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source / name, tree / name)
    # --no-build-isolation: the virtualenv's setuptools (a dev extra), no download.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(dist), str(tree)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    [wheel] = dist.glob(f"{PACKAGE}-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel built from this checkout."""
    yield _build_wheel(REPO_ROOT, tmp_path_factory.mktemp("wheel") / "dist")


def _modules(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: archive.read(name).decode("utf-8")
            for name in archive.namelist()
            if name.endswith(".py")
        }


def _runs_pip(source: str) -> list[str]:
    """Where a module imports pip or starts a program with pip among its arguments.

    Advice to the operator ("pip install clstock-otel-distro") is a message, not a run:
    it is only counted when it is an argument of a call that starts a program.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        if any(name.split(".")[0] in ("pip", "ensurepip") for name in names):
            found.append(f"line {node.lineno}: imports pip")
        if isinstance(node, ast.Constant) and node.value in ("pip", "pip3", "ensurepip"):
            found.append(f"line {node.lineno}: {node.value!r} as a program argument")
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(
                function, "id", "")
            if name not in _PROCESS_CALLS and not name.startswith(("exec", "spawn")):
                continue
            for argument in node.args:
                for part in ast.walk(argument):
                    if (isinstance(part, ast.Constant) and isinstance(part.value, str)
                            and _PIP_WORD.search(part.value)):
                        found.append(f"line {node.lineno}: {name}() runs {part.value!r}")
    return found


def test_the_wheel_holds_the_product_and_no_test_or_benchmark_code(wheel: Path):
    """No module of the wheel names what only tests/support or bench/ use."""
    modules = _modules(wheel)
    assert f"{PACKAGE}/distro.py" in modules
    assert f"{PACKAGE}/tools/otlp_receiver.py" in modules  # the operator tools do ship
    assert not [name for name in modules if not name.startswith(f"{PACKAGE}/")]
    offending = {
        name: sorted(word for word in TEST_ONLY_NAMES if re.search(rf"\b{word}\b", source))
        for name, source in modules.items()
    }
    assert {name: words for name, words in offending.items() if words} == {}


def test_no_module_of_the_wheel_runs_pip(wheel: Path):
    """Nothing a deployment installs imports pip or starts it."""
    found = {name: _runs_pip(source) for name, source in _modules(wheel).items()}
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_the_pip_check_finds_a_module_that_runs_pip():
    """The check above is real: a helper like the old devstack one is caught, advice is not."""
    runs = 'import subprocess, sys\nsubprocess.run([sys.executable, "-m", "pip", "install", "x"])\n'
    shell = 'import os\nos.system(f"pip install {name}")\n'
    advice = 'problem("reinstall it (pip install --force-reinstall clstock-otel-distro)")\n'
    assert _runs_pip(runs) == ["line 2: run() runs 'pip'", "line 2: 'pip' as a program argument"]
    assert _runs_pip(shell) == ["line 2: system() runs 'pip install '"]
    assert _runs_pip("import pip._internal\n") == ["line 1: imports pip"]
    assert _runs_pip(advice) == []


def _runtime_modules(wheel: Path) -> list[str]:
    """The modules the wheel's opentelemetry_* entry points name: what instrumenting loads."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(archive.read(name).decode("utf-8"))
    return sorted(
        {
            value.split(":")[0].strip()
            for group in parser.sections()
            if group.startswith("opentelemetry_")
            for value in parser[group].values()
        }
    )


def test_the_runtime_imports_none_of_the_tools(wheel: Path, tmp_path: Path):
    """Importing the distro, the configurator and every entry point imports no tools module."""
    runtime = _runtime_modules(wheel)
    assert {f"{PACKAGE}.distro", f"{PACKAGE}.configurator"} <= set(runtime)
    code = f"""
import importlib, json, sys
sys.path.insert(0, {str(wheel)!r})
for module in {runtime!r}:
    importlib.import_module(module)
print(json.dumps({{
    "origin": importlib.import_module("{PACKAGE}").__file__,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] == "{PACKAGE}"),
}}))
"""
    # A fresh interpreter, outside the checkout, so that only the wheel provides the package.
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=True)
    answer = json.loads(result.stdout)
    assert answer["origin"].startswith(str(wheel))
    modules = answer["modules"]
    assert {f"{PACKAGE}.distro", f"{PACKAGE}.configurator",
            f"{PACKAGE}.instrumentors.predictor"} <= set(modules)
    assert [m for m in modules if m.startswith(f"{PACKAGE}.tools")] == []
