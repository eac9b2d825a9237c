"""Nothing lost when the collector is away (issue 13).

ClStock under ``opentelemetry-instrument`` serves a steady load while its collector
(a RecordingReceiver) is stopped and started again on the same port: every span of
every request arrives once it is back; a batch refused with 400 is not retried; 503
with ``Retry-After`` is honoured; past the memory bound drops are counted and
reported in one warning; SIGTERMed while the collector is away, the process spools
what waits within its exit budget and the next process sends it, skipping a damaged
file with one warning; two workers sharing a spool send each file once.

Retries are capped at 2 s here (``OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL``) to keep
the suite short; the default is 30 s.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from clstock_otel_distro.sdk.delivery.spool import Spool
from clstock_otel_distro.tools.devstack import free_port
from tests.integration.conftest import FAST_EXPORT
from tests.reliability.conftest import QUEUE_FULL, spans_of, stop_timed
from tests.reliability.delivery_support import (
    PREDICT,
    ScriptedFront,
    SteadyLoad,
    duplicated_traces,
    incomplete_traces,
    shape_of,
    wait_complete,
)
from tests.support.processes import GRACEFUL_EXIT_CODES
from tests.support.receiver import RecordingReceiver

AWAY_SECONDS = 16.0  # longer than the exporter's 10 s timeout
RETRY_ENV = {"OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL": "2000"}
DROPPED = "telemetry dropped before reaching the collector"


def _env(endpoint: str, replay, **extra: str) -> dict[str, str]:
    return {**FAST_EXPORT, **RETRY_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_METRICS_EXPORTER": "none", "CLSTOCK_YAHOO_URL": replay.url, **extra}


def test_collector_away_longer_than_the_timeout_loses_nothing(launch, replay):
    """Stopped for 16 s under a steady load, then back on the same port: every span of
    every request (before, during and after) arrives, none twice."""
    port = free_port()
    receiver = RecordingReceiver(http_port=port, grpc_port=None).start()
    api = launch("durable", env=_env(receiver.http_endpoint, replay))
    shape = shape_of(receiver, api.url + PREDICT)
    with SteadyLoad(api.url + PREDICT, rate=10) as load:
        time.sleep(3)
        receiver.stop()
        time.sleep(AWAY_SECONDS)
        back = RecordingReceiver(http_port=port, grpc_port=None).start()
        time.sleep(3)
    try:
        assert load.failures == []
        assert len(load.sent) >= 100
        # Spans ended before the stop may have reached the first receiver.
        both = _Both(receiver, back)
        missing = wait_complete(both, load.sent, shape, timeout=20)
        assert missing == {}, f"{len(missing)} of {len(load.sent)} traces incomplete"
        # At least once: only a batch in flight at the stop may arrive twice.
        assert len(duplicated_traces(both, load.sent, shape)) <= len(load.sent) // 20
        assert QUEUE_FULL not in api.log_text()
        assert DROPPED not in api.log_text()
    finally:
        back.stop()


class _Both:
    """Two receivers read as one (before and after the restart)."""

    def __init__(self, *receivers: RecordingReceiver) -> None:
        self.receivers = receivers

    def spans(self):
        return [span for receiver in self.receivers for span in receiver.spans()]


@pytest.fixture(scope="module")
def scripted(launch, replay):
    """A traced API behind a front whose answers each test scripts (default: accept)."""
    receiver = RecordingReceiver(grpc_port=None).start()
    front = ScriptedFront(receiver, lambda body: (200, {}))
    api = launch("scripted", env=_env(front.endpoint, replay))
    yield api, front, receiver
    api.stop()
    front.close()
    receiver.stop()


def test_retry_after_is_honoured(scripted):
    """503 Retry-After: 2 three times, then 200: no try comes sooner than asked, and the
    spans of every request arrive."""
    api, front, receiver = scripted
    shape = shape_of(receiver, api.url + PREDICT)
    refusals = {"left": 3}

    def busy_then_accept(body: bytes) -> tuple[int, dict[str, str]]:
        if refusals["left"]:
            refusals["left"] -= 1
            return 503, {"Retry-After": "2"}
        return 200, {}

    first = len(front.trace_requests())
    front.script = busy_then_accept
    try:
        with SteadyLoad(api.url + PREDICT, rate=10) as load:
            time.sleep(8)
    finally:
        front.script = lambda body: (200, {})
    assert load.failures == []
    assert wait_complete(receiver, load.sent, shape, timeout=20) == {}
    requests_seen = front.trace_requests()[first:]
    busy = [index for index, (_, status, _) in enumerate(requests_seen) if status == 503]
    assert len(busy) == 3
    for index in busy:
        asked_at = requests_seen[index][0]
        assert requests_seen[index + 1][0] - asked_at >= 1.9, "a try came before Retry-After"


def test_a_refused_batch_is_not_retried(scripted):
    """400 for one batch: that payload is never sent again, the next ones arrive."""
    api, front, receiver = scripted
    refused: list[bytes] = []

    def refuse_once(body: bytes) -> tuple[int, dict[str, str]]:
        if not refused:
            refused.append(body)
            return 400, {}
        return 200, {}

    first = len(front.trace_requests())
    front.script = refuse_once
    try:
        with SteadyLoad(api.url + PREDICT, rate=10) as load:
            time.sleep(4)
    finally:
        front.script = lambda body: (200, {})
    time.sleep(3)  # room for a retry that must not come
    bodies = [body for _, _, body in front.trace_requests()[first:]]
    assert refused and bodies.count(refused[0]) == 1
    refused_ids = {span.trace_id.hex() for rs in ExportTraceServiceRequest.FromString(
        refused[0]).resource_spans for ss in rs.scope_spans for span in ss.spans}
    accepted = [t for t in load.sent if t not in refused_ids]
    assert accepted and incomplete_traces(receiver, accepted[-5:], shape_of(
        receiver, api.url + PREDICT)) == {}
    assert "HTTP 400" in api.log_text()


def test_past_the_bound_drops_are_counted_and_warned_once(launch, replay):
    """A 30 kB bound and the collector away: new batches are dropped with one warning, and
    every span is accounted for once it is back: received, or counted in
    clstock.telemetry.dropped (which reaches the collector too)."""
    port = free_port()
    receiver = RecordingReceiver(http_port=port, grpc_port=None).start()
    env = _env(receiver.http_endpoint, replay, OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES="30000",
               OTEL_METRICS_EXPORTER="otlp")
    api = launch("bounded", env=env)
    shape = shape_of(receiver, api.url + PREDICT)
    receiver.stop()
    with SteadyLoad(api.url + PREDICT, rate=20) as load:
        time.sleep(6)
    assert load.failures == []
    expected = len(load.sent) * sum(shape.values())
    back = RecordingReceiver(http_port=port, grpc_port=None).start()
    try:
        def dropped_spans() -> float:
            values = [p["value"] for m in back.metrics() if m.name == "clstock.telemetry.dropped"
                      for p in m.data_points if p["attributes"].get("signal") == "spans"
                      and p["attributes"].get("reason") == "buffer_full"]
            return max(values, default=0)  # cumulative: the latest export is the largest

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            received = len(spans_of(back, load.sent))
            if dropped_spans() and received + dropped_spans() >= expected:
                break
            time.sleep(0.5)
        assert dropped_spans() > 0
        assert received + dropped_spans() == expected, (received, dropped_spans(), expected)
        assert api.log_text().count(DROPPED) == 1
    finally:
        back.stop()


def test_sigterm_while_away_spools_and_the_next_process_delivers(launch, replay, tmp_path):
    """Collector away, the API SIGTERMed: it exits in under 1.5 s with its batches spooled;
    the next process on the same spool (with a damaged file in it) delivers every span of
    every request once the collector is back, and warns once about the damaged file."""
    spool = tmp_path / "spool"
    port = free_port()
    receiver = RecordingReceiver(http_port=port, grpc_port=None).start()
    env = _env(receiver.http_endpoint, replay, OTEL_PYTHON_CLSTOCK_SPOOL_DIR=str(spool))
    first = launch("spooling", env=env)
    shape = shape_of(receiver, first.url + PREDICT)
    receiver.stop()
    with SteadyLoad(first.url + PREDICT, rate=10) as load:
        time.sleep(4)
    assert load.failures == [] and len(load.sent) >= 20
    status, seconds = stop_timed(first)
    assert status in GRACEFUL_EXIT_CODES
    assert seconds < 1.5, f"exit took {seconds:.2f} s"
    files = sorted(spool.glob("*.spans.otlp"))
    assert files, f"nothing spooled:\n{first.log_tail()}"
    (spool / "00000000000000000001-1-0.spans.otlp").write_bytes(files[0].read_bytes()[:-10])

    second = launch("respooled", env=env)
    back = RecordingReceiver(http_port=port, grpc_port=None).start()
    try:
        missing = wait_complete(back, load.sent, shape, timeout=30)
        assert missing == {}, f"{len(missing)} of {len(load.sent)} traces incomplete"
        deadline = time.monotonic() + 5  # the last file may still be in flight
        while list(spool.glob("*.otlp*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(spool.glob("*.otlp*")) == []
        assert second.log_text().count("skipped and deleted") == 1
    finally:
        second.stop()
        back.stop()


def _spool_payload(index: int) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = index.to_bytes(16, "big")
    span.span_id = (index + 1).to_bytes(8, "big")
    span.name = f"spooled-{index}"
    return request.SerializeToString()


def test_workers_sharing_a_spool_send_each_file_once(launch, replay, tmp_path):
    """uvicorn --workers 2 start on a spool of 60 files: each span arrives exactly once."""
    spool = Spool(tmp_path / "shared", 1 << 30)
    for index in range(60):
        assert spool.write("spans", 1, _spool_payload(index))
    with RecordingReceiver(grpc_port=None) as receiver:
        env = _env(receiver.http_endpoint, replay,
                   OTEL_PYTHON_CLSTOCK_SPOOL_DIR=str(spool.directory))
        api = launch("shared-spool", env=env, server_args=["--workers", "2"])
        receiver.wait_for_spans(lambda spans: sum(
            s.name.startswith("spooled-") for s in spans) >= 60, timeout=30)
        time.sleep(2)  # a file sent twice would arrive by now
        names = [s.name for s in receiver.spans() if s.name.startswith("spooled-")]
        assert sorted(names) == sorted(f"spooled-{index}" for index in range(60))
        assert list(spool.directory.iterdir()) == []
        api.stop()
