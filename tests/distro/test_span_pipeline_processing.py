"""The span pipeline's processor and wiring: queue, batches, flush, shutdown, fork, bad input."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE
from clstock_otel_distro.sdk.pipeline import pipeline_enabled
from clstock_otel_distro.sdk.pipeline import span as span_module
from tests.distro.pipeline_testing import Capture, Pipelines, normalized, run_both, sdk_request
from tests.support.receiver import RecordingReceiver

PIPELINE_LOGGER = "clstock_otel_distro.sdk.pipeline"


def _span_names(capture: Capture) -> list[str]:
    return [s.name for r in capture.request().resource_spans for g in r.scope_spans
            for s in g.spans]


class _BlockingSender(Capture):
    """Holds every send until released: a collector that does not answer."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, payload: bytes, count: int) -> bool:
        self.entered.set()
        self.release.wait(10)
        return super().send(payload, count)


@pytest.fixture
def blocked() -> Iterator[tuple[Pipelines, _BlockingSender]]:
    sender = _BlockingSender()
    created = Pipelines.create(capture=sender, max_queue_size=8, max_export_batch_size=2)
    yield created, sender
    sender.release.set()
    created.shutdown()


def test_a_full_batch_is_exported_without_waiting_for_the_schedule() -> None:
    """max_export_batch_size spans waiting wake the export thread (the delay is a minute)."""
    created = Pipelines.create(max_export_batch_size=3)
    try:
        tracer = created.pipeline.get_tracer("t")
        for index in range(3):
            tracer.start_span(f"s{index}").end()
        deadline = time.monotonic() + 5
        while not created.capture.payloads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _span_names(created.capture) == ["s0", "s1", "s2"]
    finally:
        created.shutdown()


def test_the_schedule_exports_a_partial_batch() -> None:
    """Fewer spans than a batch are sent after schedule_delay_millis."""
    created = Pipelines.create(schedule_delay_millis=50)
    try:
        created.pipeline.get_tracer("t").start_span("alone").end()
        deadline = time.monotonic() + 5
        while not created.capture.payloads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _span_names(created.capture) == ["alone"]
    finally:
        created.shutdown()


def test_full_queue_drops_the_oldest_and_warns_once(
        blocked: tuple[Pipelines, _BlockingSender], caplog: pytest.LogCaptureFixture) -> None:
    """With the exporter stuck, the queue keeps max_queue_size spans; drops counted, one warning."""
    created, sender = blocked
    tracer = created.pipeline.get_tracer("t")
    with caplog.at_level(logging.WARNING, logger=PIPELINE_LOGGER):
        tracer.start_span("first").end()
        tracer.start_span("second").end()
        assert sender.entered.wait(5)  # the export thread holds the first batch
        for index in range(20):
            tracer.start_span(f"q{index}").end()
    assert created.processor.dropped == 12
    assert len([r for r in caplog.records if "Queue full, dropping Span" in r.getMessage()]) == 1
    sender.release.set()
    assert created.processor.force_flush(5000)
    assert _span_names(created.capture) == ["first", "second"] + [f"q{i}" for i in range(12, 20)]


def test_spans_wait_encoded_and_are_not_kept_alive() -> None:
    """An ended span waits as its encoded bytes: the span object itself is freed at once
    (nothing the garbage collector walks while it waits), and the batch is the same."""
    import gc
    import weakref

    created = Pipelines.create()
    try:
        span = created.pipeline.get_tracer("t").start_span("gone", attributes={"k": "v"})
        span.end()
        assert [type(item) for item in created.processor._queue] == [bytes]
        assert not any(gc.is_tracked(item) for item in created.processor._queue)
        ref = weakref.ref(span)
        del span
        assert ref() is None
        assert _span_names(created.capture) == [] and created.processor.force_flush(5000)
        assert _span_names(created.capture) == ["gone"]
    finally:
        created.shutdown()


def test_spans_ending_on_many_threads_keep_their_scopes() -> None:
    """Spans of two tracers (two scopes) ended concurrently on eight threads: every span
    is exported once, under its own scope."""
    created = Pipelines.create(max_export_batch_size=7)
    tracers = [created.pipeline.get_tracer(f"scope{n}") for n in range(2)]

    def work(thread: int) -> None:
        for index in range(150):
            which = (thread + index) % 2
            tracers[which].start_span(f"scope{which}-{thread}-{index}").end()

    try:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert created.processor.force_flush(10_000)
        seen = [(group.scope.name, span.name) for r in created.capture.request().resource_spans
                for group in r.scope_spans for span in group.spans]
        assert len(seen) == len({name for _, name in seen}) == 8 * 150
        assert all(name.startswith(scope + "-") for scope, name in seen)
    finally:
        created.shutdown()


def test_a_span_that_cannot_be_encoded_is_dropped_where_it_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Encoding fails for one span: end() returns normally, one warning names the span,
    the other spans are exported."""
    created = Pipelines.create()
    encoder = created.processor._encoder
    encode = encoder._pipeline_span

    def failing(span: Any) -> bytes:
        if span._name == "bad":
            raise ValueError("cannot")
        return encode(span)

    monkeypatch.setattr(encoder, "_pipeline_span", failing)
    try:
        tracer = created.pipeline.get_tracer("t")
        with caplog.at_level(logging.WARNING):
            for name in ("before", "bad", "after"):
                tracer.start_span(name).end()
        assert [r.getMessage() for r in caplog.records if "could not be encoded" in
                r.getMessage()] == ["clstock-otel: span 'bad' could not be encoded "
                                    "(ValueError: cannot); it is not exported"]
        assert created.processor.force_flush(5000)
        assert _span_names(created.capture) == ["before", "after"]
    finally:
        created.shutdown()


def test_force_flush_and_shutdown_are_bounded(blocked: tuple[Pipelines, _BlockingSender]) -> None:
    """A collector that never answers: flush returns False in time, shutdown returns in time."""
    created, sender = blocked
    tracer = created.pipeline.get_tracer("t")
    for index in range(4):
        tracer.start_span(f"s{index}").end()
    assert sender.entered.wait(5)
    started = time.monotonic()
    assert created.processor.force_flush(200) is False
    created.processor.shutdown(timeout_millis=300)
    assert time.monotonic() - started < 2
    created.pipeline.get_tracer("t").start_span("after shutdown").end()
    assert created.processor.force_flush(100) is False


def test_an_exporter_failing_half_way_loses_one_batch_only(
        caplog: pytest.LogCaptureFixture) -> None:
    """The first send raises: that batch is dropped with a warning, the next ones go."""
    created = Pipelines.create(capture=Capture(fail_first=1), max_export_batch_size=2)
    try:
        tracer = created.pipeline.get_tracer("t")
        with caplog.at_level(logging.WARNING, logger=PIPELINE_LOGGER):
            for index in range(6):
                with tracer.start_as_current_span(f"s{index}"):
                    pass
            assert created.processor.force_flush(5000)
        assert len(_span_names(created.capture)) == 4
        failures = [r for r in caplog.records if "failed; they are dropped" in r.getMessage()]
        assert len(failures) == 1 and "ConnectionError" in failures[0].exc_text
    finally:
        created.shutdown()


def test_a_huge_event_is_truncated_as_by_the_sdk() -> None:
    """Thousands of event attributes and a megabyte string: bounded by the limits, same OTLP."""
    created = Pipelines.create(span_limits=SpanLimits(max_attribute_length=4096))
    try:
        def scenario(provider: TracerProvider) -> None:
            span = provider.get_tracer("t").start_span("huge", start_time=1)
            attributes: dict[str, Any] = {f"k{i}": i for i in range(5000)}
            attributes["big"] = "x" * 1_000_000
            span.add_event("flood", attributes, timestamp=2)
            span.end(3)

        run_both(created, scenario)
        sdk, ours = sdk_request(created.sdk_spans()), created.pipeline_request()
        assert normalized(ours) == normalized(sdk)
        event = ours.resource_spans[0].scope_spans[0].spans[0].events[0]
        assert len(event.attributes) == 128 and event.dropped_attributes_count == 4873
    finally:
        created.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_its_own_queue_and_thread() -> None:
    """After fork the child exports only its own spans, through a new export thread."""
    created = Pipelines.create()
    try:
        tracer = created.pipeline.get_tracer("t")
        tracer.start_span("parent.before.fork").end()
        # Another thread in the middle of ending a span when the process forks.
        span_module._end_lock.acquire()
        try:
            pid = os.fork()
        finally:
            if pid:
                span_module._end_lock.release()
        if pid == 0:  # the child: report through the exit status only
            ok = False
            try:
                worker = created.processor._worker
                tracer.start_span("child").end()
                ok = (worker.is_alive() and worker.ident != threading.main_thread().ident
                      and created.processor.force_flush(5000)
                      and _span_names(created.capture) == ["child"])
            finally:
                os._exit(0 if ok else 1)
        deadline = time.monotonic() + 20
        while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if waited[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child hung ending a span")
        assert os.waitstatus_to_exitcode(waited[1]) == 0
        assert created.processor.force_flush(5000)
        assert _span_names(created.capture) == ["parent.before.fork"]
    finally:
        created.shutdown()


def test_switch_reads_the_variable(monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    """fast (default) and sdk; a bad value warns once and keeps fast."""
    assert pipeline_enabled()
    monkeypatch.setenv(OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE, "SDK")
    assert not pipeline_enabled()
    monkeypatch.setenv(OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE, "turbo")
    with caplog.at_level(logging.WARNING):
        assert pipeline_enabled()
    assert [r.getMessage() for r in caplog.records] == [
        f"{OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE}='turbo' is invalid (expected one of fast, sdk); "
        "using the default 'fast' instead"]


_DESCRIBE = """
from opentelemetry import trace
provider = trace.get_tracer_provider()
processors = provider._active_span_processor._span_processors
print("PROVIDER", type(provider).__name__, getattr(provider, "pipeline_active", None),
      [type(getattr(p, "_processor", p)).__name__ for p in processors])
with trace.get_tracer("t").start_as_current_span("s") as span:
    print("SPAN", type(span).__name__)
import os
import signal
import sys
os._exit(0)
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "PROVIDER PipelineTracerProvider True ['PipelineSpanProcessor']\nSPAN PipelineSpan"),
        ({OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE: "sdk"},
         "PROVIDER TracerProvider None ['RedactingBatchSpanProcessor']\nSPAN _Span"),
        ({"OTEL_TRACES_EXPORTER": "console"},
         "PROVIDER PipelineTracerProvider False ['RedactingBatchSpanProcessor']\nSPAN _Span"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
         "PROVIDER PipelineTracerProvider False ['RedactingBatchSpanProcessor']\nSPAN _Span"),
    ],
    ids=["default", "switched-off", "console-exporter", "grpc-exporter"],
)
def test_configurator_builds_the_pipeline_for_otlp_http_only(
        run_instrumented: Any, env: dict[str, str], expected: str) -> None:
    """Under opentelemetry-instrument: the pipeline for OTLP/HTTP, the SDK's otherwise."""
    result = run_instrumented(_DESCRIBE, {"OTEL_METRICS_EXPORTER": "none", **env})
    assert result.returncode == 0, result.stderr
    # The step-aside line is at INFO (an expected configuration): not on stderr.
    assert result.stdout.strip() == expected


def test_instrumented_process_delivers_redacted_spans_at_exit(run_instrumented: Any) -> None:
    """A real process: spans reach a receiver over OTLP/HTTP at exit, secrets redacted."""
    receiver = RecordingReceiver(grpc_port=None).start()
    try:
        code = """
from opentelemetry import trace
tracer = trace.get_tracer("exit.test")
with tracer.start_as_current_span("request") as span:
    span.set_attribute("url.full", "https://u:p@example.com/x?token=abc&q=1")
    for index in range(3):
        with tracer.start_as_current_span(f"child{index}"):
            pass
"""
        result = run_instrumented(code, {
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
        })
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for_spans(count=4, timeout=10)
        request = next(s for s in spans if s.name == "request")
        assert request.attributes["url.full"] == \
            "https://REDACTED:REDACTED@example.com/x?token=REDACTED&q=1"
        assert {s.parent_span_id for s in spans if s.name.startswith("child")} == \
            {request.span_id}
        assert request.resource["service.name"] == "clstock"
    finally:
        receiver.stop()


def test_pipeline_that_cannot_load_leaves_the_sdk_pipeline(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An OpenTelemetry release the pipeline cannot load with: SDK processor, one warning."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk import _configuration

    from clstock_otel_distro.sdk.pipeline import wiring
    from clstock_otel_distro.sdk.redaction import RedactingBatchSpanProcessor

    wiring._pipeline.cache_clear()
    monkeypatch.setitem(sys.modules, "clstock_otel_distro.sdk.pipeline.processor", None)
    monkeypatch.delattr("clstock_otel_distro.sdk.pipeline.processor", raising=False)
    try:
        with caplog.at_level(logging.WARNING, logger=PIPELINE_LOGGER):
            processor = wiring.build_span_processor(OTLPSpanExporter())
            with wiring.sdk_builds_pipeline_provider():
                assert _configuration.TracerProvider is TracerProvider
        assert type(processor) is RedactingBatchSpanProcessor
        processor.shutdown()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "cannot load" in lines[0]
    finally:
        wiring._pipeline.cache_clear()
