"""Reliability harness: ClStock under ``opentelemetry-instrument`` facing faults.

The integration harness's ``receiver``, ``launch`` and ``replay`` fixtures are reused
as they are. Added here: ``start`` (any ServiceProcess, e.g. gunicorn, stopped at the
end of the module), a TCP blackhole standing in for a collector that accepts
connections and never answers, requests sent in a trace of their own, and the
process's resident memory.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import requests

from clstock_otel_distro.tools.devstack import ServiceProcess
from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from tests.integration.conftest import launch, receiver, replay  # noqa: F401 - fixtures
from tests.support.receiver import RecordingReceiver

# The SDK's warning when a span is dropped because the batch queue is full.
QUEUE_FULL = "Queue full, dropping"


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name="blackhole-accept")
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    @property
    def accepted(self) -> int:
        return len(self._connections)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._connections.append(connection)  # held open, never read nor answered

    def close(self) -> None:
        self._server.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    """A collector that accepts connections and never answers."""
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Iterator[Callable[[ServiceProcess], ServiceProcess]]:
    """Start any ServiceProcess (log in the module's temp dir); all stopped at module end."""
    started: list[ServiceProcess] = []
    logs = tmp_path_factory.mktemp("service-logs")

    def _start(service: ServiceProcess, timeout: float = 30.0) -> ServiceProcess:
        service.log_path = logs / f"{service.name}-{len(started)}.log"
        started.append(service)
        return service.start(timeout)

    yield _start
    for service in reversed(started):
        service.stop()


def traceparent() -> tuple[str, dict[str, str]]:
    """A new trace id and the W3C header that makes a request start that trace."""
    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def timed_get(session: requests.Session, url: str, **kwargs) -> tuple[str, int, float]:
    """GET ``url`` in a trace of its own: (trace id, status, seconds it took)."""
    trace_id, headers = traceparent()
    headers.update(kwargs.pop("headers", {}))
    started = time.perf_counter()
    answer = session.get(url, headers=headers, timeout=30, **kwargs)
    return trace_id, answer.status_code, time.perf_counter() - started


def spans_of(otlp: RecordingReceiver, trace_ids: Sequence[str] | set[str]) -> list[ReceivedSpan]:
    """The received spans of the given traces."""
    wanted = set(trace_ids)
    return [s for s in otlp.spans() if s.trace_id in wanted]


def wait_for_traces(otlp: RecordingReceiver, trace_ids: Sequence[str] | set[str],
                    timeout: float = 20.0) -> list[ReceivedSpan]:
    """Block until a SERVER span of every trace arrived; returns those traces' spans."""
    wanted = set(trace_ids)

    def complete(spans: list[ReceivedSpan]) -> bool:
        return wanted <= {s.trace_id for s in spans if s.kind == "SERVER"}

    otlp.wait_for_spans(complete, timeout=timeout)
    return spans_of(otlp, wanted)


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS from /proc), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))


def stop_timed(service: ServiceProcess) -> tuple[int | None, float]:
    """SIGTERM the service; its exit status and the seconds it took to end."""
    started = time.monotonic()
    status = service.stop(timeout=30)
    return status, time.monotonic() - started
