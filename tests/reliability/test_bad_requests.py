"""Bad requests get exactly the answer they get without instrumentation.

A plain API (``uvicorn app.main:app``) and a traced one (the same under
``opentelemetry-instrument``) run side by side on the same market replay. Each bad
request (unknown and malformed symbols, out-of-range and mistyped ``top_n``, bad
periods, malformed and oversized JSON, wrong methods, unknown paths) is sent to both:
same status, same body, same content type. The traced API also records each one as a
server span carrying that status.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.integration.conftest import otlp_env
from tests.reliability.conftest import traceparent, wait_for_traces

HUGE_JSON = json.dumps({"symbols": ["7203"] * 200_000})  # ~1.6 MB, over the 50-symbol cap
BAD_REQUESTS = [
    ("GET", "/api/v1/predict/9999", None),                        # unknown symbol: 404
    ("GET", "/api/v1/predict/bad%20symbol!", None),              # pattern mismatch: 422
    ("GET", "/api/v1/predict/" + "7" * 11, None),                 # too long: 422
    ("GET", "/api/v1/predict/6502", None),                        # delisted, no data: 502
    ("GET", "/api/v1/recommendations?top_n=1000000", None),       # huge top_n: 422
    ("GET", "/api/v1/recommendations?top_n=-1", None),
    ("GET", "/api/v1/recommendations?top_n=abc", None),           # wrong type
    ("GET", "/api/v1/recommendations?top_n=2&junk=" + "x" * 6000, None),  # ignored: 200
    ("GET", "/api/v1/stock/7203/data?period=forever", None),
    ("GET", "/api/v1/stocks?symbols=", None),
    ("GET", "/api/v1/stocks?symbols=7203,0000", None),
    ("POST", "/api/v1/batch/predict", b'{"symbols": ["7203", '),   # malformed JSON
    ("POST", "/api/v1/batch/predict", b"symbols=7203"),           # not JSON at all
    ("POST", "/api/v1/batch/predict", b'{"symbols": []}'),
    ("POST", "/api/v1/batch/predict", b'{"symbols": "7203"}'),    # wrong type
    ("POST", "/api/v1/batch/predict", HUGE_JSON.encode()),        # huge body
    ("POST", "/api/v1/batch/predict", b'{"symbols": ["' + b"A" * 2_000_000 + b'"'),  # huge, bad
    ("POST", "/api/v1/train", b'{"symbols": ["0000"]}'),
    ("POST", "/api/v1/train", b'{"period": 5}'),
    ("DELETE", "/health", None),                                   # wrong method: 405
    ("GET", "/api/v1/no-such-endpoint", None),                     # 404
]


@pytest.fixture(scope="module")
def apis(launch, receiver, replay):
    """The same API twice: plain, and traced into the receiver."""
    plain = launch("plain-api", instrumented=False, env={"CLSTOCK_YAHOO_URL": replay.url})
    traced = launch("traced-api", env={**otlp_env(receiver), "CLSTOCK_YAHOO_URL": replay.url,
                                       "OTEL_SERVICE_NAME": "clstock-bad-requests"})
    return plain, traced


def _send(base: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
          ) -> requests.Response:
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    return requests.request(method, base + path, data=body, headers=headers, timeout=60)


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS,
                         ids=[f"{m} {p[:50]} {len(b or b'')}" for m, p, b in BAD_REQUESTS])
def test_same_answer_with_and_without_instrumentation(apis, receiver, method, path, body):
    """Status, body and content type are identical; the traced one has a span with that status."""
    plain, traced = apis
    expected = _send(plain.url, method, path, body, {})
    trace_id, headers = traceparent()
    answer = _send(traced.url, method, path, body, headers)
    assert answer.status_code == expected.status_code
    assert answer.content == expected.content
    assert answer.headers.get("content-type") == expected.headers.get("content-type")

    spans = wait_for_traces(receiver, [trace_id])
    (server,) = [s for s in spans if s.kind == "SERVER"]
    assert server.attributes["http.response.status_code"] == expected.status_code
    assert server.status_code == ("ERROR" if expected.status_code >= 500 else "UNSET")
