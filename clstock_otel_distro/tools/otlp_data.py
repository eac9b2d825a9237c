"""OTLP data: the plain objects received telemetry becomes, decoded from OTLP protobuf.

The receiver decodes every export request into frozen dataclasses (:class:`ReceivedSpan`,
:class:`ReceivedMetric`, :class:`ReceivedLog`): ids as lowercase hex, enums as their
OTLP names, attribute values as Python values. The span file
(:mod:`~clstock_otel_distro.tools.otlp_json`) reads and writes the same objects, so
the collector, the report and the demo all work on one model. The OTLP enum and flag
values, which both decoders need, are defined here once.

Importing this module imports no protobuf: the generated OTLP messages load on the first
:func:`message_types` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "SIGNALS",
    "SPAN_KINDS",
    "STATUS_CODES",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedLog",
    "ReceivedMetric",
    "ReceivedSpan",
    "decode_logs_request",
    "decode_metrics_request",
    "decode_trace_request",
    "enum_name",
    "message_types",
    "parent_is_remote",
    "span_flags",
]

# The three OTLP signals, as the receiver names them.
SIGNALS = ("traces", "metrics", "logs")
# Indexed by the OTLP enum values, which the spec fixes.
SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
_TEMPORALITIES = ("UNSPECIFIED", "DELTA", "CUMULATIVE")
# Span.flags bits 8 and 9: whether the parent's remoteness is known, and if it is remote.
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200


def enum_name(names: tuple[str, ...], value: int) -> str:
    """The OTLP name of an enum value; an unknown value keeps its number, as a string."""
    return names[value] if 0 <= value < len(names) else str(value)


def parent_is_remote(flags: int) -> bool | None:
    """Whether a span's parent is remote, from its flags; None when the exporter did not say."""
    return bool(flags & _FLAG_IS_REMOTE) if flags & _FLAG_HAS_IS_REMOTE else None


def span_flags(is_remote: bool | None) -> int:
    """The inverse of :func:`parent_is_remote`: the flag bits that say it (0 for None)."""
    if is_remote is None:
        return 0
    return _FLAG_HAS_IS_REMOTE | (_FLAG_IS_REMOTE if is_remote else 0)


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class ReceivedEvent:
    """A span event."""

    name: str
    time_unix_nano: int
    attributes: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class ReceivedLink:
    """A span link."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any] = field(hash=False)
    trace_state: str = ""


@dataclass(frozen=True)
class ReceivedSpan:
    """One received span, with ids as lowercase hex and enums as their OTLP names.

    Attribute values are Python values (str, bool, int, float, bytes; arrays become
    tuples, key-value lists dicts). Treat the dicts as read-only: spans from one request
    share their ``resource`` dict.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any] = field(hash=False)
    status_code: str
    status_message: str
    events: tuple[ReceivedEvent, ...] = field(hash=False)
    links: tuple[ReceivedLink, ...] = field(hash=False)
    resource: dict[str, Any] = field(hash=False)
    scope_name: str
    scope_version: str
    transport: str
    trace_state: str = ""
    # None when the exporter did not say (the flags field is optional in OTLP).
    parent_is_remote: bool | None = None

    @property
    def duration_ns(self) -> int:
        """End minus start time, in nanoseconds."""
        return self.end_time_unix_nano - self.start_time_unix_nano

    @property
    def service_name(self) -> str | None:
        """The ``service.name`` resource attribute."""
        value = self.resource.get("service.name")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ReceivedMetric:
    """One received metric (a Metric message) with its data points as plain dicts.

    Every point has ``attributes``, ``start_time_unix_nano`` and ``time_unix_nano``;
    gauge and sum points add ``value``; histogram points ``count``, ``sum``, ``min``,
    ``max``, ``bucket_counts`` and ``explicit_bounds``; exponential histogram points
    ``count``, ``sum``, ``min``, ``max``, ``scale``, ``zero_count``, ``positive`` and
    ``negative``; summary points ``count``, ``sum`` and ``quantile_values``.
    """

    name: str
    unit: str
    kind: str  # "gauge", "sum", "histogram", "exponential_histogram" or "summary"
    data_points: tuple[dict[str, Any], ...] = field(hash=False)
    resource: dict[str, Any] = field(hash=False)
    scope_name: str
    scope_version: str
    transport: str
    description: str = ""
    temporality: str | None = None  # "DELTA" / "CUMULATIVE" for sums and histograms
    is_monotonic: bool | None = None  # sums only

    @property
    def service_name(self) -> str | None:
        """The ``service.name`` resource attribute."""
        value = self.resource.get("service.name")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ReceivedLog:
    """One received log record; trace and span ids are hex, or None when uncorrelated."""

    body: Any = field(hash=False)
    severity_text: str
    severity_number: int
    trace_id: str | None
    span_id: str | None
    attributes: dict[str, Any] = field(hash=False)
    resource: dict[str, Any] = field(hash=False)
    scope_name: str
    time_unix_nano: int
    observed_time_unix_nano: int
    transport: str
    event_name: str = ""

    @property
    def service_name(self) -> str | None:
        """The ``service.name`` resource attribute."""
        value = self.resource.get("service.name")
        return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- decoding


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    # string/bool/int/double/bytes map to the Python value of the field of that name.
    return None if kind is None else getattr(value, kind)


def _attributes(key_values: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in key_values}


def _scoped(request: Any, resources: str, scopes: str, items: str) -> Iterator[tuple[Any, ...]]:
    """``(resource attributes, scope, item)`` for every item of an export request.

    OTLP nests items by resource and then by instrumentation scope, the same way for
    every signal; each resource's attributes are decoded once and shared by its items.
    """
    for resource_entry in getattr(request, resources):
        resource = _attributes(resource_entry.resource.attributes)
        for scope_entry in getattr(resource_entry, scopes):
            for item in getattr(scope_entry, items):
                yield resource, scope_entry.scope, item


def decode_trace_request(
    request: ExportTraceServiceRequest, transport: str = "http"
) -> list[ReceivedSpan]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`ReceivedSpan` objects."""
    return [
        ReceivedSpan(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex() or None,
            name=span.name,
            kind=enum_name(SPAN_KINDS, span.kind),
            start_time_unix_nano=span.start_time_unix_nano,
            end_time_unix_nano=span.end_time_unix_nano,
            attributes=_attributes(span.attributes),
            status_code=enum_name(STATUS_CODES, span.status.code),
            status_message=span.status.message,
            events=tuple(
                ReceivedEvent(
                    name=event.name,
                    time_unix_nano=event.time_unix_nano,
                    attributes=_attributes(event.attributes),
                )
                for event in span.events
            ),
            links=tuple(
                ReceivedLink(
                    trace_id=link.trace_id.hex(),
                    span_id=link.span_id.hex(),
                    attributes=_attributes(link.attributes),
                    trace_state=link.trace_state,
                )
                for link in span.links
            ),
            resource=resource,
            scope_name=scope.name,
            scope_version=scope.version,
            transport=transport,
            trace_state=span.trace_state,
            parent_is_remote=parent_is_remote(span.flags),
        )
        for resource, scope, span in _scoped(request, "resource_spans", "scope_spans", "spans")
    ]


def _point_base(point: Any) -> dict[str, Any]:
    return {
        "attributes": _attributes(point.attributes),
        "start_time_unix_nano": point.start_time_unix_nano,
        "time_unix_nano": point.time_unix_nano,
    }


def _number_point(point: Any) -> dict[str, Any]:
    data = _point_base(point)
    kind = point.WhichOneof("value")
    data["value"] = None if kind is None else getattr(point, kind)
    return data


def _optional(point: Any, name: str) -> Any:
    # sum/min/max are proto3 `optional`: absent is not the same as 0.
    return getattr(point, name) if point.HasField(name) else None


def _distribution_point(point: Any) -> dict[str, Any]:
    """What both histogram kinds' points have: count, and the optional sum, min and max."""
    data = _point_base(point)
    data.update(
        count=point.count,
        sum=_optional(point, "sum"),
        min=_optional(point, "min"),
        max=_optional(point, "max"),
    )
    return data


def _histogram_point(point: Any) -> dict[str, Any]:
    data = _distribution_point(point)
    data.update(
        bucket_counts=tuple(point.bucket_counts),
        explicit_bounds=tuple(point.explicit_bounds),
    )
    return data


def _exponential_histogram_point(point: Any) -> dict[str, Any]:
    data = _distribution_point(point)
    data.update(
        scale=point.scale,
        zero_count=point.zero_count,
        positive=_buckets(point.positive),
        negative=_buckets(point.negative),
    )
    return data


def _buckets(buckets: Any) -> dict[str, Any]:
    return {"offset": buckets.offset, "bucket_counts": tuple(buckets.bucket_counts)}


def _summary_point(point: Any) -> dict[str, Any]:
    data = _point_base(point)
    data.update(
        count=point.count,
        sum=point.sum,
        quantile_values=tuple((q.quantile, q.value) for q in point.quantile_values),
    )
    return data


_POINT_DECODERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "gauge": _number_point,
    "sum": _number_point,
    "histogram": _histogram_point,
    "exponential_histogram": _exponential_histogram_point,
    "summary": _summary_point,
}


def decode_metrics_request(
    request: ExportMetricsServiceRequest, transport: str = "http"
) -> list[ReceivedMetric]:
    """Flatten an ``ExportMetricsServiceRequest`` into :class:`ReceivedMetric` objects."""
    metrics: list[ReceivedMetric] = []
    for resource, scope, metric in _scoped(
        request, "resource_metrics", "scope_metrics", "metrics"
    ):
        kind = metric.WhichOneof("data")
        if kind is None:  # a metric without data carries nothing to assert on
            continue
        data = getattr(metric, kind)
        decode_point = _POINT_DECODERS[kind]
        metrics.append(
            ReceivedMetric(
                name=metric.name,
                unit=metric.unit,
                kind=kind,
                data_points=tuple(decode_point(p) for p in data.data_points),
                resource=resource,
                scope_name=scope.name,
                scope_version=scope.version,
                transport=transport,
                description=metric.description,
                temporality=(
                    enum_name(_TEMPORALITIES, data.aggregation_temporality)
                    if kind in ("sum", "histogram", "exponential_histogram")
                    else None
                ),
                is_monotonic=data.is_monotonic if kind == "sum" else None,
            )
        )
    return metrics


def decode_logs_request(
    request: ExportLogsServiceRequest, transport: str = "http"
) -> list[ReceivedLog]:
    """Flatten an ``ExportLogsServiceRequest`` into :class:`ReceivedLog` objects."""
    return [
        ReceivedLog(
            body=_any_value(record.body),
            severity_text=record.severity_text,
            severity_number=record.severity_number,
            trace_id=record.trace_id.hex() or None,
            span_id=record.span_id.hex() or None,
            attributes=_attributes(record.attributes),
            resource=resource,
            scope_name=scope.name,
            time_unix_nano=record.time_unix_nano,
            observed_time_unix_nano=record.observed_time_unix_nano,
            transport=transport,
            event_name=record.event_name,
        )
        for resource, scope, record in _scoped(
            request, "resource_logs", "scope_logs", "log_records"
        )
    ]


def message_types(signal: str) -> tuple[type[Message], type[Message]]:
    """The (request, response) classes of a signal; imported on first use (not cheap)."""
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb

        return pb.ExportTraceServiceRequest, pb.ExportTraceServiceResponse
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb

        return pb.ExportMetricsServiceRequest, pb.ExportMetricsServiceResponse
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb

    return pb.ExportLogsServiceRequest, pb.ExportLogsServiceResponse
