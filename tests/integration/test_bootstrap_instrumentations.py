"""With every instrumentation ``opentelemetry-bootstrap -a install`` adds for ClStock
installed (they are test dependencies), each launcher still gives one SERVER span
per request that continues the caller's trace, and no database bookkeeping spans."""

from __future__ import annotations

import importlib.util
import secrets
import sys
from pathlib import Path

import pytest
import requests

from clstock_otel_distro.tools.devstack import ServiceProcess
from tests.conftest import APP_DIR
from tests.integration.conftest import otlp_env
from tests.support.processes import GunicornProcess

# What bootstrap installs for ClStock's requirements beyond the distro's own
# dependencies (opentelemetry-bootstrap -a requirements, SDK 1.45 / contrib 0.66b1).
BOOTSTRAP_INSTRUMENTATIONS = ("asyncio", "click", "dbapi", "exceptions", "grpc", "sqlite3",
                              "starlette", "tortoiseorm", "urllib", "urllib3", "wsgi", "asgi")
PREDICT = "/api/v1/predict/7203"


def test_the_bootstrap_instrumentations_are_installed():
    """The suite runs with them: otherwise the tests below would prove nothing."""
    missing = [name for name in BOOTSTRAP_INSTRUMENTATIONS
               if importlib.util.find_spec(f"opentelemetry.instrumentation.{name}") is None]
    assert not missing, f"install the dev extra: missing {missing}"


class _ConsoleScriptProcess(ServiceProcess):
    """``opentelemetry-instrument uvicorn ...``: the console script, as the README says."""

    def command(self) -> list[str]:
        server = [str(Path(sys.executable).parent / "uvicorn"), self.app, "--host",
                  "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        return [str(Path(sys.executable).parent / "opentelemetry-instrument"), *server]


LAUNCHERS = {
    "uvicorn": _ConsoleScriptProcess,
    "python -m uvicorn": ServiceProcess,  # also the distro's demo and test launchers
    "gunicorn": lambda *args, **kwargs: GunicornProcess(*args, workers=1, **kwargs),
}


@pytest.fixture(scope="module")
def services(receiver, replay, tmp_path_factory):
    """One traced API per launcher, all exporting to the module's receiver."""
    logs = tmp_path_factory.mktemp("bootstrap-logs")
    started = {}
    try:
        for label, factory in LAUNCHERS.items():
            name = "clstock-" + label.replace(" ", "-")
            env = {**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url,
                   "OTEL_SERVICE_NAME": name}
            started[label] = factory(name, "app.main:app", APP_DIR, env=env,
                                     log_path=logs / f"{name}.log").start()
        yield started
    finally:
        for service in started.values():
            service.stop()


def _traced_request(service: ServiceProcess, path: str) -> tuple[str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    answer = requests.get(service.url + path, timeout=60,
                          headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert answer.status_code == 200, answer.text
    return trace_id, parent_id


@pytest.mark.parametrize("label", LAUNCHERS)
def test_each_request_is_one_server_span_continuing_the_callers_trace(services, receiver,
                                                                      label):
    trace_id, parent_id = _traced_request(services[label], PREDICT)
    spans = receiver.wait_for_spans(
        lambda got: any(s.trace_id == trace_id and s.kind == "SERVER" for s in got)
        and any(s.trace_id == trace_id and s.name.startswith("StockPredictor.") for s in got),
        timeout=20)
    trace = [s for s in spans if s.trace_id == trace_id]
    servers = [s for s in trace if s.kind == "SERVER"]
    assert len(servers) == 1, [(s.name, s.kind) for s in trace]
    (server,) = servers
    assert server.parent_span_id == parent_id
    assert server.attributes["http.route"] == "/api/v1/predict/{symbol}"
    assert not [s for s in trace if s.scope_name.endswith((".click", ".sqlite3", ".dbapi"))]


def test_a_recommendation_has_no_database_bookkeeping_spans(services, receiver):
    """yfinance's SQLite caches stay out of ClStock's traces by default."""
    trace_id, _ = _traced_request(services["uvicorn"], "/api/v1/recommendations?top_n=3")
    spans = receiver.wait_for_spans(
        lambda got: any(s.trace_id == trace_id and s.kind == "SERVER" for s in got), timeout=30)
    trace = [s for s in spans if s.trace_id == trace_id]
    assert any(s.name.startswith("yfinance ") for s in trace)
    assert not [s for s in trace if "db.system" in s.attributes
                or "db.system.name" in s.attributes]


def test_database_spans_on_request_use_the_current_conventions(launch, receiver, replay):
    """OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS=true: sqlite3 spans with db.system.name."""
    name = "clstock-sqlite-spans"
    api = launch(name, env={**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url,
                            "OTEL_SERVICE_NAME": name,
                            "OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS": "true"})
    trace_id, _ = _traced_request(api, "/api/v1/recommendations?top_n=3")
    spans = receiver.wait_for_spans(
        lambda got: any(s.trace_id == trace_id and s.scope_name.endswith(".sqlite3")
                        for s in got), timeout=30)
    database = [s for s in spans if s.trace_id == trace_id and s.scope_name.endswith(".sqlite3")]
    assert all(s.kind == "CLIENT" for s in database)
    assert all(s.attributes.get("db.system.name") == "sqlite" for s in database)
    assert not [s for s in database if "db.system" in s.attributes]
