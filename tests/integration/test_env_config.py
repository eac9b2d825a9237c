"""Configuration through OTEL_* variables only, on the real traced API process.

Every case starts its own API under ``opentelemetry-instrument`` with one variant of
the environment, sends the same requests, and checks that ClStock answered all of
them and that the telemetry (or the warning) is what the variable asks for. The
process is stopped before the spans are checked, so its shutdown flush has delivered
everything it had: an absence of spans is then meaningful.
"""

from __future__ import annotations

import json

import pytest
import requests

from clstock_otel_distro.tools.devstack import ServiceProcess
from tests.integration.conftest import otlp_env
from tests.support.processes import GRACEFUL_EXIT_CODES

REQUESTS = ("/health", "/api/v1/predict/7203", "/api/v1/stock/7203/data?period=1mo")


def serve_and_stop(api: ServiceProcess) -> None:
    """Send the standard requests, assert each answered 200, then stop the API."""
    try:
        for path in REQUESTS:
            answer = requests.get(api.url + path, timeout=60)
            assert answer.status_code == 200, (path, answer.text, api.log_tail())
    finally:
        assert api.stop() in GRACEFUL_EXIT_CODES, api.log_tail()


def spans_of(receiver, service_name):
    return [s for s in receiver.spans() if s.service_name == service_name]


def routes(spans):
    """The routes served (the readiness probe adds /health requests of its own)."""
    return {s.attributes["http.route"] for s in spans if s.kind == "SERVER"}


EXPECTED_ROUTES = {"/health", "/api/v1/predict/{symbol}", "/api/v1/stock/{symbol}/data"}


@pytest.fixture()
def start_api(launch, receiver, replay):
    """Start an API traced into the receiver with extra environment."""

    def _start(name: str, **env: str) -> ServiceProcess:
        return launch(name, env={**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url, **env})

    return _start


def test_service_name_from_otel_service_name(start_api, receiver):
    """OTEL_SERVICE_NAME names the service."""
    serve_and_stop(start_api("named", OTEL_SERVICE_NAME="clstock-prod-api"))
    assert routes(spans_of(receiver, "clstock-prod-api")) == EXPECTED_ROUTES


def test_resource_attributes(start_api, receiver):
    """OTEL_RESOURCE_ATTRIBUTES sets the service name and extra resource attributes."""
    serve_and_stop(start_api(
        "resattrs",
        OTEL_RESOURCE_ATTRIBUTES="service.name=clstock-from-attrs,deployment.environment.name=stg",
    ))
    spans = spans_of(receiver, "clstock-from-attrs")
    assert routes(spans) == EXPECTED_ROUTES
    assert {s.resource["deployment.environment.name"] for s in spans} == {"stg"}


@pytest.mark.parametrize(("ratio", "expected"), [("0", set()), ("1", EXPECTED_ROUTES)])
def test_trace_id_ratio_sampler(start_api, receiver, ratio, expected):
    """traceidratio 0 records nothing, 1 records every request."""
    name = f"clstock-ratio-{ratio}"
    serve_and_stop(start_api(f"ratio{ratio}", OTEL_SERVICE_NAME=name,
                             OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG=ratio))
    assert routes(spans_of(receiver, name)) == expected


def test_console_exporter(start_api, receiver):
    """OTEL_TRACES_EXPORTER=console prints spans as JSON instead of sending them."""
    api = start_api("console", OTEL_SERVICE_NAME="clstock-console",
                    OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none")
    serve_and_stop(api)
    assert spans_of(receiver, "clstock-console") == []
    printed = _json_objects(api.log_text())
    server = [o for o in printed if o.get("kind") == "SpanKind.SERVER"]
    assert {o["attributes"]["http.route"] for o in server} == EXPECTED_ROUTES
    assert {o["resource"]["attributes"]["service.name"] for o in server} == {"clstock-console"}


def test_disabled_fastapi_instrumentation(start_api, receiver):
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi removes the contrib FastAPI spans only."""
    serve_and_stop(start_api("nofastapi", OTEL_SERVICE_NAME="clstock-nofastapi",
                             OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="fastapi"))
    spans = spans_of(receiver, "clstock-nofastapi")
    assert [s for s in spans if s.scope_name == "opentelemetry.instrumentation.fastapi"] == []
    # FastAPI's own native telemetry takes over the server spans (one per request).
    assert routes(spans) == EXPECTED_ROUTES
    assert {s.scope_name for s in spans if s.kind == "SERVER"} == {"fastapi"}


BAD_VALUES = [
    # (variable, value, spans still reach the receiver through the fallback)
    ("OTEL_TRACES_EXPORTER", "otlp,bogus", True),
    ("OTEL_TRACES_SAMPLER_ARG", "abc", True),
    ("OTEL_TRACES_SAMPLER", "sometimes", True),
    # A bad per-signal endpoint falls back to OTEL_EXPORTER_OTLP_ENDPOINT (the receiver).
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url", True),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "smoke-signals", True),
    ("OTEL_EXPORTER_OTLP_HEADERS", "api-key-without-equals-secret123", True),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "-5", True),
    ("OTEL_BSP_SCHEDULE_DELAY", "soon", True),
]


@pytest.mark.parametrize(("variable", "value", "exported"), BAD_VALUES,
                         ids=[b[0] for b in BAD_VALUES])
def test_bad_values_warn_and_fall_back(start_api, receiver, variable, value, exported):
    """A bad value gives one warning naming it; the app serves; tracing goes on."""
    name = f"clstock-bad-{variable.lower()}"
    extra = {"OTEL_TRACES_SAMPLER": "traceidratio"} if variable.endswith("SAMPLER_ARG") else {}
    api = start_api(f"bad-{variable}", OTEL_SERVICE_NAME=name, **extra, **{variable: value})
    serve_and_stop(api)
    log = api.log_text()
    shown = "***" if "HEADERS" in variable else repr(value)
    assert log.count(f"{variable}={shown} is invalid") == 1, log
    assert "secret123" not in log
    assert "Traceback" not in log
    assert routes(spans_of(receiver, name)) == (EXPECTED_ROUTES if exported else set())


COINSTALL_WARNING = "did not run: another OpenTelemetry distro or configurator was selected"


def test_coinstalled_upstream_distro_wins_without_pins(start_api, receiver, other_distro_path):
    """opentelemetry-distro found first: ClStock serves, traced, and we warn what to set."""
    # Upstream's distro loads every instrumentation installed, click included, whose
    # command span would swallow the server spans of `python -m uvicorn` (ours leaves
    # it out: instrumentation_policy); an operator without our distro disables it.
    api = start_api("upstream-first", OTEL_SERVICE_NAME="clstock-upstream",
                    PYTHONPATH=other_distro_path, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="click")
    serve_and_stop(api)
    log = api.log_text()
    assert log.count(COINSTALL_WARNING) == 1, log
    assert "OTEL_PYTHON_DISTRO=clstock OTEL_PYTHON_CONFIGURATOR=clstock" in log
    spans = spans_of(receiver, "clstock-upstream")
    assert routes(spans) == EXPECTED_ROUTES
    assert all("telemetry.distro.name" not in s.resource for s in spans)


def test_coinstalled_upstream_distro_pinned_to_ours(start_api, receiver, other_distro_path):
    """With both pinning variables set, our distro and configurator win: no warning."""
    api = start_api("upstream-pinned", OTEL_SERVICE_NAME="clstock-pinned",
                    PYTHONPATH=other_distro_path, OTEL_PYTHON_DISTRO="clstock",
                    OTEL_PYTHON_CONFIGURATOR="clstock")
    serve_and_stop(api)
    assert COINSTALL_WARNING not in api.log_text()
    spans = spans_of(receiver, "clstock-pinned")
    assert routes(spans) == EXPECTED_ROUTES
    assert {s.resource["telemetry.distro.name"] for s in spans} == {"clstock-otel-distro"}


def _json_objects(text: str) -> list[dict]:
    """The JSON objects the console exporter printed, among other log lines."""
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while (start := text.find("{", index)) != -1:
        try:
            obj, index = decoder.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects
