"""The tracer, duration histogram and settings one instrumentor traces with.

Named ``InstrumentationTelemetry`` so it is never mistaken for the tests' in-memory
pipelines. Two settings apply to every instrumentor, each an ``instrument()`` argument
first, else an environment variable:

- ``code_attributes`` / ``OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES``: ``all``
  (``code.function.name``, ``code.file.path``, ``code.line.number`` on every span),
  ``function`` or ``none``: each attribute is paid for when the span starts and again
  when it is exported (bench/README.md);
- ``defer_unsampled_durations`` / ``OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS``:
  False records every call's duration at once, on the call's thread (durations.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import Histogram, get_meter
from opentelemetry.trace import Tracer, get_tracer

from clstock_otel_distro.config import env_choice, switch
from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
    OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES,
    OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS,
)
from clstock_otel_distro.instrumentors._machinery.durations import (
    PendingDurations,
    pending_durations,
)
from clstock_otel_distro.instrumentors._machinery.sampling import ChildSampling
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    DURATION_BUCKETS,
    SCHEMA_URL,
)
from clstock_otel_distro.version import __version__

_logger = logging.getLogger(__name__)

CODE_DETAILS = ("all", "function", "none")


class InstrumentationTelemetry:
    """The tracer and duration histogram of one instrumentor, and how it uses them."""

    def __init__(
        self,
        instrumenting_module: str,
        kwargs: Mapping[str, Any],
        *,
        histogram: str,
        description: str = "",
        operation_key: str | None = None,
    ) -> None:
        self.tracer: Tracer = get_tracer(
            instrumenting_module, __version__, kwargs.get("tracer_provider"), schema_url=SCHEMA_URL
        )
        meter = get_meter(
            instrumenting_module, __version__, kwargs.get("meter_provider"), schema_url=SCHEMA_URL
        )
        self.histogram: Histogram = meter.create_histogram(
            histogram,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.sampling = ChildSampling(self.tracer)
        self.operation_key = operation_key  # the metric attribute naming the operation
        self.code_detail: str = _code_detail(kwargs.get("code_attributes"))
        defer = kwargs.get("defer_unsampled_durations")
        if defer is None:
            defer = switch(OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS)
        self.pending: PendingDurations | None = (
            pending_durations(meter, self.histogram, histogram) if defer else None)


def _code_detail(given: Any) -> str:
    if given is None:
        return env_choice(OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES, DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
                          CODE_DETAILS)
    if given not in CODE_DETAILS:
        _logger.warning("clstock-otel: code_attributes=%r is not one of %s; using 'all'",
                        given, ", ".join(map(repr, CODE_DETAILS)))
        return DEFAULT_CLSTOCK_CODE_ATTRIBUTES
    return given


def clstock_telemetry(instrumenting_module: str,
                      kwargs: Mapping[str, Any]) -> InstrumentationTelemetry:
    """The telemetry of an instrumentor of ClStock's own code (one shared histogram)."""
    return InstrumentationTelemetry(
        instrumenting_module, kwargs, histogram=CLSTOCK_OPERATION_DURATION,
        description="Duration of ClStock operations.", operation_key=CLSTOCK_OPERATION_NAME)
