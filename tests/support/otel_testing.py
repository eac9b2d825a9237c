"""In-memory OpenTelemetry pipelines for the instrumentor tests (no global state).

Each test builds its own providers and hands them to ``instrument()``; nothing here
touches the global tracer or meter provider.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

__all__ = ["Telemetry", "instrumented", "parent_of", "without_code"]


@dataclass
class Telemetry:
    """A tracer provider and a meter provider that keep what they receive in memory."""

    exporter: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    @classmethod
    def create(cls, sampler: Sampler | None = None) -> Telemetry:
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider(sampler=sampler)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        return cls(exporter, tracer_provider, reader, MeterProvider(metric_readers=[reader]))

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return spans if name is None else [s for s in spans if s.name == name]

    def span(self, name: str) -> ReadableSpan:
        spans = self.spans(name)
        assert len(spans) == 1, f"{len(spans)} spans named {name!r}: {self.names()}"
        return spans[0]

    def names(self) -> list[str]:
        return [s.name for s in self.spans()]

    def tracer(self) -> Any:
        return self.tracer_provider.get_tracer("tests")

    def points(self, metric: str) -> list[tuple[dict[str, Any], int]]:
        """(attributes, count) of each histogram point of ``metric``."""
        data = self.reader.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for m in scope_metrics.metrics:
                    if m.name == metric:
                        found += [(dict(p.attributes), p.count) for p in m.data.data_points]
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@contextmanager
def instrumented(instrumentor: BaseInstrumentor, **kwargs: Any) -> Iterator[BaseInstrumentor]:
    """``instrumentor`` instrumented for the block, uninstrumented after (whatever happens)."""
    instrumentor.instrument(**kwargs)
    try:
        yield instrumentor
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def parent_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> ReadableSpan | None:
    """The span of ``spans`` that is ``span``'s parent, if any."""
    if span.parent is None:
        return None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)


def without_code(attributes: Any) -> dict[str, Any]:
    """The span's attributes minus the code.* ones."""
    return {k: v for k, v in dict(attributes).items() if not k.startswith("code.")}
