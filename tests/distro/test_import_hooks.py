"""when_imported: a patch runs once its module is imported, once, and never raises."""

from __future__ import annotations

import importlib
import logging
import sys
import uuid
from types import ModuleType

import pytest

from clstock_otel_distro.patches._hooks import when_imported


@pytest.fixture
def module_name(tmp_path, monkeypatch) -> str:
    """An importable module that has not been imported yet."""
    name = f"late_module_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_runs_when_the_module_is_imported(module_name):
    patched: list[ModuleType] = []
    when_imported(module_name, patched.append, "nothing")
    assert patched == []
    module = importlib.import_module(module_name)
    assert patched == [module]


def test_runs_at_once_for_a_module_already_imported(module_name):
    module = importlib.import_module(module_name)
    patched: list[ModuleType] = []
    when_imported(module_name, patched.append, "nothing")
    assert patched == [module]


def test_the_same_patch_runs_once(module_name):
    calls: list[ModuleType] = []

    def patch(module: ModuleType) -> None:
        calls.append(module)

    when_imported(module_name, patch, "nothing")
    when_imported(module_name, patch, "nothing")
    importlib.import_module(module_name)
    assert len(calls) == 1


def test_a_failing_patch_is_logged_and_the_import_goes_on(module_name, caplog):
    def broken(module: ModuleType) -> None:
        raise AttributeError("no Server.startup here")

    with caplog.at_level(logging.DEBUG, logger="clstock_otel_distro"):
        when_imported(module_name, broken, "no gc.freeze() at start-up")
        module = importlib.import_module(module_name)
    assert module.VALUE == 1
    [record] = [r for r in caplog.records if "could not patch" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == (
        f"clstock-otel could not patch {module_name}: no gc.freeze() at start-up")
    assert record.exc_info[0] is AttributeError
