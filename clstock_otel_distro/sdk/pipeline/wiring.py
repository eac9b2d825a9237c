"""How the configurator switches the pipeline on: the provider class and the processor.

Two hooks, both used by :mod:`clstock_otel_distro.configurator`:

- :func:`sdk_builds_pipeline_provider`: the SDK's ``_initialize_components``
  constructs ``TracerProvider`` itself, by the name it imported into
  ``opentelemetry.sdk._configuration``; for the duration of that call the name
  refers to :class:`PipelineTracerProvider` (a subclass, same constructor): the
  registry entry :mod:`clstock_otel_distro.patches.sdk_pipeline_provider`. If the
  installed SDK does not have that shape, nothing is swapped (SDK spans).
- :func:`build_span_processor`: the ``export_span_processor`` factory's product: the
  pipeline's processor for the OTLP/HTTP protobuf span exporter, otherwise today's
  :class:`~clstock_otel_distro.sdk.redaction.RedactingBatchSpanProcessor` (and the
  provider, seeing a processor that is not the pipeline's, steps aside).

``OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE=sdk`` turns both off.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from clstock_otel_distro import config as _config
from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_SPAN_PIPELINE,
    OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE,
)
from clstock_otel_distro.sdk.redaction import RedactingBatchSpanProcessor

__all__ = [
    "PIPELINE_FAST",
    "PIPELINE_SDK",
    "build_span_processor",
    "pipeline_enabled",
    "sdk_builds_pipeline_provider",
]

_logger = logging.getLogger(__name__)

PIPELINE_FAST = "fast"
PIPELINE_SDK = "sdk"


def pipeline_enabled() -> bool:
    """``OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE`` is ``fast`` (the default)."""
    choice = _config.env_choice(OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE, DEFAULT_CLSTOCK_SPAN_PIPELINE,
                                (PIPELINE_FAST, PIPELINE_SDK))
    return choice == PIPELINE_FAST


@functools.lru_cache(maxsize=1)
def _pipeline() -> Any:
    """The pipeline's modules, or None (logged once) when they cannot load here.

    They use private parts of the OpenTelemetry API and SDK (attribute cleaning, the
    current-span context key, the SDK tracer's internals); an OpenTelemetry release
    that changed them must leave the process traced by the SDK, not untraced.
    """
    try:
        from clstock_otel_distro.sdk.pipeline import processor, tracer, transport
    except Exception as exc:
        _logger.warning("clstock-otel: the span pipeline cannot load with the installed "
                        "OpenTelemetry (%s: %s); spans are the SDK's", type(exc).__name__, exc)
        return None
    return processor, tracer, transport


@contextlib.contextmanager
def sdk_builds_pipeline_provider() -> Iterator[None]:
    """Within the block, the SDK's configuration constructs a PipelineTracerProvider."""
    pipeline = _pipeline() if pipeline_enabled() else None
    if pipeline is None:
        yield
        return
    # A registry patch (patches/sdk_pipeline_provider.py): applied only on the SDK it
    # was verified on, and undone when the SDK call returns.
    from clstock_otel_distro.patches import registry, sdk_pipeline_provider

    registry.install(sdk_pipeline_provider.PATCH)
    try:
        yield
    finally:
        registry.uninstall(sdk_pipeline_provider.PATCH)


def build_span_processor(span_exporter: Any, **settings: Any) -> SpanProcessor:
    """The processor for one span exporter (settings: the BatchSpanProcessor arguments)."""
    pipeline = _pipeline() if pipeline_enabled() else None
    if pipeline is not None:
        processor, _, transport = pipeline
        sender = transport.otlp_http_sender(span_exporter)
        if sender is not None:
            return processor.PipelineSpanProcessor(span_exporter, sender, **settings)
        # Not the OTLP/HTTP exporter, or one whose private client has another shape:
        # the provider steps aside when it gets the SDK processor (and says so).
        _logger.debug("clstock-otel: no span pipeline for the %s exporter",
                      type(span_exporter).__name__)
    return RedactingBatchSpanProcessor(span_exporter, **settings)
