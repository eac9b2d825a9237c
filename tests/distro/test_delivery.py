"""DurableSender: payloads kept while the collector is away, retried in order, bounded."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from clstock_otel_distro.sdk.delivery import Attempt, Outcome
from clstock_otel_distro.sdk.delivery.backoff import Backoff
from clstock_otel_distro.sdk.delivery.budget import ByteBudget
from clstock_otel_distro.sdk.delivery.drops import (
    REASON_BUFFER_FULL,
    REASON_EXIT,
    REASON_REJECTED,
    DropReporter,
)
from clstock_otel_distro.sdk.delivery.sender import DurableSender
from clstock_otel_distro.sdk.delivery.spool import Spool

SENT = Attempt(Outcome.SENT)


class ScriptedCollector:
    """A transport answering from a script (then ``then``), recording what it took."""

    def __init__(self, *script: Attempt, then: Attempt = SENT) -> None:
        self.script = list(script)
        self.then = then
        self.tries: list[tuple[bytes, float]] = []
        self.taken: list[bytes] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, payload: bytes, timeout: float) -> Attempt:
        with self.lock:
            self.tries.append((payload, time.monotonic()))
            answer = self.script.pop(0) if self.script else self.then
            if answer.outcome is Outcome.SENT:
                self.taken.append(payload)
            self.changed.notify_all()
            return answer

    def wait_taken(self, count: int, timeout: float = 5.0) -> list[bytes]:
        with self.lock:
            assert self.changed.wait_for(lambda: len(self.taken) >= count, timeout), self.taken
            return list(self.taken)


AWAY = Attempt(Outcome.RETRY, detail="ConnectionError")


_made: list[DurableSender] = []


@pytest.fixture(autouse=True)
def _close_senders():
    """Every sender a test made stops its retry thread afterwards."""
    yield
    while _made:
        _made.pop().close(time.monotonic())


def wait_empty(directory, timeout: float = 5.0) -> list:
    """The files left in ``directory`` once it is empty or ``timeout`` passed (a file is
    deleted just after its payload was taken)."""
    deadline = time.monotonic() + timeout
    while list(directory.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(directory.iterdir())


def make_sender(collector, *, limit=1_000_000, spool=None, interval=0.05,
                reporter=None) -> DurableSender:
    sender = DurableSender("spans", collector, timeout=1.0, budget=ByteBudget(limit),
                         reporter=reporter or DropReporter(), spool=spool,
                         backoff=Backoff(interval, interval * 4))
    _made.append(sender)
    return sender


def test_a_payload_goes_out_at_once_when_the_collector_answers():
    """Nothing waits and no thread is started while every batch is taken."""
    collector = ScriptedCollector()
    sender = make_sender(collector)
    assert sender.submit(b"one") is True
    assert collector.taken == [b"one"]
    assert sender._thread is None


def test_batches_wait_while_the_collector_is_away_and_arrive_in_order():
    """A retryable failure keeps the batch; later batches queue behind it, oldest first."""
    collector = ScriptedCollector(AWAY, AWAY, AWAY)
    sender = make_sender(collector)
    for payload in (b"a", b"b", b"c"):
        assert sender.submit(payload) is True
    assert collector.wait_taken(3) == [b"a", b"b", b"c"]
    assert sender.waiting == 0


def test_new_batches_do_not_try_the_collector_while_older_ones_wait():
    """Only the retry thread talks to an absent collector: the exporter never waits on it."""
    collector = ScriptedCollector(then=AWAY)
    sender = make_sender(collector, interval=10.0)
    sender.submit(b"first")
    for index in range(20):
        sender.submit(b"later-%d" % index)
    assert [payload for payload, _ in collector.tries] == [b"first"]
    assert sender.waiting == 21


def test_retries_back_off_exponentially():
    """The pauses between tries double (within the jitter) up to the maximum."""
    collector = ScriptedCollector(AWAY, AWAY, AWAY, AWAY)
    sender = make_sender(collector, interval=0.1)
    sender.submit(b"x")
    collector.wait_taken(1, timeout=10)
    times = [at for _, at in collector.tries]
    pauses = [later - earlier for earlier, later in zip(times, times[1:])]
    assert len(pauses) == 4
    assert 0.08 <= pauses[0] < 0.2
    assert 0.16 <= pauses[1] < 0.35
    assert 0.32 <= pauses[2] < 0.6
    assert 0.32 <= pauses[3] < 0.6  # the maximum (4 x 0.1 s) is reached


def test_retry_after_is_honoured():
    """A 503 with Retry-After: the next try comes that long after, not at the backoff's pace."""
    collector = ScriptedCollector(Attempt(Outcome.RETRY, retry_after=0.6, detail="HTTP 503"))
    sender = make_sender(collector, interval=0.01)
    sender.submit(b"x")
    collector.wait_taken(1)
    (_, first), (_, second) = collector.tries
    assert second - first >= 0.6


def test_a_rejected_batch_is_dropped_counted_and_never_retried(caplog):
    """400/413: no retry, one warning, counted with reason=rejected."""
    collector = ScriptedCollector(Attempt(Outcome.REJECTED, detail="HTTP 400"))
    reporter = DropReporter()
    sender = make_sender(collector, reporter=reporter)
    with caplog.at_level(logging.WARNING):
        assert sender.submit(b"bad") is False
        assert sender.submit(b"good") is True
    assert [payload for payload, _ in collector.tries] == [b"bad", b"good"]
    assert reporter.total[("spans", REASON_REJECTED)] == 0  # not an OTLP payload: 0 items
    assert ("spans", REASON_REJECTED) in reporter.total
    assert sum("HTTP 400" in record.getMessage() for record in caplog.records) == 1


def test_the_bound_drops_new_batches_counted_with_one_warning_a_minute(caplog):
    """Past the byte limit new batches are dropped; one warning for the burst, with the count."""
    collector = ScriptedCollector(then=AWAY)
    reporter = DropReporter()
    sender = make_sender(collector, limit=10, interval=10.0, reporter=reporter)
    with caplog.at_level(logging.WARNING):
        results = [sender.submit(b"12345") for _ in range(6)]
    assert results == [True, True, False, False, False, False]
    assert sender.waiting == 2
    assert ("spans", REASON_BUFFER_FULL) in reporter.total
    drop_warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_warnings) == 1


def test_drop_warnings_sum_what_happened_since_the_last():
    """The second warning of a minute is deferred and reports the sum."""
    reporter = DropReporter(interval=0.2)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("clstock_otel_distro.sdk.delivery.drops")
    logger.addHandler(handler)
    try:
        reporter.record("spans", REASON_BUFFER_FULL, 5)
        reporter.record("spans", REASON_BUFFER_FULL, 7)
        reporter.record("spans", REASON_BUFFER_FULL, 11)
        time.sleep(0.25)
        reporter.record("logs", REASON_BUFFER_FULL, 1)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert "5 spans (buffer_full)" in records[0]
    assert "1 logs (buffer_full)" in records[1] and "18 spans (buffer_full)" in records[1]
    assert reporter.total[("spans", REASON_BUFFER_FULL)] == 23


def test_the_drop_counter_is_a_metric():
    """clstock.telemetry.dropped counts items with signal and reason."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    reporter = DropReporter()
    reporter._counter = MeterProvider(metric_readers=[reader]).get_meter("t").create_counter(
        "clstock.telemetry.dropped")
    reporter.record("spans", REASON_EXIT, 4)
    [metric] = [m for rm in reader.get_metrics_data().resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics]
    [point] = metric.data.data_points
    assert point.value == 4
    assert dict(point.attributes) == {"signal": "spans", "reason": "exit"}


def test_close_sends_what_waits_when_the_collector_is_back():
    """At exit, one more try: a collector that came back gets everything at once."""
    collector = ScriptedCollector(AWAY)
    sender = make_sender(collector, interval=30.0)
    sender.submit(b"a")
    sender.submit(b"b")
    sender.close(time.monotonic() + 2)
    assert collector.taken == [b"a", b"b"]


def test_close_spools_what_the_collector_did_not_take(tmp_path):
    """Collector still away at exit: the waiting batches go to the spool, oldest first."""
    collector = ScriptedCollector(then=AWAY)
    spool = Spool(tmp_path, 1 << 20)
    sender = make_sender(collector, spool=spool, interval=30.0)
    sender.submit(b"a")
    sender.submit(b"b")
    started = time.monotonic()
    sender.close(started + 1)
    assert time.monotonic() - started < 1
    assert [spool.claim_next("spans").payload for _ in range(2)] == [b"a", b"b"]


def test_close_without_a_spool_counts_the_loss():
    """No spool: what waits at exit is dropped with reason=exit."""
    collector = ScriptedCollector(then=AWAY)
    reporter = DropReporter()
    sender = make_sender(collector, interval=30.0, reporter=reporter)
    sender.submit(b"a")
    sender.close(time.monotonic() + 0.5)
    assert ("spans", REASON_EXIT) in reporter.total


def test_a_full_memory_overflows_to_the_spool_which_is_sent_later(tmp_path):
    """Past the byte limit, batches go to disk and are sent once memory has drained."""
    collector = ScriptedCollector(AWAY)
    spool = Spool(tmp_path, 1 << 20)
    reporter = DropReporter()
    sender = make_sender(collector, limit=4, spool=spool, reporter=reporter)
    for payload in (b"1111", b"2222", b"3333"):
        assert sender.submit(payload) is True
    assert collector.wait_taken(3) == [b"1111", b"2222", b"3333"]
    assert not reporter.total
    assert wait_empty(tmp_path) == []


def test_a_new_process_sends_the_spool_left_by_the_last_one(tmp_path):
    """Files spooled at one exit are sent by the next sender on the same spool."""
    Spool(tmp_path, 1 << 20).write("spans", 3, b"left-over")
    collector = ScriptedCollector()
    make_sender(collector, spool=Spool(tmp_path, 1 << 20))
    assert collector.wait_taken(1) == [b"left-over"]
    assert wait_empty(tmp_path) == []


@pytest.mark.parametrize("signal", ["spans", "metrics", "logs"])
def test_items_are_counted_from_the_payload(signal):
    """Drops count spans, metric data points and log records, read from the payload."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from clstock_otel_distro.sdk.delivery.counting import count_items

    if signal == "spans":
        request = ExportTraceServiceRequest()
        request.resource_spans.add().scope_spans.add().spans.add()
        request.resource_spans[0].scope_spans[0].spans.add()
    elif signal == "metrics":
        request = ExportMetricsServiceRequest()
        metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
        metric.sum.data_points.add()
        metric.sum.data_points.add()
    else:
        request = ExportLogsServiceRequest()
        scope = request.resource_logs.add().scope_logs.add()
        scope.log_records.add()
        scope.log_records.add()
    assert count_items(signal, request.SerializeToString()) == 2


def test_held_back_drops_are_reported_once_the_minute_is_over():
    """Drops after the first warning are reported by the retry thread's next look, not lost."""
    reporter = DropReporter(interval=0.1)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("clstock_otel_distro.sdk.delivery.drops")
    logger.addHandler(handler)
    try:
        reporter.record("spans", REASON_BUFFER_FULL, 2)
        reporter.record("spans", REASON_BUFFER_FULL, 3)
        reporter.flush_if_due()
        assert len(records) == 1
        time.sleep(0.15)
        reporter.flush_if_due()
        reporter.flush_if_due()
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2 and "3 spans (buffer_full)" in records[1]
