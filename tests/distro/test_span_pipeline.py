"""The span pipeline's spans behave as the SDK's: the same calls on both, the same results."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from clstock_otel_distro.sdk.pipeline import PipelineSpan, PipelineTracerProvider
from tests.distro.pipeline_testing import Pipelines, SequentialIds, run_both

WATCHED_LOGGERS = ("opentelemetry.sdk.trace", "opentelemetry.attributes")


@pytest.fixture
def pipelines() -> Iterator[Pipelines]:
    created = Pipelines.create(span_limits=SpanLimits(max_span_attributes=4,
                                                      max_span_attribute_length=6))
    yield created
    created.shutdown()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name in WATCHED_LOGGERS]


def _both_with_logs(pipelines: Pipelines, scenario: Callable[[TracerProvider], Any],
                    caplog: pytest.LogCaptureFixture) -> tuple[tuple[Any, list[str]], ...]:
    """(result, SDK log messages) for each provider."""
    results = []
    for provider in (pipelines.sdk, pipelines.pipeline):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            result = scenario(provider)
        results.append((result, _warnings(caplog)))
    return tuple(results)


def _readable(span: Any) -> dict[str, Any]:
    return {
        "name": span.name, "attributes": dict(span.attributes),
        "dropped_attributes": span.dropped_attributes, "status": (
            span.status.status_code, span.status.description),
        "events": [(e.name, dict(e.attributes), e.dropped_attributes) for e in span.events],
        "links": [(link.context, dict(link.attributes)) for link in span.links],
        "kind": span.kind, "recording": span.is_recording(),
    }


def test_recording_spans_are_pipeline_spans_and_readable(pipelines: Pipelines) -> None:
    """Spans are PipelineSpans, yet Span and ReadableSpan instances, with the SDK's context."""
    sdk_span, our_span = run_both(pipelines,
                                 lambda p: p.get_tracer("t").start_span("s", start_time=1))
    assert type(our_span) is PipelineSpan
    assert isinstance(our_span, trace.Span) and isinstance(our_span, ReadableSpan)
    assert our_span.get_span_context() == sdk_span.get_span_context()
    assert our_span.get_span_context().trace_flags == TraceFlags(0x03)  # sampled, random id
    assert our_span.resource is pipelines.pipeline.resource
    assert our_span.instrumentation_scope == sdk_span.instrumentation_scope
    sdk_span.end(5)
    our_span.end(5)
    assert our_span.to_json() == sdk_span.to_json()


def test_attribute_validation_matches_the_sdk(pipelines: Pipelines,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Cleaning, invalid keys and values, truncation, the count limit: same result, same logs."""
    class Opaque:
        pass

    def scenario(provider: TracerProvider) -> dict[str, Any]:
        span = provider.get_tracer("t").start_span("s", attributes={"start": 1, "": "no key"})
        mutable = ["a", "b"]
        span.set_attribute("seq", mutable)
        mutable.append("c")  # the span keeps a copy
        kept = span.attributes["seq"]
        span.set_attribute("long", "abcdefghij")
        span.set_attribute("", "empty key")
        span.set_attribute(5, "int key")
        span.set_attribute("obj", Opaque())
        span.set_attribute("start", 2)  # re-set: moves to the end
        span.set_attributes({"x": 1.5, "y": (True, False), "": 0})
        span.end()
        span.set_attribute("late", 1)
        return {**_readable(span), "kept": kept}

    (sdk, sdk_logs), (ours, our_logs) = _both_with_logs(pipelines, scenario, caplog)
    assert ours == sdk
    assert ours["kept"] == ("a", "b")
    assert our_logs == sdk_logs and any("Setting attribute on ended span" in m for m in our_logs)


def test_set_attributes_matches_the_sdk(pipelines: Pipelines,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """set_attributes of plain values, a re-set key, a long value, past the limit: as the SDK."""

    def scenario(provider: TracerProvider) -> list[dict[str, Any]]:
        tracer = provider.get_tracer("t")
        seen = []
        for batches in (
            [{"a": "x", "b": 1, "c": 0.5}, {"d": True}],  # plain, up to the limit
            [{"a": 1, "b": 2}, {"a": 3, "c": 4}],  # "a" set again: moves to the end
            [{"a": 1, "b": 2, "c": 3}, {"d": 4, "e": 5}],  # one too many: oldest dropped
            [{"a": "abcdefghij", "b": 2}],  # too long: truncated
            [{"a": 1}, {"b": [1, 2], "c": None}],  # a sequence and a None among them
        ):
            span = tracer.start_span("s")
            for batch in batches:
                span.set_attributes(batch)
            span.end()
            seen.append(_readable(span))
        return seen

    (sdk, sdk_logs), (ours, our_logs) = _both_with_logs(pipelines, scenario, caplog)
    assert ours == sdk and our_logs == sdk_logs


def test_plain_set_attributes_keep_the_encoders_short_path(pipelines: Pipelines) -> None:
    """New keys with plain values leave a span simple; a dropped attribute does not."""
    tracer = pipelines.pipeline.get_tracer("t")
    plain = tracer.start_span("plain")
    plain.set_attributes({"a": "x", "b": 1, "c": 0.5, "d": True})
    over = tracer.start_span("over")
    over.set_attributes({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
    assert plain._simple and dict(plain.attributes) == {"a": "x", "b": 1, "c": 0.5, "d": True}
    assert not over._simple and over.dropped_attributes == 1
    plain.end()
    over.end()


def test_status_rules_match_the_sdk(pipelines: Pipelines,
                                    caplog: pytest.LogCaptureFixture) -> None:
    """UNSET never overrides, OK is final, a description with a Status is ignored (warned)."""

    def scenario(provider: TracerProvider) -> list[Any]:
        tracer = provider.get_tracer("t")
        statuses = []
        for calls in (
            [(Status(StatusCode.ERROR, "e"),), (Status(StatusCode.UNSET),)],
            [(StatusCode.OK,), (StatusCode.ERROR, "after ok")],
            [(Status(StatusCode.ERROR), "ignored description")],
            [(StatusCode.ERROR, "first"), (StatusCode.ERROR, "second")],
        ):
            span = tracer.start_span("s")
            for call in calls:
                span.set_status(*call)
            span.end()
            span.set_status(StatusCode.OK)  # ended: warned, ignored
            statuses.append((span.status.status_code, span.status.description))
        return statuses

    (sdk, sdk_logs), (ours, our_logs) = _both_with_logs(pipelines, scenario, caplog)
    assert ours == sdk and our_logs == sdk_logs


def test_events_links_names_and_ending_match_the_sdk(pipelines: Pipelines,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """add_event, add_link, update_name, record_exception, end once; after end: warned."""
    remote = SpanContext(0xAB, 0xCD, True, TraceFlags(1))

    def scenario(provider: TracerProvider) -> tuple[dict[str, Any], dict[str, Any]]:
        span = provider.get_tracer("t").start_span("s")
        span.add_event("e", {"k": ["v"]}, timestamp=5)
        span.add_link(remote, {"l": 1})
        span.add_link(trace.INVALID_SPAN_CONTEXT)
        span.update_name("renamed")
        try:
            raise KeyError("missing")
        except KeyError as error:
            span.record_exception(error, {"extra": 1}, timestamp=6, escaped=True)
        span.end(10)
        live = _readable(span)
        span.end(20)
        span.add_event("late")
        span.add_link(remote)
        span.update_name("late")
        return live, {**_readable(span), "end": span.end_time}

    (sdk, sdk_logs), (ours, our_logs) = _both_with_logs(pipelines, scenario, caplog)
    assert ours == sdk
    assert our_logs == sdk_logs and len(our_logs) == 4
    exception = dict(ours[0]["events"][1][1])
    assert exception["exception.type"] == "KeyError" and exception["exception.escaped"] == "True"
    assert pipelines.pipeline_request().resource_spans[0].scope_spans[0].spans[0].name == \
        "renamed"  # exported once, as it was when it ended


@pytest.mark.parametrize("options", [{}, {"record_exception": False},
                                     {"set_status_on_exception": False}])
def test_exceptions_in_start_as_current_span_match_the_sdk(pipelines: Pipelines,
                                                           options: dict[str, bool]) -> None:
    """use_span's rules: recorded (not escaped), ERROR status, the exception propagates."""

    def scenario(provider: TracerProvider) -> dict[str, Any]:
        tracer = provider.get_tracer("t")
        with (pytest.raises(ValueError, match="boom") as raised,
              tracer.start_as_current_span("s", **options) as span):
            raise ValueError("boom")
        result = _readable(span)
        # The traceback differs (the SDK's passes through its context-manager
        # generator); everything else is the same.
        for event in result["events"]:
            event[1].pop("exception.stacktrace")
        return {**result, "same exception": raised.value.args}

    sdk, ours = run_both(pipelines, scenario)
    assert ours == sdk
    assert ours["recording"] is False


def test_with_span_records_escaped_and_base_exceptions_are_not_recorded(
        pipelines: Pipelines) -> None:
    """``with tracer.start_span()``: escaped=True; KeyboardInterrupt ends the span unrecorded."""

    def scenario(provider: TracerProvider) -> tuple[dict[str, Any], dict[str, Any]]:
        tracer = provider.get_tracer("t")
        with pytest.raises(RuntimeError), tracer.start_span("plain") as plain:
            raise RuntimeError("x")
        with (pytest.raises(KeyboardInterrupt),
              tracer.start_as_current_span("interrupted") as interrupted):
            raise KeyboardInterrupt
        first, second = _readable(plain), _readable(interrupted)
        for event in first["events"]:
            event[1].pop("exception.stacktrace")
        return first, second

    sdk, ours = run_both(pipelines, scenario)
    assert ours == sdk
    assert ours[0]["events"][0][1]["exception.escaped"] == "True"
    assert ours[1]["events"] == [] and ours[1]["recording"] is False


def test_current_span_context_and_end_on_exit(pipelines: Pipelines) -> None:
    """The span is current inside the block, the parent comes back after; end_on_exit=False."""
    tracer = pipelines.pipeline.get_tracer("t")
    with tracer.start_as_current_span("parent") as parent:
        assert trace.get_current_span() is parent
        with tracer.start_as_current_span("child", end_on_exit=False) as child:
            assert trace.get_current_span() is child
            with trace.use_span(tracer.start_span("used"), end_on_exit=True) as used:
                assert trace.get_current_span() is used
        assert trace.get_current_span() is parent
        assert child.is_recording() and not used.is_recording()
        assert child.parent == parent.get_span_context()
        assert used.parent == child.get_span_context()
        child.end()
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert parent.parent is None and not parent.is_recording()


def test_decorator_makes_one_span_per_call(pipelines: Pipelines) -> None:
    """As a decorator, sync or async, each call is its own span, ended when the call returns."""
    tracer = pipelines.pipeline.get_tracer("t")

    @tracer.start_as_current_span("sync")
    def sync(value: int) -> int:
        return value + 1

    @tracer.start_as_current_span("async")
    async def coroutine(value: int) -> int:
        span = trace.get_current_span()
        await asyncio.sleep(0)
        assert trace.get_current_span() is span and span.is_recording()
        return value * 2

    assert sync(1) == 2 and sync(2) == 3
    assert asyncio.run(coroutine(4)) == 8
    names = [s.name for r in pipelines.pipeline_request().resource_spans
             for g in r.scope_spans for s in g.spans]
    assert sorted(names) == ["async", "sync", "sync"]


def test_non_sampled_and_disabled_tracers_are_non_recording_as_in_the_sdk(
        pipelines: Pipelines) -> None:
    """Under a non-sampled parent: NonRecordingSpan with the same context; disabled tracer too."""
    parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(0xA, 0xB, True)))

    def scenario(provider: TracerProvider) -> list[Any]:
        span = provider.get_tracer("t").start_span("s", context=parent)
        provider._set_tracer_configurator(
            tracer_configurator=sdk_trace._disable_tracer_configurator)
        disabled = provider.get_tracer("t").start_span("d")
        return [(type(s), s.get_span_context()) for s in (span, disabled)]

    sdk, ours = run_both(pipelines, scenario)
    assert ours == sdk and ours[0][0] is NonRecordingSpan


def test_sdk_disabled_gives_the_no_op_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: get_tracer returns the NoOpTracer, as the SDK's does."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = PipelineTracerProvider(shutdown_on_exit=False)
    assert isinstance(provider.get_tracer("t"), trace.NoOpTracer)


def test_a_user_processor_makes_the_provider_step_aside(
        pipelines: Pipelines, caplog: pytest.LogCaptureFixture) -> None:
    """Added processor: one log line, SDK spans from then on, to it and to the pipeline's."""
    tracer = pipelines.pipeline.get_tracer("t")
    tracer.start_span("before").end()
    user = InMemorySpanExporter()
    with caplog.at_level(logging.INFO, logger="clstock_otel_distro.sdk.pipeline"):
        pipelines.pipeline.add_span_processor(SimpleSpanProcessor(user))
        pipelines.pipeline.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    lines = [r for r in caplog.records if "steps aside" in r.getMessage()]
    assert len(lines) == 1 and "SimpleSpanProcessor" in lines[0].getMessage()
    assert not pipelines.pipeline.pipeline_active
    after = tracer.start_span("after")
    assert type(after) is sdk_trace._Span
    after.end()
    assert [s.name for s in user.get_finished_spans()] == ["after"]
    names = [s.name for r in pipelines.pipeline_request().resource_spans
             for g in r.scope_spans for s in g.spans]
    assert sorted(names) == ["after", "before"]


def test_a_raising_user_processor_does_not_reach_the_application(
        pipelines: Pipelines, caplog: pytest.LogCaptureFixture) -> None:
    """A processor that raises: the call goes on, the span is still exported, one warning."""

    class Raising(sdk_trace.SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("processor bug")

    pipelines.pipeline.add_span_processor(Raising())
    tracer = pipelines.pipeline.get_tracer("t")
    with caplog.at_level(logging.DEBUG, logger="clstock_otel_distro.sdk.pipeline"):
        for index in range(3):
            with tracer.start_as_current_span(f"s{index}"):
                pass
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "raised in on_end" in r.getMessage()]
    assert len(warnings) == 1
    spans = [s for r in pipelines.pipeline_request().resource_spans
             for g in r.scope_spans for s in g.spans]
    assert len(spans) == 3


def test_span_limits_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and the value length limit apply as in the SDK."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    created = Pipelines.create()
    try:
        def scenario(provider: TracerProvider) -> dict[str, Any]:
            span = provider.get_tracer("t").start_span("s")
            for key in ("a", "b", "c"):
                span.set_attribute(key, "value")
            return _readable(span)

        sdk, ours = run_both(created, scenario)
        assert ours == sdk
        assert ours["attributes"] == {"b": "val", "c": "val"} and ours["dropped_attributes"] == 1
    finally:
        created.shutdown()


class _ZeroIds(SequentialIds):
    """An id generator whose first span id is the invalid 0."""

    def generate_span_id(self) -> int:
        span_id = super().generate_span_id()
        return 0 if span_id == 1 else span_id


@pytest.mark.parametrize("ids", [None, _ZeroIds], ids=["random", "invalid-first-id"])
def test_span_contexts_are_the_sdks(ids: Any) -> None:
    """get_span_context() (built without SpanContext's __new__) equals the SDK span's, field
    by field: roots, children, a remote parent's trace state, an invalid id."""
    pipelines = Pipelines.create(ids=ids)
    remote = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        0xA, 0xB, True, TraceFlags(1), trace.TraceState([("k", "v")]))))

    def scenario(provider: TracerProvider) -> list[Any]:
        tracer = provider.get_tracer("t")
        root = tracer.start_span("root")
        child = tracer.start_span("child", context=trace.set_span_in_context(root))
        under_remote = tracer.start_span("remote-child", context=remote)
        return [(*s.get_span_context(), type(s.get_span_context()))
                for s in (root, child, under_remote)]

    try:
        sdk, ours = run_both(pipelines, scenario)
        assert ours == sdk
        if ids is _ZeroIds:
            assert ours[0][5] is False  # is_valid, computed as the SDK computes it
    finally:
        pipelines.shutdown()


def _adopting_scenario(attributes: dict[str, Any], parent_flags: int = 1
                       ) -> Callable[[TracerProvider], Any]:
    def scenario(provider: TracerProvider) -> Any:
        tracer = provider.get_tracer("t")
        root = tracer.start_span("root") if parent_flags else NonRecordingSpan(
            SpanContext(0xA, 0xB, False, TraceFlags(0)))
        context = trace.set_span_in_context(root)
        given = dict(attributes)
        start = getattr(tracer, "start_span_adopting", None)
        span = (start("child", context, trace.SpanKind.CLIENT, given) if start
                else tracer.start_span("child", context, trace.SpanKind.CLIENT, given))
        return span, given

    return scenario


@pytest.mark.parametrize("limits", [SpanLimits(), SpanLimits(max_span_attribute_length=6)],
                         ids=["no-length-limit", "length-limit"])
def test_start_span_adopting_is_start_span_with_the_dict_kept(limits: SpanLimits) -> None:
    """A sampled child of ours keeps the very dict it is given (its values are the caller's
    promise: plain, within the length limit); the span is start_span's in every field."""
    pipelines = Pipelines.create(span_limits=limits)
    attributes = {"code.function.name": "f", "clstock.symbol": "7203", "n": 3, "x": 1.5,
                  "ok": True}
    try:
        (sdk_span, _), (our_span, given) = run_both(pipelines, _adopting_scenario(attributes))
        assert our_span._attributes is given
        assert list(our_span.attributes.items()) == list(sdk_span.attributes.items())
        assert our_span.get_span_context() == sdk_span.get_span_context()
        assert (our_span.parent, our_span.kind, our_span.name) == (
            sdk_span.parent, sdk_span.kind, sdk_span.name)
    finally:
        pipelines.shutdown()


@pytest.mark.parametrize("limits", [SpanLimits(), SpanLimits(max_span_attribute_length=6)],
                         ids=["no-length-limit", "length-limit"])
def test_start_span_adopting_a_root_keeps_the_dict(limits: SpanLimits) -> None:
    """A root (no span in the context given) keeps the very dict it is given too; the
    span is start_span's in every field (ids, sampled with a random trace id, no parent)."""
    pipelines = Pipelines.create(span_limits=limits)
    attributes = {"url.scheme": "http", "server.port": 8000, "x": 1.5, "ok": True}

    def scenario(provider: TracerProvider) -> Any:
        tracer = provider.get_tracer("t")
        given = dict(attributes)
        start = getattr(tracer, "start_span_adopting", None)
        empty = Context()
        span = (start("GET /health", empty, trace.SpanKind.SERVER, given) if start
                else tracer.start_span("GET /health", empty, trace.SpanKind.SERVER, given))
        return span, given

    try:
        (sdk_span, _), (our_span, given) = run_both(pipelines, scenario)
        assert our_span._attributes is given
        assert list(our_span.attributes.items()) == list(sdk_span.attributes.items())
        assert our_span.get_span_context() == sdk_span.get_span_context()
        assert our_span.get_span_context().trace_flags == TraceFlags(0x03)
        assert our_span.parent is None and sdk_span.parent is None
        assert (our_span.kind, our_span.name) == (sdk_span.kind, sdk_span.name)
        assert our_span.is_recording() and sdk_span.is_recording()
    finally:
        pipelines.shutdown()


def test_start_span_adopting_falls_back_to_start_span() -> None:
    """Not a sampled child of ours, more attributes than the limit, or the pipeline stepped
    aside: what start_span does (a copy, cleaned and limited; a non-recording or SDK span)."""
    pipelines = Pipelines.create(span_limits=SpanLimits(max_span_attributes=2))
    try:
        (sdk_span, _), (our_span, given) = run_both(
            pipelines, _adopting_scenario({"a": 1, "b": 2, "c": 3}))
        assert our_span._attributes is not given
        assert dict(our_span.attributes) == dict(sdk_span.attributes) == {"b": 2, "c": 3}
        assert our_span.dropped_attributes == sdk_span.dropped_attributes == 1

        (sdk_span, _), (our_span, _) = run_both(
            pipelines, _adopting_scenario({"a": 1}, parent_flags=0))
        assert type(our_span) is NonRecordingSpan
        assert our_span.get_span_context() == sdk_span.get_span_context()

        pipelines.pipeline.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        _, (our_span, _) = run_both(pipelines, _adopting_scenario({"a": 1}))
        assert type(our_span) is sdk_trace._Span and dict(our_span.attributes) == {"a": 1}
    finally:
        pipelines.shutdown()
