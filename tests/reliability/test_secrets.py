"""No credential planted in a request reaches a span or one of our log lines.

The API and the data service run traced, with HTTP header capture turned on for
every header (as an operator debugging might). Secrets are planted everywhere they
travel in practice: ``Authorization``, ``Cookie`` and ``X-API-Key`` headers and
``api_key``/``token`` query parameters on requests the API receives; user:password
and an ``api_key`` in the data-service URL the API calls (so in the client span's
``url.full``, the data service's ``url.query`` and the exception the failed call
raises); and a bearer token in the OTLP headers. Every exported span, attribute,
event and status, and both processes' logs, are searched for each secret; the
redacted forms are the HTTP semantic conventions' (``REDACTED``) and upstream's
header masking (``[REDACTED]``).
"""

from __future__ import annotations

import secrets

import pytest
import requests

from tests.integration.conftest import otlp_env
from tests.reliability.conftest import spans_of, traceparent, wait_for_traces
from tests.support.processes import GRACEFUL_EXIT_CODES

SECRETS = {name: f"{name}-{secrets.token_hex(8)}" for name in (
    "bearer", "cookie", "apikeyheader", "querykey", "querytoken", "password", "outkey", "otlp")}
CAPTURE_ALL = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST": ".*",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE": ".*",
    # A well-formed header the exporter sends, and a malformed entry that is logged.
    "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {SECRETS['otlp']},no-equals-here",
}


@pytest.fixture(scope="module")
def stack(launch, receiver, replay):
    """The data service, and an API reaching it through a URL holding credentials."""
    data = launch("secrets-data", "app.data_service:app", env={
        **otlp_env(receiver), **CAPTURE_ALL, "OTEL_SERVICE_NAME": "clstock-secrets-data",
        "CLSTOCK_YAHOO_URL": replay.url})
    host = data.url.removeprefix("http://")
    # ClStock appends "/prices/<symbol>" to this base: the query swallows the path, so
    # the data service answers 404 and the API's fetch fails (after sending the secrets).
    base = f"http://svc:{SECRETS['password']}@{host}/?api_key={SECRETS['outkey']}&next="
    api = launch("secrets-api", env={
        **otlp_env(receiver), **CAPTURE_ALL, "OTEL_SERVICE_NAME": "clstock-secrets-api",
        "CLSTOCK_DATA_SERVICE_URL": base})
    return api, data


def _everything(span) -> str:
    """Every string a span carries, for searching."""
    parts = [span.name, span.status_message, repr(span.attributes), repr(span.resource)]
    parts += [f"{e.name} {e.attributes!r}" for e in span.events]
    return "\n".join(parts)


def _send(api, path: str) -> str:
    trace_id, headers = traceparent()
    headers.update({
        "Authorization": f"Bearer {SECRETS['bearer']}",
        "Cookie": f"session={SECRETS['cookie']}; theme=dark",
        "X-API-Key": SECRETS["apikeyheader"],
        "X-Request-Id": "not-a-secret",
    })
    requests.get(api.url + path, headers=headers, timeout=60)
    return trace_id


def test_no_secret_in_spans_or_logs(stack, receiver):
    """Headers masked, query values and URL credentials redacted, logs clean."""
    api, data = stack
    inbound = _send(api, f"/health?api_key={SECRETS['querykey']}&token={SECRETS['querytoken']}"
                         "&symbol=7203")
    outbound = _send(api, "/api/v1/predict/7203")
    wait_for_traces(receiver, [inbound, outbound])
    # Stopped before looking: each flushes what it still holds on its way out.
    assert api.stop() in GRACEFUL_EXIT_CODES
    assert data.stop() in GRACEFUL_EXIT_CODES
    spans = spans_of(receiver, [inbound, outbound])

    # Nothing secret anywhere: not in one attribute, event, status or resource.
    for span in spans:
        text = _everything(span)
        leaked = [name for name, value in SECRETS.items() if value in text]
        assert leaked == [], (leaked, span.name, text)
    for service in (api, data):
        log = service.log_text()
        assert [name for name, value in SECRETS.items() if value in log] == [], log

    # Inbound: header capture is on, credentials masked; query values redacted.
    (server,) = [s for s in spans if s.trace_id == inbound and s.kind == "SERVER"]
    assert server.attributes["url.query"] == "api_key=REDACTED&token=REDACTED&symbol=7203"
    assert server.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    assert server.attributes["http.request.header.cookie"] == ("[REDACTED]",)
    assert server.attributes["http.request.header.x_api_key"] == ("[REDACTED]",)
    assert server.attributes["http.request.header.x_request_id"] == ("not-a-secret",)

    # Outbound: the API's client span, the data service's server span, the error.
    (client,) = [s for s in spans if s.trace_id == outbound and s.kind == "CLIENT"
                 and s.service_name == "clstock-secrets-api"]
    url = client.attributes["url.full"]
    assert url.startswith("http://REDACTED:REDACTED@127.0.0.1:")
    assert "?api_key=REDACTED&next=/prices/7203&period=1y" in url
    assert client.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    (remote,) = [s for s in spans if s.trace_id == outbound and s.kind == "SERVER"
                 and s.service_name == "clstock-secrets-data"]
    assert remote.attributes["url.query"].startswith("api_key=REDACTED&")
    assert remote.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    errors = [e for s in spans if s.trace_id == outbound for e in s.events
              if e.name == "exception" and "Request to" in e.attributes.get(
                  "exception.stacktrace", "")]
    assert errors, "the failed fetch recorded no exception mentioning its URL"
    assert "http://REDACTED:REDACTED@" in errors[0].attributes["exception.stacktrace"]


def test_long_values_are_cut(stack, receiver, launch, replay):
    """A 10 000-character query is recorded cut to the 4096-character default limit."""
    api = launch("secrets-long", env={**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url,
                                      "OTEL_SERVICE_NAME": "clstock-long"})
    trace_id, headers = traceparent()
    answer = requests.get(api.url + "/health?pad=" + "x" * 10_000, headers=headers, timeout=30)
    assert answer.status_code == 200
    (server,) = [s for s in wait_for_traces(receiver, [trace_id]) if s.kind == "SERVER"]
    assert len(server.attributes["url.query"]) == 4096
    assert server.attributes["url.query"].startswith("pad=xxx")
