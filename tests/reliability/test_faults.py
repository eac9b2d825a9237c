"""ClStock keeps serving when its collector is absent, dies, comes back, or hangs.

Each test runs the API under ``opentelemetry-instrument`` with the distro's defaults
(OTLP over HTTP, batch every second) against a receiver that misbehaves. Requests
must all succeed and none may wait on the export: the OTLP exporter's timeout is
10 s and its first retry comes after about 1 s, so a request held up by an export
would take that long, far above the bounds asserted here (while a request normally
takes milliseconds). Export must resume once the receiver is back, memory must stay
bounded while nothing can be exported, and the process must exit promptly on SIGTERM
(within OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT, 1 s) instead of waiting out the
exporter's retries (8 to 15 s with upstream's exit path).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from clstock_otel_distro.tools.devstack import free_port
from tests.reliability.conftest import (
    QUEUE_FULL,
    rss_kib,
    stop_timed,
    timed_get,
    wait_for_traces,
)
from tests.support.processes import GRACEFUL_EXIT_CODES
from tests.support.receiver import RecordingReceiver

# Far below the exporter's 10 s timeout (what a request stuck behind an export to the
# blackhole would take), far above a request (milliseconds, ~0.2 s at worst under the
# 8-thread bursts). Waiting on the ~1 s retries with no receiver shows in the medians.
MAX_REQUEST_SECONDS = 3.0
# The exit budget is 1 s; upstream's exit takes 8 s or more with the collector down.
MAX_EXIT_SECONDS = 2.0
PATHS = ("/health", "/api/v1/predict/7203")
SHUTDOWN_GAVE_UP = "Telemetry not handed over within OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT"
# What was lost at exit is reported: by the bounded shutdown when an exporter is still
# busy, or by the durable delivery, which counts the batches it kept for an absent
# collector and could not keep further (no spool).
EXIT_DROPPED = "telemetry dropped before reaching the collector"


def reports_loss(log: str) -> bool:
    return SHUTDOWN_GAVE_UP in log or EXIT_DROPPED in log


def serve(url: str, count: int) -> tuple[list[str], list[float]]:
    """``count`` sequential requests alternating PATHS; asserts each is a 200."""
    trace_ids, seconds = [], []
    with requests.Session() as session:
        for index in range(count):
            trace_id, status, took = timed_get(session, url + PATHS[index % len(PATHS)])
            assert status == 200
            trace_ids.append(trace_id)
            seconds.append(took)
    return trace_ids, seconds


def burst(url: str, path: str, count: int, threads: int = 8) -> list[float]:
    """``count`` concurrent GETs of ``path`` on keep-alive connections; their durations."""
    remaining = [count]
    lock = threading.Lock()
    seconds: list[float] = []
    failures: list[object] = []

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                try:
                    _, status, took = timed_get(session, url + path)
                except requests.RequestException as error:
                    failures.append(error)
                    return
                if status != 200:
                    failures.append(status)
                seconds.append(took)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert failures == []
    assert len(seconds) == count
    return seconds


def api_env(endpoint: str, replay, **extra: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "CLSTOCK_YAHOO_URL": replay.url,
            "OTEL_PYTHON_LOG_LEVEL": "info", **extra}


def test_receiver_absent_at_start_then_up(launch, replay):
    """No receiver at start: requests are unaffected; once one listens, spans arrive."""
    port = free_port()
    api = launch("absent-at-start", env=api_env(f"http://127.0.0.1:{port}", replay,
                                                  OTEL_SERVICE_NAME="clstock-absent"))
    _, while_absent = serve(api.url, 30)
    assert max(while_absent) < MAX_REQUEST_SECONDS

    with RecordingReceiver(http_port=port, grpc_port=None) as receiver:
        trace_ids, with_receiver = serve(api.url, 30)
        # The exporter may be in a retry backoff (1, 2, 4 s): give it its 10 s.
        spans = wait_for_traces(receiver, trace_ids, timeout=20)
        assert {s.service_name for s in spans} == {"clstock-absent"}
        # Requests took as long without a receiver as with one (the baseline).
        assert statistics.median(while_absent) <= 3 * statistics.median(with_receiver) + 0.05
        status, took = stop_timed(api)
    assert status in GRACEFUL_EXIT_CODES
    assert took < MAX_EXIT_SECONDS


def test_receiver_killed_mid_run_and_restarted(launch, replay):
    """The receiver dies and comes back on the same port: serving never stops, export resumes."""
    port = free_port()
    api = launch("receiver-restarted", env=api_env(f"http://127.0.0.1:{port}", replay,
                                                     OTEL_SERVICE_NAME="clstock-restart"))
    with RecordingReceiver(http_port=port, grpc_port=None) as first:
        before, baseline = serve(api.url, 20)
        wait_for_traces(first, before)

    _, while_down = serve(api.url, 30)
    assert max(while_down) < MAX_REQUEST_SECONDS
    assert statistics.median(while_down) <= 3 * statistics.median(baseline) + 0.05

    with RecordingReceiver(http_port=port, grpc_port=None) as second:
        after, _ = serve(api.url, 20)
        spans = wait_for_traces(second, after, timeout=20)
        assert {s.service_name for s in spans} == {"clstock-restart"}
        assert api.stop() in GRACEFUL_EXIT_CODES


def test_blackhole_bounded_latency_memory_and_exit(launch, replay, blackhole):
    """A collector that never answers: requests stay fast, memory plateaus, exit is prompt."""
    # With the ASGI internal spans back, /health makes 3 spans: a cheap way to fill the queue.
    api = launch("blackhole", env=api_env(blackhole.endpoint, replay,
                                          OTEL_SERVICE_NAME="clstock-blackhole",
                                          OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS="true"))
    pid = api.process.pid
    burst(api.url, "/health", 300)
    before = rss_kib(pid)
    # 3 spans per request: 9000 spans, more than the 8192 the batch queue holds.
    filling = burst(api.url, "/health", 3000)
    full = rss_kib(pid)
    more = burst(api.url, "/health", 1500)
    after = rss_kib(pid)

    assert blackhole.accepted >= 1, "the exporter never reached the blackhole"
    assert max(filling + more) < MAX_REQUEST_SECONDS
    assert QUEUE_FULL in api.log_text(), "the queue never filled: the test proves nothing"
    # The whole queue costs a few KB per span (about 25 MB); bound it generously...
    assert full - before < 64 * 1024, (before, full)
    # ...and once full it stops growing: 4500 more spans would add ~13 MB if it grew.
    assert after - full < 4 * 1024, (full, after)

    status, took = stop_timed(api)
    assert status in GRACEFUL_EXIT_CODES
    assert took < MAX_EXIT_SECONDS, f"exit took {took:.2f} s with the collector hanging"
    assert SHUTDOWN_GAVE_UP in api.log_text()
    print(f"\nblackhole: RSS {before // 1024} MB, +{(full - before) / 1024:.1f} MB with the "
          f"queue full, +{(after - full) / 1024:.1f} MB after 4500 more spans; slowest "
          f"request {max(filling + more) * 1000:.0f} ms; exit in {took:.2f} s")


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_exit_with_receiver_absent(launch, replay, protocol):
    """SIGTERM with spans queued and nothing listening: the process ends within 2 s."""
    port = free_port()
    api = launch(f"exit-absent-{protocol.replace('/', '-')}", env=api_env(
        f"http://127.0.0.1:{port}", replay, OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        OTEL_SERVICE_NAME="clstock-exit-absent"))
    serve(api.url, 20)
    status, took = stop_timed(api)
    assert status in GRACEFUL_EXIT_CODES
    assert took < MAX_EXIT_SECONDS, f"exit took {took:.2f} s with the collector absent"
    assert reports_loss(api.log_text())


_EXITING_PROGRAM = """
import sys, time
from opentelemetry import trace
with trace.get_tracer("exit-test").start_as_current_span("last-span"):
    pass
print("EXITING", time.monotonic(), flush=True)
sys.exit(0)  # the normal path: atexit, as a gunicorn worker leaving its loop
"""


@pytest.mark.parametrize("target", ["absent", "blackhole", "receiver"])
def test_normal_exit_is_bounded(receiver, blackhole, target):
    """sys.exit under opentelemetry-instrument: bounded with no collector, delivered with one."""
    endpoint = {"absent": f"http://127.0.0.1:{free_port()}", "blackhole": blackhole.endpoint,
                "receiver": receiver.http_endpoint}[target]
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": f"exit-{target}",
                "OTEL_PYTHON_LOG_LEVEL": "info"})
    result = subprocess.run([str(Path(sys.executable).parent / "opentelemetry-instrument"),
                             sys.executable, "-c", _EXITING_PROGRAM], env=env, timeout=60,
                            capture_output=True, text=True, check=False)
    exited = time.monotonic()
    assert result.returncode == 0, result.stderr
    marker = float(result.stdout.split("EXITING ")[1].split()[0])
    assert exited - marker < MAX_EXIT_SECONDS, f"{exited - marker:.2f} s to exit"
    if target == "receiver":
        spans = [s for s in receiver.spans() if s.service_name == "exit-receiver"]
        assert [s.name for s in spans] == ["last-span"]
        assert not reports_loss(result.stderr)
    else:
        assert reports_loss(result.stderr)
