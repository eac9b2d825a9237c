"""Fixtures for the distro tests: a clean OTEL_* environment and instrumented subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from clstock_otel_distro import config as _config
from clstock_otel_distro import configurator, distro
from clstock_otel_distro.instrumentors._machinery import patches as patching
from clstock_otel_distro.patches import otlp_http_durable, registry
from clstock_otel_distro.patches.registry import PatchState
from clstock_otel_distro.sdk import delivery, repeated_warnings
from tests.support.otel_testing import Telemetry

VENV_BIN = Path(sys.executable).parent
OPENTELEMETRY_INSTRUMENT = VENV_BIN / "opentelemetry-instrument"

RunInstrumented = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable from the shell; variables the code under test adds are removed."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "_OTEL_")):
            monkeypatch.delenv(name)
    before = set(os.environ)
    yield
    # setdefault/lasting writes by the code under test; monkeypatch restores the rest.
    for name in set(os.environ) - before:
        del os.environ[name]


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no (variable, value) pair already warned about."""
    monkeypatch.setattr(_config, "_warned", set())


@pytest.fixture(autouse=True)
def no_repeated_warning_filter() -> Iterator[None]:
    """The configurator's filter of repeated SDK warnings, installed by a test, is taken
    off after it: later tests see the SDK's warnings as the SDK logs them."""
    yield
    repeated_warnings.uninstall_repeated_warning_filter()


@pytest.fixture(autouse=True)
def restore_ran_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The distro/configurator "ran" flags go back to their values after each test."""
    monkeypatch.setattr(distro, "_distro_ran", distro._distro_ran)
    monkeypatch.setattr(configurator, "_configurator_ran", configurator._configurator_ran)


@pytest.fixture(autouse=True)
def patch_installs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the upstream patches distro and configurator install, recorded
    instead of applied (only those whose switch is on).

    Applied, gc.freeze() would freeze this pytest process's heap when a later test
    starts a uvicorn server in-process; the patches' own tests apply them
    (tests/distro/test_patches.py and each patch's test module).
    """
    names: list[str] = []

    def record(patch: registry.UpstreamPatch) -> registry.PatchState:
        if not patch.enabled():
            return registry.PatchState.OFF
        names.append(patch.name)
        return registry.PatchState.WAITING

    recording = types.SimpleNamespace(install=record)
    monkeypatch.setattr(distro, "registry", recording)
    monkeypatch.setattr(configurator, "registry", recording)
    return names


def _child_environ(env: Mapping[str, str], pythonpath: str | None) -> dict[str, str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    child.pop("PYTHONPATH", None)
    # Metrics would try to reach a collector at exit; tests look at traces.
    child.update({"OTEL_METRICS_EXPORTER": "none", "PYTHONUNBUFFERED": "1"})
    child.update(env)
    if pythonpath:
        child["PYTHONPATH"] = pythonpath
    return child


@pytest.fixture
def run_instrumented(tmp_path: Path) -> RunInstrumented:
    """Run ``opentelemetry-instrument python -c code`` with the given environment."""

    def run(
        code: str,
        env: Mapping[str, str],
        *,
        pythonpath: str | None = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(OPENTELEMETRY_INSTRUMENT), sys.executable, "-c", code],
            env=_child_environ(env, pythonpath),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


# Shared by the patching-machinery tests.


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """In-memory tracer and meter providers, shut down after the test."""
    pipeline = Telemetry.create()
    yield pipeline
    pipeline.shutdown()


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    """A fresh importable module the test fills with classes and functions."""
    name = f"fake_clstock_{uuid.uuid4().hex}"
    fake = types.ModuleType(name)
    sys.modules[name] = fake
    yield fake
    del sys.modules[name]


@pytest.fixture
def patches() -> Iterator[list[Any]]:
    """Patches installed by the test; uninstalled at teardown whatever happened."""
    installed: list[Any] = []
    yield installed
    patching.uninstall_all(installed)


@pytest.fixture
def durable(monkeypatch) -> Iterator[None]:
    """The patch installed with fast retries; undone and forgotten afterwards."""
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL", "200")
    delivery.reset_for_tests()
    assert registry.install(otlp_http_durable.PATCH) is PatchState.ACTIVE
    yield
    registry.uninstall(otlp_http_durable.PATCH)
    delivery.reset_for_tests()
