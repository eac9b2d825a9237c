"""The post-instrument start-up check: silent when ours ran, one warning when another won."""

from __future__ import annotations

import logging

import pytest

from clstock_otel_distro import _startup_check, configurator, distro

CODE = """
from opentelemetry import trace
with trace.get_tracer("test").start_as_current_span("checked-span"):
    pass
print("APP-RAN")
"""
WARNING_TEXT = "did not run: another OpenTelemetry distro or configurator was selected"
ADVICE = "Set OTEL_PYTHON_DISTRO=clstock OTEL_PYTHON_CONFIGURATOR=clstock"
BASE_ENV = {"OTEL_TRACES_EXPORTER": "console"}

def test_silent_when_ours_ran(monkeypatch, caplog):
    """No warning when both the distro and the configurator ran."""
    monkeypatch.setattr(distro, "_distro_ran", True)
    monkeypatch.setattr(configurator, "_configurator_ran", True)
    _startup_check.check_selected_components()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("distro_ran", "configurator_ran", "named"),
    [
        (False, False, "ClStockDistro and ClStockConfigurator"),
        (False, True, "ClStockDistro"),
        (True, False, "ClStockConfigurator"),
    ],
)
def test_one_warning_names_what_did_not_run(
    monkeypatch, caplog, distro_ran, configurator_ran, named
):
    """One warning naming the component that did not run and what to set."""
    monkeypatch.setattr(distro, "_distro_ran", distro_ran)
    monkeypatch.setattr(configurator, "_configurator_ran", configurator_ran)
    _startup_check.check_selected_components()
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "clstock_otel_distro._startup_check"
    assert f"but {named} did not run" in record.getMessage()
    assert ADVICE in record.getMessage()


def test_subprocess_ours_alone_no_warning(run_instrumented):
    """Only our distro installed: traced, and no start-up warning."""
    result = run_instrumented(CODE, BASE_ENV)
    assert result.returncode == 0, result.stderr
    assert '"telemetry.distro.name": "clstock-otel-distro"' in result.stdout
    assert WARNING_TEXT not in result.stderr


def test_subprocess_other_distro_first_warns(run_instrumented, other_distro_path):
    """opentelemetry-distro found first: the process is traced and our warning is on stderr."""
    result = run_instrumented(
        CODE, {**BASE_ENV, "OTEL_LOGS_EXPORTER": "none"}, pythonpath=other_distro_path
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "checked-span"' in result.stdout
    assert "clstock-otel-distro" not in result.stdout
    assert result.stderr.count(WARNING_TEXT) == 1, result.stderr
    assert "ClStockDistro and ClStockConfigurator did not run" in result.stderr
    assert ADVICE in result.stderr


def test_subprocess_other_configurator_selected_warns(run_instrumented, other_distro_path):
    """Our distro but their configurator: the warning names ClStockConfigurator."""
    env = {
        **BASE_ENV,
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISTRO": "clstock",
        "OTEL_PYTHON_CONFIGURATOR": "configurator",
    }
    result = run_instrumented(CODE, env, pythonpath=other_distro_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(WARNING_TEXT) == 1, result.stderr
    assert "but ClStockConfigurator did not run" in result.stderr


def test_subprocess_selected_by_env_wins(run_instrumented, other_distro_path):
    """OTEL_PYTHON_DISTRO=clstock OTEL_PYTHON_CONFIGURATOR=clstock: ours runs, no warning."""
    env = {**BASE_ENV, "OTEL_PYTHON_DISTRO": "clstock", "OTEL_PYTHON_CONFIGURATOR": "clstock"}
    result = run_instrumented(CODE, env, pythonpath=other_distro_path)
    assert result.returncode == 0, result.stderr
    assert '"telemetry.distro.name": "clstock-otel-distro"' in result.stdout
    assert WARNING_TEXT not in result.stderr
