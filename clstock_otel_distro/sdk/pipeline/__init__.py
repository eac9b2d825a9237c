"""A span pipeline at a fraction of the SDK's cost, with the SDK's behaviour and wire format.

What a traced call costs, from ``start_span`` to the bytes on the wire, is mostly the
SDK's objects: a lock, a ``BoundedAttributes`` and a ``SpanContext`` per span, a
``ReadableSpan`` copy at end, then a protobuf message object per span, attribute
and value at export. This package keeps the OpenTelemetry API and the SDK's
configuration and replaces those objects:

1. :mod:`.tracer`: :class:`PipelineTracerProvider`, an SDK ``TracerProvider`` whose
   tracers honour the sampler, id generator, span limits, resource and scope, and
   make a :class:`~.span.PipelineSpan` for every recording span;
2. :mod:`.span`: the span, in ``__slots__``, with the SDK span's rules;
3. :mod:`.processor`: the batching processor (bounded queue, export thread,
   bounded flush and shutdown, fork-safe);
4. :mod:`.encoder`: spans straight to OTLP protobuf bytes, redacted;
5. :mod:`.transport`: the bytes sent by the SDK's own OTLP/HTTP exporter's client;
6. :mod:`.wiring`: how the configurator turns it on
   (``OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE``, default ``fast``).

What it does not do: it does not run span processors other than its own on its
spans (the provider steps aside to the SDK's spans, for the whole process, as soon
as another one is added, and says so once); it does not export anything but
OTLP/HTTP protobuf (other exporters get the SDK's pipeline); it records no SDK
internal metrics (with ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`` on it steps
aside); it is pure Python, no compiled extension.

The benchmark that judges it: ``bench/span_pipeline.py`` (callgrind instructions per
span, all-in, SDK pipeline against this one); figures in ``bench/README.md``. The
wire format is proven by ``tests/distro/test_span_pipeline_wire.py``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PipelineSpan",
    "PipelineSpanProcessor",
    "PipelineTracer",
    "PipelineTracerProvider",
    "build_span_processor",
    "pipeline_enabled",
    "sdk_builds_pipeline_provider",
]

# Loaded on first use: the configurator imports this package whatever the installed
# OpenTelemetry, and only .wiring must import (it falls back to the SDK's pipeline
# when the others cannot be loaded).
_WHERE = {
    "PipelineSpan": "span",
    "PipelineSpanProcessor": "processor",
    "PipelineTracer": "tracer",
    "PipelineTracerProvider": "tracer",
    "build_span_processor": "wiring",
    "pipeline_enabled": "wiring",
    "sdk_builds_pipeline_provider": "wiring",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
