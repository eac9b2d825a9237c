"""ClStock launched the README's way, ``opentelemetry-instrument uvicorn app.main:app``,
traced into a real OTLP receiver: server spans, resource, propagation across services,
threads and executors, log correlation, flush on exit, and multiple workers.

Each test sends its request with its own W3C ``traceparent``, so it finds its spans by
trace id in the shared receiver, whatever other tests sent.
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
import requests

from clstock_otel_distro.version import __version__
from tests.integration.conftest import ancestors, otlp_env
from tests.support.processes import GRACEFUL_EXIT_CODES

API_HTTP = "clstock"  # service.name is the distro's default for the plain API


def _traceparent() -> tuple[str, dict[str, str]]:
    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def call(method: str, url: str, **kwargs) -> tuple[str, requests.Response]:
    """Send one request in a new trace; returns the trace id and the answer."""
    trace_id, headers = _traceparent()
    answer = requests.request(method, url, headers=headers, timeout=60, **kwargs)
    return trace_id, answer


def wait_trace(receiver, trace_id, predicate, timeout=15.0):
    """The spans of ``trace_id`` once ``predicate`` holds for them."""
    spans = receiver.wait_for_spans(
        lambda all_spans: predicate([s for s in all_spans if s.trace_id == trace_id]),
        timeout=timeout,
    )
    return [s for s in spans if s.trace_id == trace_id]


def server_spans(spans, service):
    return [s for s in spans if s.kind == "SERVER" and s.service_name == service]


@pytest.fixture(scope="module")
def data_service(launch, receiver, replay):
    """The data service, traced, fetching from the replay."""
    return launch("data-service", "app.data_service:app", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": "clstock-data-service",
        "CLSTOCK_YAHOO_URL": replay.url,
    })


@pytest.fixture(scope="module")
def api_http(launch, receiver, replay):
    """The API fetching from the replay itself, exporting OTLP/HTTP, default service name."""
    return launch("api-http", env={**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url})


@pytest.fixture(scope="module")
def api_grpc(launch, receiver, replay):
    """The same API exporting OTLP/gRPC."""
    return launch("api-grpc", env={**otlp_env(receiver, "grpc"), "CLSTOCK_YAHOO_URL": replay.url})


@pytest.fixture(scope="module")
def api_remote(launch, receiver, data_service):
    """The API fetching through the data service."""
    return launch("api-remote", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": "clstock-api",
        "CLSTOCK_DATA_SERVICE_URL": data_service.url,
    })


@pytest.mark.parametrize(("api_fixture", "transport"), [("api_http", "http"),
                                                         ("api_grpc", "grpc")])
def test_recommendations_server_span(request, receiver, api_fixture, transport):
    """GET /recommendations gives one SERVER span with route, status and our resource."""
    api = request.getfixturevalue(api_fixture)
    trace_id, answer = call("GET", api.url + "/api/v1/recommendations?top_n=3")
    assert answer.status_code == 200
    spans = wait_trace(receiver, trace_id, lambda s: server_spans(s, API_HTTP))
    (span,) = server_spans(spans, API_HTTP)
    assert span.transport == transport
    assert span.name == "GET /api/v1/recommendations"
    assert span.scope_name == "opentelemetry.instrumentation.fastapi"
    assert span.attributes["http.route"] == "/api/v1/recommendations"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status_code != "ERROR"
    resource = span.resource
    assert resource["service.name"] == "clstock"
    assert resource["telemetry.distro.name"] == "clstock-otel-distro"
    assert resource["telemetry.distro.version"] == __version__
    assert resource["telemetry.sdk.language"] == "python"
    assert isinstance(resource["process.pid"], int)
    assert resource["host.name"]
    assert re.fullmatch(r"[0-9a-f-]{36}", resource["service.instance.id"])


def test_one_request_one_server_span(receiver, api_http):
    """FastAPI's native telemetry stands down for the contrib middleware: no duplicates."""
    trace_id, answer = call("GET", api_http.url + "/api/v1/predict/7203")
    assert answer.status_code == 200
    spans = wait_trace(receiver, trace_id, lambda s: server_spans(s, API_HTTP))
    time.sleep(0.5)  # a duplicate would be exported in the same or the next batch
    spans = [s for s in receiver.spans() if s.trace_id == trace_id]
    assert len(server_spans(spans, API_HTTP)) == 1
    assert [s for s in spans if s.scope_name == "fastapi"] == []
    # The ASGI middleware's internal send/receive spans are left out by default.
    assert [s.name for s in spans if s.name.endswith((" http send", " http receive"))] == []


def test_cross_service_parent_and_child(receiver, api_remote):
    """The API's requests CLIENT span is the parent of the data service's SERVER span."""
    trace_id, answer = call("GET", api_remote.url + "/api/v1/stock/7203/data?period=6mo")
    assert answer.status_code == 200, answer.text

    def complete(spans):
        return server_spans(spans, "clstock-api") and server_spans(spans, "clstock-data-service")

    spans = wait_trace(receiver, trace_id, complete)
    (api_server,) = server_spans(spans, "clstock-api")
    (remote_server,) = server_spans(spans, "clstock-data-service")
    clients = [s for s in spans if s.kind == "CLIENT" and s.service_name == "clstock-api"
               and "/prices/7203" in s.attributes.get("url.full", "")]
    assert len(clients) == 1
    client = clients[0]
    assert client.scope_name == "opentelemetry.instrumentation.requests"
    assert client.attributes["http.response.status_code"] == 200
    assert remote_server.parent_span_id == client.span_id
    assert remote_server.parent_is_remote is True
    assert remote_server.attributes["http.route"] == "/prices/{symbol}"
    assert api_server in ancestors(client, spans)


def test_batch_thread_pool_stays_in_trace(receiver, api_remote):
    """Work done on the batch's thread pool belongs to the request's trace."""
    symbols = ["8306", "9432", "4063"]
    trace_id, answer = call("POST", api_remote.url + "/api/v1/batch/predict",
                            json={"symbols": symbols})
    assert answer.status_code == 200, answer.text
    assert {r["symbol"] for r in answer.json()["results"]} == set(symbols)

    def complete(spans):
        return (server_spans(spans, "clstock-api")
                and len(server_spans(spans, "clstock-data-service")) == len(symbols))

    spans = wait_trace(receiver, trace_id, complete)
    (api_server,) = server_spans(spans, "clstock-api")
    clients = [s for s in spans if s.kind == "CLIENT" and s.service_name == "clstock-api"]
    assert sorted(c.attributes["url.full"].split("/prices/")[1][:4] for c in clients) == \
        sorted(symbols)
    for client in clients:
        assert api_server in ancestors(client, spans), "pool-thread span left the trace"


def test_run_in_executor_stays_in_trace(receiver, api_remote):
    """The async multi-fetch's executor work belongs to the request's trace."""
    trace_id, answer = call("GET", api_remote.url + "/api/v1/stocks?symbols=6098,8035&period=3mo")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["stocks"]) == {"6098", "8035"}
    spans = wait_trace(receiver, trace_id,
                       lambda s: len(server_spans(s, "clstock-data-service")) == 2
                       and server_spans(s, "clstock-api"))
    (api_server,) = server_spans(spans, "clstock-api")
    for remote in server_spans(spans, "clstock-data-service"):
        assert api_server in ancestors(remote, spans)


def test_log_lines_carry_trace_context(receiver, api_http):
    """ClStock's own log line written during a request carries its trace and span ids."""
    trace_id, answer = call("GET", api_http.url + "/api/v1/stock/9432/data?period=5d")
    assert answer.status_code == 200
    spans = wait_trace(receiver, trace_id, lambda s: server_spans(s, API_HTTP))
    deadline = time.monotonic() + 5
    line = None
    while line is None and time.monotonic() < deadline:
        line = next((ln for ln in api_http.log_text().splitlines()
                     if "Fetching data for 9432 (period: 5d)" in ln), None)
        time.sleep(0.05)
    assert line is not None, api_http.log_tail()
    assert f"trace_id={trace_id}" in line
    span_id = re.search(r"span_id=([0-9a-f]{16})", line).group(1)
    assert span_id in {s.span_id for s in spans} | {
        s.span_id for s in receiver.spans() if s.trace_id == trace_id}


def test_last_request_before_sigterm_is_delivered(launch, receiver, replay):
    """Spans still queued at SIGTERM are flushed on the way out."""
    # A one-minute batch delay: only the shutdown flush can deliver this span.
    api = launch("api-flush", env={**otlp_env(receiver), "OTEL_SERVICE_NAME": "clstock-flush",
                                   "OTEL_BSP_SCHEDULE_DELAY": "60000",
                                   "CLSTOCK_YAHOO_URL": replay.url})
    trace_id, answer = call("GET", api.url + "/health")
    assert answer.status_code == 200
    assert api.stop() in GRACEFUL_EXIT_CODES
    spans = wait_trace(receiver, trace_id, lambda s: server_spans(s, "clstock-flush"), timeout=5)
    assert server_spans(spans, "clstock-flush")[0].attributes["http.route"] == "/health"


def test_two_workers_are_both_traced(launch, receiver, replay):
    """uvicorn --workers 2: requests served by both worker processes are traced."""
    api = launch("api-workers", server_args=["--workers", "2"], env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": "clstock-workers",
        "CLSTOCK_YAHOO_URL": replay.url})
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    for _ in range(300):  # bounded: the kernel spreads connections, not strictly in turn
        if len(pids) >= 2 or time.monotonic() > deadline:
            break
        for _ in range(10):
            requests.get(api.url + "/health", timeout=10, headers={"Connection": "close"})
        time.sleep(0.3)
        pids = {s.resource["process.pid"] for s in receiver.spans()
                if s.service_name == "clstock-workers" and s.kind == "SERVER"}
    spans = [s for s in receiver.spans() if s.service_name == "clstock-workers"]
    assert len(pids) == 2, f"spans from worker pids {pids}"
    assert len({s.resource["service.instance.id"] for s in spans}) == 2
