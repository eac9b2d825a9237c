"""The same spans through the SDK's pipeline and the distro's, for the span pipeline tests.

:class:`Pipelines` builds one SDK ``TracerProvider`` (spans kept in memory) and one
:class:`PipelineTracerProvider` (its processor's encoded batches kept, decoded)
with the same settings; :func:`run_both` runs a scenario on each with the same
random seed, so that random ids come out the same; :func:`sdk_request` encodes the
SDK's spans as its OTLP exporter does (redacted first, as the distro's SDK-path
processor does).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from clstock_otel_distro.sdk.pipeline import PipelineSpanProcessor, PipelineTracerProvider
from clstock_otel_distro.sdk.redaction import redact_span

__all__ = [
    "Capture",
    "Pipelines",
    "SequentialIds",
    "normalized",
    "run_both",
    "sdk_request",
]


class SequentialIds(IdGenerator):
    """Ids 1, 2, 3... (trace ids offset), the same sequence for every instance."""

    def __init__(self) -> None:
        self._spans = itertools.count(1)
        self._traces = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._spans)

    def generate_trace_id(self) -> int:
        return (0xABC << 100) + next(self._traces)


@dataclass
class Capture:
    """A sender for the pipeline's processor that keeps each batch's bytes."""

    payloads: list[bytes] = field(default_factory=list)
    fail_first: int = 0
    calls: int = 0

    def send(self, payload: bytes, count: int) -> bool:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise ConnectionError("collector went away half-way")
        self.payloads.append(payload)
        return True

    def request(self) -> ExportTraceServiceRequest:
        """Every batch kept, merged into one request."""
        merged = ExportTraceServiceRequest()
        for payload in self.payloads:
            merged.MergeFrom(ExportTraceServiceRequest.FromString(payload))
        return merged


class _NoExporter:
    """Stands in for the exporter whose transport the Capture replaces."""

    def shutdown(self) -> None:
        pass


@dataclass
class Pipelines:
    """An SDK provider and a pipeline provider configured alike."""

    sdk: TracerProvider
    memory: InMemorySpanExporter
    pipeline: PipelineTracerProvider
    processor: PipelineSpanProcessor
    capture: Capture

    @classmethod
    def create(
        cls,
        *,
        resource: Resource | None = None,
        span_limits: SpanLimits | None = None,
        sampler: Any = None,
        ids: Callable[[], IdGenerator] | None = None,
        capture: Capture | None = None,
        **processor_settings: Any,
    ) -> Pipelines:
        common: dict[str, Any] = {"resource": resource or Resource.create({"service.name": "t"}),
                                  "shutdown_on_exit": False, "sampler": sampler}
        sdk = TracerProvider(span_limits=span_limits, id_generator=ids() if ids else None,
                             **common)
        memory = InMemorySpanExporter()
        sdk.add_span_processor(SimpleSpanProcessor(memory))
        pipeline = PipelineTracerProvider(span_limits=span_limits,
                                          id_generator=ids() if ids else None, **common)
        capture = capture or Capture()
        settings = {"schedule_delay_millis": 60_000, **processor_settings}
        processor = PipelineSpanProcessor(_NoExporter(), capture.send, **settings)
        pipeline.add_span_processor(processor)
        return cls(sdk, memory, pipeline, processor, capture)

    def sdk_spans(self) -> list[ReadableSpan]:
        return list(self.memory.get_finished_spans())

    def pipeline_request(self) -> ExportTraceServiceRequest:
        assert self.processor.force_flush(10_000)
        return self.capture.request()

    def shutdown(self) -> None:
        self.sdk.shutdown()
        self.pipeline.shutdown()


def run_both(pipelines: Pipelines, scenario: Callable[[TracerProvider], Any],
             seed: int = 7) -> tuple[Any, Any]:
    """``scenario(provider)`` on the SDK's provider, then on the pipeline's, same seed."""
    random.seed(seed)
    sdk_result = scenario(pipelines.sdk)
    random.seed(seed)
    pipeline_result = scenario(pipelines.pipeline)
    return sdk_result, pipeline_result


def sdk_request(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """What the SDK's OTLP exporter sends for ``spans`` (after the distro's redaction)."""
    return encode_spans([redact_span(span) for span in spans])


def normalized(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """``request`` with its batches' scope groups merged and spans sorted by id.

    Batches may cut a scope's spans in several groups, in end order; what a collector
    sees is the same once merged per (resource, scope) and sorted.
    """
    out = ExportTraceServiceRequest()
    by_resource: dict[bytes, Any] = {}
    for resource_spans in request.resource_spans:
        key = resource_spans.resource.SerializeToString() + resource_spans.schema_url.encode()
        target = by_resource.get(key)
        if target is None:
            target = by_resource[key] = out.resource_spans.add()
            target.resource.CopyFrom(resource_spans.resource)
            target.schema_url = resource_spans.schema_url
        for scope_spans in resource_spans.scope_spans:
            scope_key = scope_spans.scope.SerializeToString() + scope_spans.schema_url.encode()
            match = next((s for s in target.scope_spans
                          if s.scope.SerializeToString() + s.schema_url.encode() == scope_key),
                         None)
            if match is None:
                match = target.scope_spans.add()
                match.scope.CopyFrom(scope_spans.scope)
                match.schema_url = scope_spans.schema_url
            match.spans.extend(scope_spans.spans)
    for resource_spans in out.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            ordered = sorted(scope_spans.spans, key=lambda span: (span.trace_id, span.span_id))
            del scope_spans.spans[:]
            scope_spans.spans.extend(ordered)
    return out
