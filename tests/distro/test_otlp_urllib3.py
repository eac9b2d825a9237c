"""The OTLP/HTTP clients the configurator builds send with urllib3 where the request stays
the same (patch otlp-http-urllib3): same path, headers, body and outcomes as requests."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.common import http as otlp_http
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

from clstock_otel_distro.patches import otlp_http_durable, otlp_http_urllib3, registry
from clstock_otel_distro.patches.registry import PatchState
from clstock_otel_distro.sdk import delivery
from clstock_otel_distro.sdk.delivery import Outcome
from clstock_otel_distro.sdk.pipeline import PipelineTracerProvider, build_span_processor
from tests.distro.pipeline_testing import SequentialIds

T0 = 1_700_000_000_000_000_000
# The SDK's Urllib3HTTPTransport, a read timeout counted as a connection error.
_URLLIB3 = otlp_http_urllib3._urllib3_transport_class()


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client_port: int


@dataclass
class Collector:
    """A local HTTP receiver that keeps every request and answers as told, per path."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    # path -> (status, extra headers, seconds to wait before answering); default 200.
    answers: dict[str, list[tuple[int, dict[str, str], float]]] = field(default_factory=dict)

    def url(self, path: str = "/v1/traces") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.requests) >= count, self.requests
        return self.requests


@pytest.fixture
def collector() -> Iterator[Collector]:
    state = Collector()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            queued = state.answers.get(self.path)
            status, extra, delay = queued.pop(0) if queued else (200, {}, 0.0)
            state.requests.append(Received(self.command, self.path, list(self.headers.items()),
                                           body, self.client_address[1]))
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Whatever the shell has: no proxy, and an empty ~/.netrc."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    (tmp_path / "empty-netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "empty-netrc"))


@pytest.fixture
def uninstalled() -> Iterator[None]:
    yield
    registry.uninstall(otlp_http_urllib3.PATCH)


def _built(factory: Any = OTLPSpanExporter, sdk_kwargs: dict[str, Any] | None = None,
           **arguments: Any) -> Any:
    """An exporter built as the configurator's SDK call builds it."""
    with otlp_http_urllib3.sdk_builds_urllib3_clients(sdk_kwargs or {}):
        return factory(**arguments)


def _transport(exporter: Any) -> type:
    return type(exporter._client._transport)


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _pipeline(exporter: Any) -> PipelineTracerProvider:
    provider = PipelineTracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False,
                                      resource=Resource({"service.name": "urllib3-test"}))
    provider.add_span_processor(build_span_processor(exporter))
    assert provider.pipeline_active
    return provider


def _spans(provider: PipelineTracerProvider) -> None:
    tracer = provider.get_tracer("test", "1.0")
    for index in range(3):
        span = tracer.start_span(f"span-{index}", start_time=T0 + index,
                                 attributes={"clstock.symbol": "7203.T", "n": index})
        span.end(T0 + 10 + index)
    assert provider.force_flush(10_000)


# --------------------------------------------------------------------------- the wire


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_spans_arrive_as_requests_sends_them(collector, monkeypatch, uninstalled, compression):
    """The same spans through the pipeline: same method, path, headers (header by header,
    case-insensitive) and body with urllib3 as with requests."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=clstock,authorization=Bearer t0k")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    with_requests = OTLPSpanExporter(endpoint=collector.url())
    with_urllib3 = _built(endpoint=collector.url())
    assert _transport(with_requests) is RequestsHTTPTransport
    assert _transport(with_urllib3) is _URLLIB3
    for exporter in (with_requests, with_urllib3):
        provider = _pipeline(exporter)
        _spans(provider)
        provider.shutdown()
    first, second = collector.wait_for(2)
    assert (first.method, first.path) == (second.method, second.path) == ("POST", "/v1/traces")
    sent_by_requests, sent_by_urllib3 = _lower(first.headers), _lower(second.headers)
    assert sent_by_urllib3 == sent_by_requests
    # The set, spelled out: requests' defaults are on the wire with urllib3 too.
    assert set(sent_by_urllib3) == {
        "host", "user-agent", "accept-encoding", "accept", "connection", "content-type",
        "content-length", "x-tenant", "authorization",
        *(["content-encoding"] if compression == "gzip" else [])}
    assert sent_by_urllib3["accept"] == "*/*" and sent_by_urllib3["connection"] == "keep-alive"
    assert sent_by_urllib3["user-agent"].startswith("OTel-OTLP-Exporter-Python/")
    bodies = [gzip.decompress(r.body) if compression == "gzip" else r.body
              for r in (first, second)]
    assert bodies[0] == bodies[1]
    request = ExportTraceServiceRequest.FromString(bodies[1])
    names = [span.name for rs in request.resource_spans for ss in rs.scope_spans
             for span in ss.spans]
    assert names == ["span-0", "span-1", "span-2"]


def test_one_keep_alive_connection_carries_the_batches(collector, uninstalled):
    """Batches reuse the pooled connection, as requests' session does."""
    exporter = _built(endpoint=collector.url())
    for _ in range(3):
        assert exporter._client.export(b"\n\x00").success
    ports = {received.client_port for received in collector.wait_for(3)}
    assert len(ports) == 1
    assert exporter._client._transport._pool.connection_pool_kw["maxsize"] == 10


# --------------------------------------------------------------------------- outcomes


def _attempt(exporter: Any, timeout: float = 2.0) -> delivery.Attempt:
    """One try of the durable sender's, through the client's own _submit."""
    return otlp_http_durable._one_attempt(otlp_http, exporter._client)(b"payload", timeout)


@pytest.mark.parametrize(("status", "headers", "outcome", "retry_after", "detail"), [
    (200, {}, Outcome.SENT, None, ""),
    (307, {"Location": "http://127.0.0.1:9/elsewhere"}, Outcome.SENT, None, ""),
    (429, {"Retry-After": "3"}, Outcome.RETRY, 3.0, "HTTP 429"),
    (503, {"Retry-After": "7"}, Outcome.RETRY, 7.0, "HTTP 503"),
    (502, {}, Outcome.RETRY, None, "HTTP 502"),
    (400, {}, Outcome.REJECTED, None, "HTTP 400 Bad Request"),
    (413, {}, Outcome.REJECTED, None, "HTTP 413 Request Entity Too Large"),
])
def test_each_answer_is_judged_as_with_requests(collector, uninstalled, status, headers,
                                                outcome, retry_after, detail):
    """Status, Retry-After and redirects (not followed) give the sender the same outcome."""
    results = []
    for exporter in (OTLPSpanExporter(endpoint=collector.url()), _built(endpoint=collector.url())):
        collector.answers["/v1/traces"] = [(status, headers, 0.0)]
        started = time.monotonic()
        results.append(_attempt(exporter))
        assert time.monotonic() - started < 1.0  # no retry or sleep inside the transport
    assert results[0] == results[1]
    assert (results[1].outcome, results[1].retry_after, results[1].detail) == (
        outcome, retry_after, detail)
    assert len(collector.requests) == 2  # one request each: nothing followed or retried


def test_a_collector_that_is_away_is_retried_by_both(uninstalled):
    """Connection refused: a connection error for both transports (the sender retries)."""
    with_requests = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    with_urllib3 = _built(endpoint="http://127.0.0.1:9/v1/traces")
    assert _transport(with_urllib3) is _URLLIB3
    for exporter in (with_requests, with_urllib3):
        assert _attempt(exporter).outcome is Outcome.RETRY


def test_a_collector_that_does_not_answer_in_time_is_retried_by_both(collector, uninstalled):
    """A read timeout: a connection error for both (RETRY for the sender), after the
    same number of tries (_submit tries again at once only while time remains)."""
    tries = []
    for exporter in (OTLPSpanExporter(endpoint=collector.url()), _built(endpoint=collector.url())):
        collector.requests.clear()
        collector.answers["/v1/traces"] = [(200, {}, 1.0), (200, {}, 1.0)]
        started = time.monotonic()
        attempt = _attempt(exporter, timeout=0.4)
        assert attempt.outcome is Outcome.RETRY, attempt
        assert attempt.detail.startswith("ReadTimeout"), attempt.detail
        assert 0.35 < time.monotonic() - started < 1.0
        time.sleep(0.2)
        tries.append(len(collector.requests))
    assert tries == [1, 1]


def test_a_read_timeout_is_a_connection_error_as_with_requests():
    """requests' ReadTimeout is retried; the SDK's urllib3 transport alone (0.66b1) would
    give the batch up on urllib3's ReadTimeoutError; the distro's subclass retries it."""
    from urllib3.exceptions import ReadTimeoutError

    error = ReadTimeoutError(None, "/v1/traces", "Read timed out.")
    assert RequestsHTTPTransport().is_connection_error(requests.exceptions.ReadTimeout())
    assert not Urllib3HTTPTransport().is_connection_error(error)
    assert issubclass(_URLLIB3, Urllib3HTTPTransport)
    assert _URLLIB3().is_connection_error(error)
    assert not _URLLIB3().is_connection_error(ValueError("not a connection problem"))



def test_a_503_with_retry_after_is_sent_again_and_arrives(collector, durable, uninstalled):
    """Through the pipeline and the durable sender: 503 Retry-After: 0, then taken."""
    collector.answers["/v1/traces"] = [(503, {"Retry-After": "0"}, 0.0)]
    exporter = _built(endpoint=collector.url())
    assert _transport(exporter) is _URLLIB3
    provider = _pipeline(exporter)
    _spans(provider)
    refused, taken = collector.wait_for(2)
    assert refused.body == taken.body
    provider.shutdown()
    assert delivery.reporter().total.get(("spans", "rejected"), 0) == 0


def test_a_400_is_dropped_and_counted(collector, durable, uninstalled):
    collector.answers["/v1/traces"] = [(400, {}, 0.0)]
    exporter = _built(endpoint=collector.url())
    provider = _pipeline(exporter)
    _spans(provider)
    collector.wait_for(1)
    time.sleep(0.3)
    assert len(collector.requests) == 1
    assert delivery.reporter().total[("spans", "rejected")] == 3
    provider.shutdown()


def _pooled_connections(exporter: Any) -> int:
    pools = exporter._client._transport._pool.pools
    keys = pools.keys()  # urllib3's RecentlyUsedContainer refuses plain iteration
    return sum(1 for key in keys for connection in (pools[key].pool.queue
                                                    if pools[key].pool else ())
               if connection is not None)


def test_a_forked_child_opens_its_own_connection(collector, durable, uninstalled):
    """After fork the durable patch's reset empties the urllib3 pool: the child connects anew."""
    exporter = _built(endpoint=collector.url())
    assert exporter._client.export(b"\n\x00").success
    collector.wait_for(1)
    assert _pooled_connections(exporter) == 1  # a keep-alive connection to share
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, send once, exit at once
        status = 1
        try:
            pooled = _pooled_connections(exporter)
            sent = exporter._client.export(b"\n\x00").success
            os.write(write, json.dumps([pooled, sent]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert json.loads(os.read(read, 64)) == [0, True]
    parent, child = collector.wait_for(2)
    assert parent.client_port != child.client_port


# --------------------------------------------------------------------------- requests kept


@pytest.mark.parametrize(("variable", "value", "kept"), [
    ("HTTP_PROXY", "http://127.0.0.1:3128", True),
    ("ALL_PROXY", "http://127.0.0.1:3128", True),
    ("HTTPS_PROXY", "http://127.0.0.1:3128", False),  # not for an http:// endpoint
])
def test_a_proxy_for_the_endpoint_keeps_requests(monkeypatch, uninstalled, variable, value, kept):
    monkeypatch.setenv(variable, value)
    exporter = _built(endpoint="http://collector.example:4318/v1/traces")
    assert (_transport(exporter) is RequestsHTTPTransport) is kept


def test_an_endpoint_in_no_proxy_sends_with_urllib3(monkeypatch, uninstalled):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "collector.example")
    assert _transport(_built(endpoint="http://collector.example:4318/v1/traces")) \
        is _URLLIB3


def test_netrc_credentials_for_the_host_keep_requests(monkeypatch, tmp_path, uninstalled):
    """requests would send them as basic auth."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine collector.example login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert _transport(_built(endpoint="http://collector.example:4318/v1/traces")) \
        is RequestsHTTPTransport
    assert _transport(_built(endpoint="http://other.example:4318/v1/traces")) \
        is _URLLIB3


@pytest.mark.parametrize("endpoint", [
    "https://127.0.0.1:4318/v1/traces",
    "http://user:pass@127.0.0.1:4318/v1/traces",
    "http://127.0.0.1:4318/v1/tra ces",
])
def test_https_user_info_or_a_rewritten_url_keep_requests(uninstalled, endpoint):
    assert _transport(_built(endpoint=endpoint)) is RequestsHTTPTransport


def _customised(session: requests.Session, how: str) -> None:
    if how == "auth":
        session.auth = ("user", "secret")
    elif how == "headers":
        session.headers["X-Team"] = "quant"
    elif how == "hooks":
        session.hooks["response"].append(lambda response, **kwargs: response)
    elif how == "adapter":
        session.mount("http://", requests.adapters.HTTPAdapter(max_retries=3))
    elif how == "cookies":
        session.cookies.set("sticky", "1")
    elif how == "proxies":
        session.proxies["http"] = "http://127.0.0.1:3128"


@pytest.mark.parametrize("how", ["auth", "headers", "hooks", "adapter", "cookies", "proxies"])
def test_a_session_of_its_own_keeps_requests(uninstalled, how):
    """A session passed to the exporter, customised in any way: requests."""
    session = requests.Session()
    _customised(session, how)
    exporter = _built(endpoint="http://127.0.0.1:4318/v1/traces", session=session)
    assert _transport(exporter) is RequestsHTTPTransport
    assert exporter._client._transport._session is session


def test_a_session_in_the_exporter_arguments_keeps_requests(uninstalled):
    """Even a default-looking one: the application holds it and may change it later."""
    session = requests.Session()
    arguments = {"exporter_args_map": {OTLPSpanExporter: {"session": session}}}
    exporter = _built(sdk_kwargs=arguments, endpoint="http://127.0.0.1:4318/v1/traces",
                      session=session)
    assert _transport(exporter) is RequestsHTTPTransport
    # ... and so does every exporter built in that call.
    assert _transport(_built(OTLPMetricExporter, sdk_kwargs=arguments)) is RequestsHTTPTransport


@pytest.mark.parametrize("variable", [
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
])
def test_a_credential_provider_keeps_requests(monkeypatch, uninstalled, variable):
    """The SDK's session from the provider's entry point (checked, as the SDK does, per
    signal: the traces variable leaves the metrics exporter alone)."""
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:4318/v1/traces")
    metrics = OTLPMetricExporter(endpoint="http://127.0.0.1:4318/v1/metrics")
    assert otlp_http_urllib3.requests_kept_because(exporter._client) is None
    monkeypatch.setenv(variable, "corporate-sso")
    assert otlp_http_urllib3.requests_kept_because(exporter._client) == \
        f"{variable} provides its session"
    assert (otlp_http_urllib3.requests_kept_because(metrics._client) is None) is \
        variable.endswith("TRACES_CREDENTIAL_PROVIDER")


def test_a_header_requests_refuses_keeps_requests(uninstalled):
    exporter = _built(endpoint="http://127.0.0.1:4318/v1/traces", headers={"x-bad": " leading"})
    assert _transport(exporter) is RequestsHTTPTransport


def test_switched_off_requests_sends(monkeypatch, uninstalled):
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3", "false")
    exporter = _built(endpoint="http://127.0.0.1:4318/v1/traces")
    assert _transport(exporter) is RequestsHTTPTransport
    assert registry.state_of(otlp_http_urllib3.PATCH)[0] is PatchState.OFF


def test_only_the_configurators_call_on_its_thread(uninstalled):
    """Before, after, and on another thread during the call: the SDK's requests transport."""
    from opentelemetry.exporter.otlp.common.http import _OTLPHTTPClient

    original = _OTLPHTTPClient.__init__
    assert _transport(OTLPSpanExporter()) is RequestsHTTPTransport
    other: list[Any] = []
    with otlp_http_urllib3.sdk_builds_urllib3_clients({}):
        assert registry.state_of(otlp_http_urllib3.PATCH)[0] is PatchState.ACTIVE
        thread = threading.Thread(target=lambda: other.append(OTLPSpanExporter()))
        thread.start()
        thread.join()
        assert _transport(OTLPSpanExporter()) is _URLLIB3
    assert _transport(other[0]) is RequestsHTTPTransport
    assert _transport(OTLPSpanExporter()) is RequestsHTTPTransport
    assert _OTLPHTTPClient.__init__ is original
    assert registry.state_of(otlp_http_urllib3.PATCH)[0] is PatchState.NOT_INSTALLED


def test_a_failure_deciding_keeps_requests(monkeypatch, uninstalled):
    """Any doubt: requests stays, and the exporter is built."""
    def broken(client: Any) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(otlp_http_urllib3, "requests_kept_because", broken)
    assert _transport(_built(endpoint="http://127.0.0.1:4318/v1/traces")) \
        is RequestsHTTPTransport


# --------------------------------------------------------------------------- end to end


_TRANSPORTS = """
import gc, json
from opentelemetry import trace
from opentelemetry.exporter.otlp.common.http import _OTLPHTTPClient
with trace.get_tracer("t").start_as_current_span("under-instrument"):
    pass
clients = [o for o in gc.get_objects() if isinstance(o, _OTLPHTTPClient)]
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
print(json.dumps(sorted([c._kind, "urllib3" if isinstance(c._transport, Urllib3HTTPTransport)
                         else type(c._transport).__name__] for c in clients)))
"""


@pytest.mark.parametrize(("switch", "transport"), [
    ("true", "urllib3"), ("false", "RequestsHTTPTransport")])
def test_under_opentelemetry_instrument(run_instrumented, switch, transport):
    """Spans, metrics and logs exporters configured by the distro, and spans arrive."""
    from tests.support.receiver import RecordingReceiver

    with RecordingReceiver(grpc_port=None) as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
               "OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3": switch}
        done = run_instrumented(_TRANSPORTS, env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == [
            ["logs", transport], ["metrics", transport], ["spans", transport]]
        receiver.wait_for_spans(lambda spans: any(s.name == "under-instrument" for s in spans))
