"""ClStock must stay free of OpenTelemetry code: the distro traces it from outside."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import APP_DIR


def _python_files() -> list[Path]:
    return sorted(APP_DIR.rglob("*.py"))


def _opentelemetry_references(path: Path, root: Path = APP_DIR) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # Dynamic imports (importlib.import_module("opentelemetry...")) count too.
            names = [node.value] if node.value.startswith("opentelemetry") else []
        else:
            continue
        found += [f"{path.relative_to(root)}:{node.lineno}: {name}"
                  for name in names if name.split(".")[0] == "opentelemetry"]
    return found


def test_clstock_has_python_files():
    """The scan below looks at the real application (it is not vacuously empty)."""
    names = {p.relative_to(APP_DIR).as_posix() for p in _python_files()}
    assert {"app/main.py", "models/predictor.py", "data/stock_data.py"} <= names


def test_no_file_under_clstock_imports_opentelemetry():
    """No module of ClStock imports opentelemetry, statically or dynamically."""
    offenders = [ref for path in _python_files() for ref in _opentelemetry_references(path)]
    assert offenders == []


def test_scanner_catches_an_import(tmp_path):
    """The scanner itself flags both import forms and a dynamic import."""
    sample = tmp_path / "bad.py"
    sample.write_text(
        "import opentelemetry.trace\nfrom opentelemetry import trace\n"
        "import importlib\nimportlib.import_module('opentelemetry.sdk')\n"
    )
    assert len(_opentelemetry_references(sample, root=tmp_path)) == 3
