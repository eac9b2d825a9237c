"""OTLP attribute encoding kept and reused: the same bytes as the SDK's, for less work."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    set_span_in_context,
)

from clstock_otel_distro.patches import otlp_attribute_cache as _attribute_cache

SDK_ENCODE_ATTRIBUTES = trace_encoder._encode_attributes

# Values whose encodings differ subtly: each must come out exactly as the SDK's.
ATTRIBUTES: list[dict[str, Any]] = [
    {"http.request.method": "GET", "http.route": "/api/v1/predict/{symbol}",
     "http.response.status_code": 200, "server.port": 8000, "clstock.symbol": "7203"},
    {"flag": True, "one": 1, "zero": 0, "false": False},  # bool vs int, same keys:
    {"flag": 1, "one": True, "zero": False, "false": 0},  # True == 1, False == 0
    {"score": 0.734, "neg_zero": -0.0, "zero_float": 0.0, "nan": float("nan")},
    {"symbols": ("7203", "6758"), "counts": (1, 2), "flags": (True, False)},
    {"名前": "トヨタ", "empty": "", "big": 2**62, "negative": -5},
    {},
]


@pytest.fixture
def spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "clstock"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.cache", "1")
    remote = NonRecordingSpan(SpanContext(0xAB, 0xCD, is_remote=True,
                                          trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    link = Link(SpanContext(0x12, 0x34, is_remote=False), {"link.kind": "batch", "n": 3})
    for round_ in range(3):  # repeats: the second and third rounds hit the cache
        for index, attributes in enumerate(ATTRIBUTES):
            context = set_span_in_context(remote) if index % 2 else None
            with tracer.start_as_current_span(f"span-{index}", context=context,
                                              kind=SpanKind.SERVER, attributes=attributes,
                                              links=[link]) as span:
                span.add_event("fetched", {"rows": 250, "ticker": "7203.T", "round": round_})
    provider.shutdown()
    return list(exporter.get_finished_spans())


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The span encoder patched with the cache; the SDK's function put back afterwards."""
    monkeypatch.setattr(trace_encoder, "_encode_attributes", SDK_ENCODE_ATTRIBUTES)
    _attribute_cache.patch(trace_encoder)
    yield trace_encoder._encode_attributes
    # monkeypatch restores the SDK's function


def _sdk_bytes(spans: list[ReadableSpan], monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as scoped:
        scoped.setattr(trace_encoder, "_encode_attributes", SDK_ENCODE_ATTRIBUTES)
        return encode_spans(spans).SerializeToString()


def test_the_bytes_are_the_sdks(spans, encoder, monkeypatch):
    expected = _sdk_bytes(spans, monkeypatch)
    assert encode_spans(spans).SerializeToString() == expected
    assert encode_spans(spans).SerializeToString() == expected  # warm cache


def test_repeated_values_are_kept_and_reused(spans, encoder):
    encode_spans(spans)
    kept = encoder._self_wrapper.messages
    assert ("http.request.method", str, "GET") in kept
    assert ("flag", bool, True) in kept and ("one", int, 1) in kept
    assert ("rows", int, 250) in kept  # event attributes too
    assert ("link.kind", str, "batch") in kept  # and link attributes
    assert not [key for key in kept if key[1] not in (str, int, bool)]
    message = kept[("http.request.method", str, "GET")]
    encode_spans(spans)
    assert kept[("http.request.method", str, "GET")] is message  # not rebuilt


def test_an_exported_message_changed_later_leaves_the_kept_one_alone(spans, encoder,
                                                                      monkeypatch):
    """Protobuf copies each kept message into the span: a change to one stays there."""
    request = encode_spans(spans)
    for attribute in request.resource_spans[0].scope_spans[0].spans[0].attributes:
        attribute.value.string_value = "changed"
    assert encode_spans(spans).SerializeToString() == _sdk_bytes(spans, monkeypatch)


def test_at_most_max_entries_are_kept(spans, encoder, monkeypatch):
    monkeypatch.setattr(_attribute_cache, "MAX_ENTRIES", 4)
    expected = _sdk_bytes(spans, monkeypatch)
    assert encode_spans(spans).SerializeToString() == expected
    assert len(encoder._self_wrapper.messages) <= 4


def test_a_value_the_sdk_cannot_encode_is_left_out_and_logged_as_it_does(encoder, caplog):
    """An int beyond 64 bits: the SDK logs it and leaves the attribute out; so do we."""
    with caplog.at_level(logging.ERROR):
        encoded = encoder({"huge": 2**70, "ok": "yes"})
        again = encoder({"huge": 2**70, "ok": "yes"})
    assert [kv.key for kv in encoded] == [kv.key for kv in again] == ["ok"]
    assert sum("Failed to encode key huge" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize(("value", "cached"), [(None, True), ("false", False)])
def test_under_opentelemetry_instrument(run_instrumented, value, cached):
    """The configurator installs it unless OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE=false."""
    code = ("from opentelemetry.exporter.otlp.proto.common._internal import trace_encoder\n"
            "print(type(trace_encoder._encode_attributes).__name__)")
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    if value is not None:
        env["OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE"] = value
    done = run_instrumented(code, env)
    assert done.returncode == 0, done.stderr
    assert (done.stdout.split()[0] == "FunctionWrapper") is cached, done.stdout
