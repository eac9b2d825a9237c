"""What the delivery tests share: a steady load, a scripted collector front, trace shapes."""

from __future__ import annotations

import collections
import http.client
import http.server
import threading
import time
from collections.abc import Callable

import requests

from clstock_otel_distro.tools.devstack import free_port
from tests.reliability.conftest import spans_of, traceparent
from tests.support.receiver import RecordingReceiver

PREDICT = "/api/v1/predict/7203"


class SteadyLoad:
    """GETs of one path at a steady rate on a background thread, bounded in count and time.

    ``sent`` holds the trace id of every request answered 200.
    """

    def __init__(self, url: str, rate: float = 10.0, max_requests: int = 2000,
                 max_seconds: float = 120.0) -> None:
        self.url = url
        self.interval = 1.0 / rate
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.sent: list[str] = []
        self.failures: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="steady-load")

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(60)
        return list(self.sent)

    def _run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        while (not self._stop.is_set() and len(self.sent) < self.max_requests
               and time.monotonic() < deadline):
            trace_id, headers = traceparent()
            try:
                answer = session.get(self.url, headers=headers, timeout=30)
            except requests.RequestException as error:
                self.failures.append(error)
            else:
                if answer.status_code == 200:
                    self.sent.append(trace_id)
                else:
                    self.failures.append(answer.status_code)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        session.close()


def shape_of(receiver: RecordingReceiver, url: str) -> collections.Counter:
    """The span names one lone request makes (the first warms the caches)."""
    shape: collections.Counter = collections.Counter()
    for _ in range(2):
        trace_id, headers = traceparent()
        assert requests.get(url, headers=headers, timeout=30).status_code == 200
        receiver.wait_for_spans(lambda spans, t=trace_id: any(
            s.trace_id == t and s.kind == "SERVER" for s in spans), timeout=20)
        shape = collections.Counter(s.name for s in spans_of(receiver, [trace_id]))
    return shape


def _received(receiver: RecordingReceiver, sent: list[str]) -> dict[str, collections.Counter]:
    by_trace: dict[str, collections.Counter] = {t: collections.Counter() for t in sent}
    for span in spans_of(receiver, sent):
        by_trace[span.trace_id][span.name] += 1
    return by_trace


def incomplete_traces(receiver: RecordingReceiver, sent: list[str],
                      shape: collections.Counter) -> dict[str, collections.Counter]:
    """The traces of ``sent`` with a span of ``shape`` missing, and what arrived of them."""
    return {t: got for t, got in _received(receiver, sent).items() if shape - got}


def duplicated_traces(receiver: RecordingReceiver, sent: list[str],
                      shape: collections.Counter) -> list[str]:
    """The traces of ``sent`` with a span received twice.

    Delivery is at least once, as the Collector's is: a batch the collector stored but
    whose answer was cut by its stop is sent again.
    """
    return [t for t, got in _received(receiver, sent).items() if got - shape]


def wait_complete(receiver: RecordingReceiver, sent: list[str], shape: collections.Counter,
                  timeout: float) -> dict[str, collections.Counter]:
    """Wait until every span of every trace of ``sent`` arrived; the incomplete traces at
    the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not incomplete_traces(receiver, sent, shape):
            return {}
        time.sleep(0.25)
    return incomplete_traces(receiver, sent, shape)


class ScriptedFront:
    """An OTLP/HTTP front on 127.0.0.1 answering each request through ``script``, and
    passing accepted requests on to a RecordingReceiver.

    ``script(body) -> (status, headers)``; a 2xx status forwards the body. Every request
    is recorded as (monotonic time, status, body).
    """

    def __init__(self, receiver: RecordingReceiver,
                 script: Callable[[bytes], tuple[int, dict[str, str]]]) -> None:
        self.receiver = receiver
        self.script = script
        self.requests: list[tuple[float, int, bytes]] = []
        self._lock = threading.Lock()
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with front._lock:
                    status, headers = front.script(body)
                    front.requests.append((time.monotonic(), status, body))
                if 200 <= status < 300:
                    connection = http.client.HTTPConnection("127.0.0.1",
                                                            front.receiver.http_port, timeout=10)
                    connection.request("POST", self.path, body,
                                       {"Content-Type": "application/x-protobuf"})
                    forwarded = connection.getresponse()
                    forwarded.read()
                    connection.close()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def trace_requests(self) -> list[tuple[float, int, bytes]]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
