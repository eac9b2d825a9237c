"""How many items (spans, metric data points, log records) an OTLP payload holds.

Only needed when a payload is dropped or spooled, so the payload is parsed then,
never on the way out.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["SIGNALS", "count_items"]

_logger = logging.getLogger(__name__)

SIGNALS = ("spans", "metrics", "logs")
"""The names the SDK's OTLP/HTTP client gives its kinds of payload."""

_POINT_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def _spans(payload: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(payload)
    return sum(len(scope.spans) for resource in request.resource_spans
               for scope in resource.scope_spans)


def _metric_points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind in _POINT_FIELDS else 0


def _metrics(payload: bytes) -> int:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    request = ExportMetricsServiceRequest.FromString(payload)
    return sum(_metric_points(metric) for resource in request.resource_metrics
               for scope in resource.scope_metrics for metric in scope.metrics)


def _logs(payload: bytes) -> int:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest.FromString(payload)
    return sum(len(scope.log_records) for resource in request.resource_logs
               for scope in resource.scope_logs)


_COUNTERS = {"spans": _spans, "metrics": _metrics, "logs": _logs}


def count_items(signal: str, payload: bytes) -> int:
    """The items in ``payload``; 0 when it cannot be parsed (it is still a payload)."""
    counter = _COUNTERS.get(signal)
    if counter is None:
        return 0
    try:
        return counter(payload)
    except Exception as exc:  # a payload we cannot parse is counted as empty, not raised
        _logger.debug("Cannot count the items of a %s payload: %s", signal, exc)
        return 0
