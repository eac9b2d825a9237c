"""CurlCffiInstrumentor: CLIENT spans, redaction and traceparent, against a local server."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import curl_cffi.requests
import pytest
from curl_cffi.requests import AsyncSession, Session
from curl_cffi.requests.headers import Headers
from opentelemetry import trace
from opentelemetry.instrumentation.utils import (
    suppress_http_instrumentation,
    suppress_instrumentation,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS
from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
from clstock_otel_distro.instrumentors._machinery.values import error_type
from clstock_otel_distro.instrumentors.curl_cffi import CurlCffiInstrumentor
from clstock_otel_distro.semconv import (
    ERROR_TYPE,
    HTTP_CLIENT_REQUEST_DURATION,
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
    SERVER_ADDRESS,
    SERVER_PORT,
    URL_FULL,
    URL_SCHEME,
)
from tests.support.otel_testing import Telemetry, instrumented
from utils.yahoo_session import YahooReplaySession


class _Recorder(BaseHTTPRequestHandler):
    """Answers 200, or 404 under /missing and 500 under /broken; records each request."""

    def do_GET(self):
        self.server.received.append((self.command, self.path,
                                     {k.lower(): v for k, v in self.headers.items()}))
        status = 404 if self.path.startswith("/missing") else (
            500 if self.path.startswith("/broken") else 200)
        body = b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.received = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def base(server, monkeypatch):
    """The server's base URL, with its request log emptied."""
    monkeypatch.delenv(OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS, raising=False)
    monkeypatch.delenv("OTEL_PYTHON_EXCLUDED_URLS", raising=False)
    server.received.clear()
    return f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def telemetry():
    pipeline = Telemetry.create()
    yield pipeline
    pipeline.shutdown()


@pytest.fixture
def traced(telemetry, base):
    with instrumented(CurlCffiInstrumentor(), **telemetry.kwargs) as instrumentor:
        yield instrumentor


def _traceparent(span) -> str:
    context = span.get_span_context() if hasattr(span, "get_span_context") else span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_request_span(telemetry, traced, server, base):
    """A GET: CLIENT span named GET, stable HTTP attributes, child of the current span."""
    with telemetry.tracer().start_as_current_span("request") as parent:
        response = Session().get(f"{base}/quote?symbol=7203")
    assert response.status_code == 200

    span = telemetry.span("GET")
    assert span.kind is SpanKind.CLIENT
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {
        HTTP_REQUEST_METHOD: "GET", URL_FULL: f"{base}/quote?symbol=7203",
        SERVER_ADDRESS: "127.0.0.1", SERVER_PORT: server.server_port, URL_SCHEME: "http",
        HTTP_RESPONSE_STATUS_CODE: 200}
    assert span.status.status_code is StatusCode.UNSET
    assert server.received[-1][2]["traceparent"] == _traceparent(span)


@pytest.mark.parametrize("headers", [
    {"X-Client": "clstock", "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    Headers({"X-Client": "clstock"}),
    [("X-Client", "clstock")],
    ["X-Client: clstock"],
], ids=["dict", "Headers", "pairs", "lines"])
def test_traceparent_injected_without_touching_the_callers_headers(
        telemetry, traced, server, base, headers):
    """The caller's headers object is unchanged; the server gets it plus our traceparent."""
    before = list(headers.items()) if hasattr(headers, "items") else list(headers)
    Session().get(f"{base}/quote", headers=headers)
    after = list(headers.items()) if hasattr(headers, "items") else list(headers)
    assert after == before

    received = server.received[-1][2]
    assert received["x-client"] == "clstock"
    assert received["traceparent"] == _traceparent(telemetry.span("GET"))


def test_url_full_is_redacted(telemetry, traced, server, base):
    """Credentials and secret query values are redacted in url.full, not in the request."""
    url = base.replace("http://", "http://ana:s3cret@") + (
        "/quote?crumb=abc&symbol=7203&Signature=sig&api_key=k")
    Session().get(url, params={"token": "t0k3n", "lang": "en"})

    assert telemetry.span("GET").attributes[URL_FULL] == base.replace(
        "http://", "http://REDACTED:REDACTED@") + (
        "/quote?crumb=REDACTED&symbol=7203&Signature=REDACTED&api_key=REDACTED"
        "&token=REDACTED&lang=en")
    assert server.received[-1][1] == (
        "/quote?crumb=abc&symbol=7203&Signature=sig&api_key=k&token=t0k3n&lang=en")


def test_url_full_keeps_harmless_urls_as_sent(telemetry, traced, base):
    """Redaction (the span processor's) touches only secrets: the rest is byte for byte."""
    Session().get(f"{base}/v8/finance/chart/7203.T?range=1y&events=div%2Csplit")
    Session().get(f"{base}/quote?CRUMB=a&Key=b;symbol=7203")
    assert [span.attributes[URL_FULL] for span in telemetry.spans()] == [
        f"{base}/v8/finance/chart/7203.T?range=1y&events=div%2Csplit",
        f"{base}/quote?CRUMB=REDACTED&Key=REDACTED;symbol=7203"]


@pytest.mark.parametrize("status", [404, 500])
def test_error_status_marks_the_span(telemetry, traced, base, status):
    """A status >= 400 is an ERROR span with error.type the status; no exception raised."""
    path = "/missing" if status == 404 else "/broken"
    assert Session().get(f"{base}{path}").status_code == status
    span = telemetry.span("GET")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[HTTP_RESPONSE_STATUS_CODE] == status
    assert span.attributes[ERROR_TYPE] == str(status)
    assert span.events == ()


def test_non_standard_method(telemetry, traced, base):
    """A method outside the HTTP spec: span "HTTP", method _OTHER plus the original."""
    assert Session().request("PURGE", f"{base}/cache").status_code == 501
    span = telemetry.span("HTTP")
    assert span.attributes[HTTP_REQUEST_METHOD] == "_OTHER"
    assert span.attributes[HTTP_REQUEST_METHOD_ORIGINAL] == "PURGE"


def test_connection_error_propagates_unchanged(telemetry, traced):
    """A refused connection: curl_cffi's exception reaches the caller; the span records it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    session = Session()
    with pytest.raises(curl_cffi.requests.RequestsError) as raised:
        session.get(f"http://127.0.0.1:{port}/quote", timeout=5)

    span = telemetry.span("GET")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == error_type(raised.value)
    assert span.attributes[ERROR_TYPE].startswith("curl_cffi.")
    assert [event.name for event in span.events] == ["exception"]
    assert HTTP_RESPONSE_STATUS_CODE not in span.attributes


def test_async_session_request(telemetry, traced, server, base):
    """AsyncSession.request stays a coroutine function and is traced the same way."""
    assert inspect.iscoroutinefunction(AsyncSession.request)

    async def fetch():
        async with AsyncSession() as session:
            return await session.post(f"{base}/orders", json={"symbol": "7203"})

    assert asyncio.run(fetch()).status_code == 200
    span = telemetry.span("POST")
    assert span.kind is SpanKind.CLIENT
    assert span.attributes[HTTP_REQUEST_METHOD] == "POST"
    assert server.received[-1][2]["traceparent"] == _traceparent(span)


def test_module_level_functions_and_get_methods(telemetry, traced, base):
    """curl_cffi.requests.get and Session.get reach the wrapped Session.request."""
    # In curl_cffi 0.17 get/post are methods calling self.request (older versions:
    # partialmethod(request, ...), which the instrumentation rebinds: see test_machinery).
    assert inspect.isfunction(vars(Session)["get"])
    curl_cffi.requests.get(f"{base}/a")
    Session().get(f"{base}/b")
    assert telemetry.names() == ["GET", "GET"]


def test_replay_session_subclass_makes_one_span(telemetry, traced, server, base):
    """ClStock's YahooReplaySession overrides request(): still one span, rewritten URL."""
    session = YahooReplaySession(base)
    session.get("https://query1.finance.yahoo.com/v7/finance/quote?symbols=7203.T&crumb=abc")
    span = telemetry.span("GET")
    assert span.attributes[URL_FULL] == (
        f"{base}/v7/finance/quote?symbols=7203.T&crumb=REDACTED")
    assert server.received[-1][1] == "/v7/finance/quote?symbols=7203.T&crumb=abc"


def test_excluded_urls(telemetry, server, base, monkeypatch):
    """OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS: matching requests get no span and no header."""
    monkeypatch.setenv(OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS, "/health,/metrics$")
    with instrumented(CurlCffiInstrumentor(), **telemetry.kwargs):
        assert Session().get(f"{base}/health").status_code == 200
        Session().get(f"{base}/quote")
    assert "traceparent" not in server.received[0][2]
    assert [s.attributes[URL_FULL] for s in telemetry.spans()] == [f"{base}/quote"]


def test_uninstrument_restores_originals(telemetry, base):
    """Session.request and AsyncSession.request are the original functions again."""
    originals = [vars(Session)["request"], vars(AsyncSession)["request"]]
    with instrumented(CurlCffiInstrumentor(), **telemetry.kwargs):
        assert all(is_traced(vars(cls)["request"]) for cls in (Session, AsyncSession))
    assert [vars(Session)["request"], vars(AsyncSession)["request"]] == originals
    assert vars(Session)["request"] is originals[0]
    Session().get(f"{base}/quote")
    assert telemetry.spans() == []


def test_double_instrument_makes_one_span(telemetry, traced, base):
    """Instrumenting twice: one span per request."""
    CurlCffiInstrumentor().instrument(**telemetry.kwargs)
    Session().get(f"{base}/quote")
    assert telemetry.names() == ["GET"]


@pytest.mark.parametrize("suppress", [suppress_instrumentation, suppress_http_instrumentation])
def test_suppressed(telemetry, traced, server, base, suppress):
    """Suppressed (all or HTTP only): no span, no header, no metric."""
    with suppress():
        Session().get(f"{base}/quote")
    assert telemetry.spans() == []
    assert "traceparent" not in server.received[-1][2]
    assert telemetry.points(HTTP_CLIENT_REQUEST_DURATION) == []


def test_not_recording_still_propagates(server, base):
    """Sampled out: no span is recorded, but the context still travels, sampled flag off."""
    dropped = Telemetry.create(sampler=ALWAYS_OFF)
    with instrumented(CurlCffiInstrumentor(), **dropped.kwargs):
        Session().get(f"{base}/quote")
    assert dropped.spans() == []
    flags = int(server.received[-1][2]["traceparent"].rsplit("-", 1)[1], 16)
    assert flags & TraceFlags.SAMPLED == 0


def test_non_sampled_parent_propagates_the_parent(telemetry, traced, server, base):
    """Under a non-sampled parent (fast path), the parent's own context is propagated."""
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True,
                                          trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    with trace.use_span(parent):
        Session().get(f"{base}/quote")
    assert telemetry.spans() == []
    assert server.received[-1][2]["traceparent"] == _traceparent(parent)
    assert len(telemetry.points(HTTP_CLIENT_REQUEST_DURATION)) == 1


def test_custom_tracer_provider(telemetry, base):
    """Spans go to the provider given to instrument()."""
    other = Telemetry.create()
    with instrumented(CurlCffiInstrumentor(), tracer_provider=other.tracer_provider):
        Session().get(f"{base}/quote")
    assert telemetry.spans() == [] and other.names() == ["GET"]


def test_metrics_recorded(telemetry, traced, server, base):
    """http.client.request.duration with the stable attributes, error.type for >= 400."""
    Session().get(f"{base}/quote")
    Session().get(f"{base}/missing")
    common = {HTTP_REQUEST_METHOD: "GET", SERVER_ADDRESS: "127.0.0.1",
              SERVER_PORT: server.server_port, URL_SCHEME: "http"}
    assert sorted(telemetry.points(HTTP_CLIENT_REQUEST_DURATION),
                  key=lambda p: p[0][HTTP_RESPONSE_STATUS_CODE]) == [
        ({**common, HTTP_RESPONSE_STATUS_CODE: 200}, 1),
        ({**common, HTTP_RESPONSE_STATUS_CODE: 404, ERROR_TYPE: "404"}, 1),
    ]
