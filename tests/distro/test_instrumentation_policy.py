"""Instrumentations the distro leaves out by default: click in servers, sqlite3."""

from __future__ import annotations

import sys

import pytest

from clstock_otel_distro import instrumentation_policy
from clstock_otel_distro.distro import ClStockDistro
from clstock_otel_distro.instrumentation_policy import launched_server, left_out

PYTHON = "/srv/venv/bin/python"


@pytest.mark.parametrize(("argv", "server"), [
    ([PYTHON, "/srv/venv/bin/uvicorn", "app.main:app"], "uvicorn"),
    ([PYTHON, "-m", "uvicorn", "app.main:app"], "uvicorn"),
    ([PYTHON, "-X", "importtime", "-u", "-m", "uvicorn.main", "app.main:app"], "uvicorn"),
    ([PYTHON, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "app.main:app"],
     "gunicorn"),
    ([PYTHON, "/srv/venv/bin/gunicorn", "app.main:app"], "gunicorn"),
    (["/usr/local/bin/hypercorn", "app.main:app"], "hypercorn"),
    ([PYTHON, "scripts/train.py", "--symbols", "7203"], None),
    ([PYTHON, "-m", "clstock_batch"], None),
    ([PYTHON, "-c", "import uvicorn"], None),
    ([PYTHON], None),
])
def test_the_server_program_is_read_from_the_command_line(argv, server):
    assert launched_server(argv) == server


def test_click_is_left_out_of_servers_only(monkeypatch):
    monkeypatch.setattr(instrumentation_policy, "launched_server", lambda: "uvicorn")
    assert left_out("click").switch == "OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS"
    monkeypatch.setattr(instrumentation_policy, "launched_server", lambda: None)
    assert left_out("click") is None  # a click batch command keeps its span


def test_switches_bring_them_back(monkeypatch):
    monkeypatch.setattr(instrumentation_policy, "launched_server", lambda: "uvicorn")
    assert left_out("sqlite3") is not None
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS", "true")
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS", "true")
    assert left_out("click") is None and left_out("sqlite3") is None
    assert left_out("fastapi") is None


class _EntryPoint:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loaded = False

    def load(self):
        self.loaded = True
        raise AssertionError("a left-out instrumentation must not even be imported")


def test_the_distro_never_imports_a_left_out_instrumentation():
    entry_point = _EntryPoint("sqlite3")
    ClStockDistro().load_instrumentor(entry_point)
    assert not entry_point.loaded


def test_grpc_instrumentations_wait_for_grpc(monkeypatch):
    monkeypatch.delitem(sys.modules, "grpc", raising=False)
    assert {instrumentation_policy.waits_for(name) for name in
            ("grpc_client", "grpc_server", "grpc_aio_client", "grpc_aio_server")} == {"grpc"}
    assert instrumentation_policy.waits_for("requests") is None
    monkeypatch.setitem(sys.modules, "grpc", object())
    assert instrumentation_policy.waits_for("grpc_client") is None  # imported: at once


_GRPC_PROBE = """
import sys
print("at start", "grpc" in sys.modules)
import grpc
from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
print("after import", GrpcInstrumentorClient().is_instrumented_by_opentelemetry)
"""


def test_grpc_is_not_imported_until_the_application_does(run_instrumented):
    """Under opentelemetry-instrument: no grpc at start; instrumented once imported."""
    result = run_instrumented(_GRPC_PROBE, {"OTEL_TRACES_EXPORTER": "none",
                                            "OTEL_METRICS_EXPORTER": "none",
                                            "OTEL_LOGS_EXPORTER": "none"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["at start False", "after import True"], (
        result.stdout, result.stderr[-2000:])
