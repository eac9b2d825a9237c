"""An embedded OTLP receiver: OTLP/HTTP and OTLP/gRPC in-process, decoded into plain objects.

It is what the integration tests point real, instrumented ClStock processes at, so they
can assert whole trace trees, and what ``clstock-otel collect`` (the dev collector)
runs. It speaks the protocols a collector speaks:

- OTLP/HTTP (stdlib ``http.server``): ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``
  with ``application/x-protobuf`` or ``application/json`` (OTLP JSON: hex trace and
  span ids) bodies, optionally ``gzip`` or ``deflate`` encoded, over keep-alive HTTP/1.1.
- OTLP/gRPC (``grpcio``, imported only when the receiver starts): the trace, metrics and
  logs ``Export`` services.

Everything received is decoded into frozen dataclasses (:class:`ReceivedSpan`,
:class:`ReceivedMetric`, :class:`ReceivedLog`) and kept in a thread-safe store::

    from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver

    with OTLPReceiver() as receiver:              # free ports on 127.0.0.1
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
        }
        ...                                       # run the instrumented process
        spans = receiver.wait_for_spans(
            lambda spans: any(s.name == "GET /recommendations" for s in spans)
        )
        [server] = receiver.find(name="GET /recommendations", kind="SERVER")
        children = receiver.children_of(server)

For ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` use ``receiver.grpc_endpoint`` instead.
``add_listener`` streams every received batch of spans to a callback, which is how a
long-running collector prints traces as they arrive (pass ``retain=False`` so it does
not also keep them in memory).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import logging
import socket
import socketserver
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

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
    "OTLPReceiver",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedLog",
    "ReceivedMetric",
    "ReceivedSpan",
    "ReceiverStats",
    "SpanListener",
    "decode_logs_request",
    "decode_metrics_request",
    "decode_trace_request",
    "from_otlp_json",
    "to_otlp_json",
]

_logger = logging.getLogger(__name__)

_M = TypeVar("_M", bound="Message")
_T = TypeVar("_T")

# Indexed by the OTLP enum values, which the spec fixes.
_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS_CODES = ("UNSET", "OK", "ERROR")
_TEMPORALITIES = ("UNSPECIFIED", "DELTA", "CUMULATIVE")
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200

# The SDK exporters drop requests above 64 MiB before compression; accept up to that.
_MAX_BODY_BYTES = 64 * 1024 * 1024
_HTTP_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
_PATH_LIST = ", ".join(_HTTP_PATHS)
_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPE = "application/json"
_GRPC_MAX_WORKERS = 8
_NOT_RUNNING = "the OTLP receiver is not running; call start() first"
# google.rpc.Code values used in OTLP/HTTP error bodies.
_RPC_INVALID_ARGUMENT = 3
_RPC_INTERNAL = 13


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

    @property
    def is_root(self) -> bool:
        """True when the span has no parent at all (not even a remote one)."""
        return self.parent_span_id is None


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


@dataclass(frozen=True)
class ReceiverStats:
    """Counters for one transport since the receiver was created (``clear`` keeps them)."""

    trace_requests: int = 0
    spans: int = 0
    metric_requests: int = 0
    metric_data_points: int = 0
    log_requests: int = 0
    log_records: int = 0
    rejected_requests: int = 0


SpanListener = Callable[[Sequence[ReceivedSpan]], None]

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


def _enum_name(names: tuple[str, ...], value: int) -> str:
    return names[value] if 0 <= value < len(names) else str(value)


def decode_trace_request(
    request: ExportTraceServiceRequest, transport: str = "http"
) -> list[ReceivedSpan]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`ReceivedSpan` objects."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            scope_version = scope_spans.scope.version
            for span in scope_spans.spans:
                flags = span.flags
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=_enum_name(_SPAN_KINDS, span.kind),
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        status_code=_enum_name(_STATUS_CODES, span.status.code),
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
                        scope_name=scope_name,
                        scope_version=scope_version,
                        transport=transport,
                        trace_state=span.trace_state,
                        parent_is_remote=(
                            bool(flags & _FLAG_IS_REMOTE) if flags & _FLAG_HAS_IS_REMOTE else None
                        ),
                    )
                )
    return spans


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


def _histogram_point(point: Any) -> dict[str, Any]:
    data = _point_base(point)
    data.update(
        count=point.count,
        sum=_optional(point, "sum"),
        min=_optional(point, "min"),
        max=_optional(point, "max"),
        bucket_counts=tuple(point.bucket_counts),
        explicit_bounds=tuple(point.explicit_bounds),
    )
    return data


def _exponential_histogram_point(point: Any) -> dict[str, Any]:
    data = _point_base(point)
    data.update(
        count=point.count,
        sum=_optional(point, "sum"),
        min=_optional(point, "min"),
        max=_optional(point, "max"),
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
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
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
                        scope_name=scope_metrics.scope.name,
                        scope_version=scope_metrics.scope.version,
                        transport=transport,
                        description=metric.description,
                        temporality=(
                            _enum_name(_TEMPORALITIES, data.aggregation_temporality)
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
    logs: list[ReceivedLog] = []
    for resource_logs in request.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope_name = scope_logs.scope.name
            for record in scope_logs.log_records:
                logs.append(
                    ReceivedLog(
                        body=_any_value(record.body),
                        severity_text=record.severity_text,
                        severity_number=record.severity_number,
                        trace_id=record.trace_id.hex() or None,
                        span_id=record.span_id.hex() or None,
                        attributes=_attributes(record.attributes),
                        resource=resource,
                        scope_name=scope_name,
                        time_unix_nano=record.time_unix_nano,
                        observed_time_unix_nano=record.observed_time_unix_nano,
                        transport=transport,
                        event_name=record.event_name,
                    )
                )
    return logs


# --------------------------------------------------------------------------- OTLP JSON

# OTLP JSON is the protobuf JSON mapping with one exception: trace and span ids are hex,
# not base64. These are the only bytes fields so named in OTLP (spans, links, log
# records, exemplars); attribute keys never collide because KeyValue's JSON keys are
# "key" and "value".
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _convert_ids(node: Any, convert: Callable[[str], str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = convert(value)
            elif isinstance(value, (dict, list)):
                _convert_ids(value, convert)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _convert_ids(item, convert)


def _hex_to_base64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _base64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def from_otlp_json(data: bytes | str, message_type: type[_M]) -> _M:
    """Parse OTLP JSON (hex ids, int or named enums) into a new ``message_type`` message.

    Unknown fields are ignored, as the OTLP spec requires of receivers. Raises
    ``ValueError`` (or protobuf's ``ParseError``) on malformed input.
    """
    from google.protobuf import json_format

    document = json.loads(data)
    _convert_ids(document, _hex_to_base64)
    message = message_type()
    json_format.ParseDict(document, message, ignore_unknown_fields=True)
    return message


def to_otlp_json(message: Message) -> str:
    """Serialize a protobuf message as compact OTLP JSON (camelCase, hex ids, int enums)."""
    from google.protobuf import json_format

    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    _convert_ids(document, _base64_to_hex)
    return json.dumps(document, separators=(",", ":"))


# --------------------------------------------------------------------------- HTTP transport


def _message_types(signal: str) -> tuple[type[Message], type[Message]]:
    """The (request, response) classes of a signal; imported on first use (~60 ms)."""
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb

        return pb.ExportTraceServiceRequest, pb.ExportTraceServiceResponse
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb

        return pb.ExportMetricsServiceRequest, pb.ExportMetricsServiceResponse
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb

    return pb.ExportLogsServiceRequest, pb.ExportLogsServiceResponse


class _HTTPError(Exception):
    """An OTLP/HTTP request the receiver refuses, with the status to reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits_options = (16 + zlib.MAX_WBITS,)
    elif encoding == "deflate":
        # "deflate" means zlib-wrapped (RFC 9110), but some clients send raw deflate.
        wbits_options = (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    else:
        raise _HTTPError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    error: zlib.error | None = None
    for wbits in wbits_options:
        decompressor = zlib.decompressobj(wbits)
        try:
            # Bounded output, so a small compressed bomb cannot exhaust memory.
            data = decompressor.decompress(body, _MAX_BODY_BYTES + 1)
        except zlib.error as exc:
            error = exc
            continue
        if len(data) > _MAX_BODY_BYTES:
            raise _HTTPError(413, f"decompressed body exceeds {_MAX_BODY_BYTES} bytes")
        if not decompressor.eof:
            raise _HTTPError(400, f"truncated {encoding} body")
        return data
    raise _HTTPError(400, f"could not decompress {encoding} body: {error}")


def _parse_http_body(signal: str, body: bytes, as_json: bool) -> Message:
    request_type = _message_types(signal)[0]
    try:
        if as_json:
            return from_otlp_json(body, request_type)
        message = request_type()
        message.ParseFromString(body)
        return message
    # Anything the parser raises means the client sent something we cannot read.
    except Exception as exc:
        kind = "OTLP JSON" if as_json else "protobuf"
        raise _HTTPError(
            400,
            f"could not decode {kind} {request_type.__name__}: {str(exc) or type(exc).__name__}",
        ) from exc


class _OTLPHTTPHandler(http.server.BaseHTTPRequestHandler):
    """Serves OTLP/HTTP export requests for the receiver that owns the server."""

    # HTTP/1.1 keeps connections alive, which the exporters' connection pools rely on.
    protocol_version = "HTTP/1.1"
    server_version = "clstock-otel-receiver"
    # An idle keep-alive connection is dropped after this long, freeing its thread.
    timeout = 120
    server: _OTLPHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # The base class writes every request to stderr; keep that at debug level.
        if _logger.isEnabledFor(logging.DEBUG):
            _logger.debug("OTLP/HTTP %s: %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        signal = _HTTP_PATHS.get(path)
        if signal is None:
            self._reply_error(404, f"unknown path {path!r}; OTLP/HTTP paths are {_PATH_LIST}")
            return
        # get_content_type() defaults to text/plain; name a missing header as such.
        content_type = self.headers.get_content_type() if "Content-Type" in self.headers else ""
        if content_type != _JSON_TYPE and content_type not in _PROTOBUF_TYPES:
            self._reply_error(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}; "
                "use application/x-protobuf or application/json",
            )
            return
        as_json = content_type == _JSON_TYPE
        try:
            body = self._read_body()
        except _HTTPError as exc:
            self._reply_error(exc.status, exc.message, as_json=as_json)
            return
        with self.server.track_request():
            try:
                encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
                message = _parse_http_body(signal, _decompress(body, encoding), as_json)
            except _HTTPError as exc:
                # The body was read in full, so the connection can stay open.
                self._reply_error(exc.status, exc.message, as_json=as_json, close=False)
                return
            try:
                response = self.server.receiver._ingest(signal, message, "http")
            except Exception:
                _logger.exception("OTLP receiver failed to store an OTLP/HTTP %s request", signal)
                self._reply_error(500, "internal receiver error", as_json=as_json, close=False)
                return
            if as_json:
                self._reply(200, to_otlp_json(response).encode(), _JSON_TYPE)
            else:
                self._reply(200, response.SerializeToString(), "application/x-protobuf")

    def _method_not_allowed(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in _HTTP_PATHS:
            self._reply_error(404, f"unknown path {path!r}; OTLP/HTTP paths are {_PATH_LIST}")
            return
        self._reply_error(405, f"{self.command} not allowed; use POST", extra={"Allow": "POST"})

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise _HTTPError(411, "Content-Length or chunked Transfer-Encoding required")
        try:
            length = int(length_header)
        except ValueError:
            raise _HTTPError(400, f"invalid Content-Length {length_header!r}") from None
        if length < 0:
            raise _HTTPError(400, f"invalid Content-Length {length_header!r}")
        if length > _MAX_BODY_BYTES:
            raise _HTTPError(413, f"body of {length} bytes exceeds {_MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _HTTPError(400, "connection closed before the whole body arrived")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _HTTPError(400, "malformed chunked body") from None
            if size == 0:
                # Skip optional trailers up to the terminating blank line.
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _HTTPError(413, f"body exceeds {_MAX_BODY_BYTES} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _HTTPError(400, "connection closed before the whole body arrived")
            chunks.append(chunk)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _reply(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        *,
        close: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if close:
            # The request body may be unread; closing keeps the stream in sync.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def _reply_error(
        self,
        status: int,
        message: str,
        *,
        as_json: bool | None = None,
        close: bool = True,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.server.receiver._count_rejected("http")
        # OTLP/HTTP error bodies are google.rpc.Status in the request's encoding.
        code = _RPC_INTERNAL if status >= 500 else _RPC_INVALID_ARGUMENT
        if as_json is None:
            payload, content_type = message.encode(), "text/plain; charset=utf-8"
        elif as_json:
            payload = json.dumps({"code": code, "message": message}).encode()
            content_type = _JSON_TYPE
        else:
            from google.rpc import status_pb2

            payload = status_pb2.Status(code=code, message=message).SerializeToString()
            content_type = "application/x-protobuf"
        self._reply(status, payload, content_type, close=close, extra=extra)


class _OTLPHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that can close its keep-alive connections on stop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: OTLPReceiver) -> None:
        self.receiver = receiver
        self._connections: set[socket.socket] = set()
        self._in_flight = 0
        self._state = threading.Condition()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _OTLPHTTPHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall for seconds
        # without DNS; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._state:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._state:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr, e.g. when stop() cuts a connection.
        _logger.debug("OTLP/HTTP connection from %s failed", client_address, exc_info=True)

    def track_request(self) -> _InFlight:
        return _InFlight(self)

    def close_connections(self, grace: float) -> None:
        """Let requests in progress finish (up to ``grace`` seconds), then drop all."""
        with self._state:
            self._state.wait_for(lambda: self._in_flight == 0, timeout=grace)
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _InFlight:
    """Context manager counting a request in progress on an ``_OTLPHTTPServer``."""

    def __init__(self, server: _OTLPHTTPServer) -> None:
        self._server = server

    def __enter__(self) -> None:
        with self._server._state:
            self._server._in_flight += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._server._state:
            self._server._in_flight -= 1
            self._server._state.notify_all()


# --------------------------------------------------------------------------- gRPC transport


class _GrpcExportServicer:
    """The ``Export`` method of one OTLP gRPC service, feeding the receiver.

    Duck-typed instead of subclassing the generated servicers, so that defining it does
    not import grpc; the generated ``add_*Servicer_to_server`` only looks up ``Export``.
    """

    def __init__(self, receiver: OTLPReceiver, signal: str) -> None:
        self._receiver = receiver
        self._signal = signal

    def Export(self, request: Message, context: Any) -> Message:
        try:
            return self._receiver._ingest(self._signal, request, "grpc")
        except Exception:
            import grpc

            _logger.exception("OTLP receiver failed to store an OTLP/gRPC %s request", self._signal)
            context.abort(grpc.StatusCode.INTERNAL, "internal receiver error")
            raise  # unreachable: abort raises


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- receiver


class OTLPReceiver:
    """An in-process OTLP/HTTP + OTLP/gRPC receiver that keeps what it receives.

    ``http_port`` / ``grpc_port`` 0 pick free ports; ``grpc_port=None`` disables gRPC.
    With ``retain=False`` nothing is stored (listeners and counters still work), for a
    long-running collector. All methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int | None = 0,
        *,
        retain: bool = True,
    ) -> None:
        self._host = host
        self._requested_http_port = http_port
        self._requested_grpc_port = grpc_port
        self._retain = retain
        # One condition guards all stored state; waiters wake on every change.
        self._cond = threading.Condition()
        self._generation = 0
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []
        self._logs: list[ReceivedLog] = []
        self._raw_trace_requests: list[ExportTraceServiceRequest] = []
        self._counts: dict[str, Counter[str]] = {"http": Counter(), "grpc": Counter()}
        self._listeners: list[SpanListener] = []
        self._lifecycle = threading.Lock()
        self._http_server: _OTLPHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc_server: Any = None
        self._grpc_executor: Any = None
        self._http_port: int | None = None
        self._grpc_port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> OTLPReceiver:
        """Bind the ports and start serving; a no-op if already running.

        Raises ``OSError`` if a port cannot be bound (nothing is left running then).
        """
        with self._lifecycle:
            if self._http_server is not None:
                return self
            _message_types("traces")  # import the protos now, not on the first request
            server = _OTLPHTTPServer((self._host, self._requested_http_port), self)
            thread = threading.Thread(
                target=server.serve_forever,
                # Short poll so stop() returns promptly.
                kwargs={"poll_interval": 0.05},
                name=f"otlp-receiver-http-{server.server_port}",
                daemon=True,
            )
            thread.start()
            self._http_server, self._http_thread = server, thread
            self._http_port = server.server_port
            if self._requested_grpc_port is not None:
                try:
                    self._start_grpc(self._requested_grpc_port)
                except BaseException:
                    self._stop_locked(grace=0)
                    raise
            _logger.debug(
                "OTLP receiver listening: http=%s grpc=%s", self._http_port, self._grpc_port
            )
            return self

    def _start_grpc(self, port: int) -> None:
        # Imported here: grpc costs ~100 ms to import and the CLI imports this module.
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        executor = futures.ThreadPoolExecutor(
            max_workers=_GRPC_MAX_WORKERS, thread_name_prefix="otlp-receiver-grpc"
        )
        server = grpc.server(
            executor,
            options=[
                # gRPC enables SO_REUSEPORT by default, which would let a second receiver
                # (or a real collector) silently share a fixed port with this one.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", _MAX_BODY_BYTES),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _GrpcExportServicer(self, "traces"), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _GrpcExportServicer(self, "metrics"), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            _GrpcExportServicer(self, "logs"), server
        )
        address = _format_address(self._host, port)
        try:
            bound_port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio >= 1.53 raises instead of returning 0
            executor.shutdown(wait=False)
            raise OSError(f"OTLP receiver could not bind gRPC to {address}: {exc}") from exc
        if bound_port == 0:
            executor.shutdown(wait=False)
            raise OSError(f"OTLP receiver could not bind gRPC to {address}")
        server.start()
        self._grpc_server, self._grpc_executor, self._grpc_port = server, executor, bound_port

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving and release the ports; requests in progress get ``grace`` seconds.

        Stored telemetry stays readable. A no-op if not running; ``start`` may be called
        again afterwards (port 0 then picks new ports).
        """
        with self._lifecycle:
            self._stop_locked(grace)

    def _stop_locked(self, grace: float) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace).wait(grace + 5)
            self._grpc_executor.shutdown(wait=False)
            self._grpc_server = self._grpc_executor = None
        if self._http_server is not None:
            server, thread = self._http_server, self._http_thread
            server.shutdown()  # stop accepting
            server.server_close()  # release the port
            server.close_connections(grace)  # and cut keep-alive connections
            if thread is not None:
                thread.join(grace + 5)
            self._http_server = self._http_thread = None
        self._http_port = self._grpc_port = None

    @property
    def running(self) -> bool:
        """Whether the receiver is serving."""
        return self._http_server is not None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        if not self.running:
            return f"<OTLPReceiver {self._host} stopped>"
        return f"<OTLPReceiver http={self.http_endpoint} grpc={self.grpc_endpoint}>"

    # ---------------------------------------------------------------- endpoints

    @property
    def http_port(self) -> int:
        """The bound OTLP/HTTP port."""
        port = self._http_port
        if port is None:
            raise RuntimeError(_NOT_RUNNING)
        return port

    @property
    def grpc_port(self) -> int | None:
        """The bound OTLP/gRPC port, or None when gRPC is disabled."""
        if not self.running:
            raise RuntimeError(_NOT_RUNNING)
        return self._grpc_port

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTLP/HTTP, e.g. ``http://127.0.0.1:4318`` (append ``/v1/traces``)."""
        return f"http://{_format_address(self._host, self.http_port)}"

    @property
    def grpc_endpoint(self) -> str | None:
        """``http://host:port`` for the OTLP/gRPC exporters (insecure), or None if disabled."""
        port = self.grpc_port
        return None if port is None else f"http://{_format_address(self._host, port)}"

    # ---------------------------------------------------------------- ingestion

    def _ingest(self, signal: str, request: Any, transport: str) -> Message:
        """Decode and store one export request; returns the response message to send."""
        # Decoding is the expensive part and needs no lock.
        if signal == "traces":
            spans = decode_trace_request(request, transport)
            with self._cond:
                self._count(transport, trace_requests=1, spans=len(spans))
                if self._retain:
                    self._spans.extend(spans)
                    self._raw_trace_requests.append(request)
            if spans:
                self._notify_listeners(spans)
        elif signal == "metrics":
            metrics = decode_metrics_request(request, transport)
            points = sum(len(metric.data_points) for metric in metrics)
            with self._cond:
                self._count(transport, metric_requests=1, metric_data_points=points)
                if self._retain:
                    self._metrics.extend(metrics)
        else:
            logs = decode_logs_request(request, transport)
            with self._cond:
                self._count(transport, log_requests=1, log_records=len(logs))
                if self._retain:
                    self._logs.extend(logs)
        return _message_types(signal)[1]()

    def _count(self, transport: str, **increments: int) -> None:
        """Bump counters and wake waiters; call with ``self._cond`` held."""
        self._counts[transport].update(increments)
        self._generation += 1
        self._cond.notify_all()

    def _count_rejected(self, transport: str) -> None:
        with self._cond:
            self._count(transport, rejected_requests=1)

    def _notify_listeners(self, spans: Sequence[ReceivedSpan]) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(spans)
            except Exception:
                _logger.exception("OTLP receiver span listener %r failed", listener)

    def add_listener(self, callback: SpanListener) -> None:
        """Call ``callback(spans)`` after each trace export request is stored.

        It runs on the transport's request thread (possibly several at once, so it must
        be thread-safe) and the exporter waits for it; an exception it raises is logged
        and otherwise ignored.
        """
        with self._cond:
            self._listeners.append(callback)

    def remove_listener(self, callback: SpanListener) -> None:
        """Stop calling ``callback``; a no-op if it is not registered."""
        with self._cond:
            if callback in self._listeners:
                self._listeners.remove(callback)

    # ---------------------------------------------------------------- reading

    def spans(self) -> list[ReceivedSpan]:
        """All stored spans, in arrival order."""
        with self._cond:
            return list(self._spans)

    def metrics(self) -> list[ReceivedMetric]:
        """All stored metrics, in arrival order (cumulative metrics repeat per export)."""
        with self._cond:
            return list(self._metrics)

    def logs(self) -> list[ReceivedLog]:
        """All stored log records, in arrival order."""
        with self._cond:
            return list(self._logs)

    def raw_trace_requests(self) -> list[ExportTraceServiceRequest]:
        """The stored ``ExportTraceServiceRequest`` messages as received (do not mutate)."""
        with self._cond:
            return list(self._raw_trace_requests)

    def stats(self) -> dict[str, ReceiverStats]:
        """Counters per transport, keyed ``"http"`` and ``"grpc"``."""
        with self._cond:
            return {
                transport: ReceiverStats(**counts) for transport, counts in self._counts.items()
            }

    def clear(self) -> None:
        """Drop all stored telemetry (counters and listeners are kept)."""
        with self._cond:
            self._spans.clear()
            self._metrics.clear()
            self._logs.clear()
            self._raw_trace_requests.clear()
            self._generation += 1
            self._cond.notify_all()

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        """Stored spans grouped by trace id, each trace sorted by start time."""
        traces: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans():
            traces.setdefault(span.trace_id, []).append(span)
        for spans in traces.values():
            spans.sort(key=_start_time)
        return traces

    def children_of(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        """The stored direct children of ``span``, sorted by start time."""
        children = [
            candidate
            for candidate in self.spans()
            if candidate.parent_span_id == span.span_id and candidate.trace_id == span.trace_id
        ]
        children.sort(key=_start_time)
        return children

    def find(
        self,
        name: str | None = None,
        *,
        service: str | None = None,
        kind: str | None = None,
        trace_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> list[ReceivedSpan]:
        """Stored spans matching every given criterion, in arrival order.

        ``attributes`` matches spans that have at least these attribute values.
        """
        return [
            span
            for span in self.spans()
            if (name is None or span.name == name)
            and (service is None or span.service_name == service)
            and (kind is None or span.kind == kind)
            and (trace_id is None or span.trace_id == trace_id)
            and (
                attributes is None
                or all(span.attributes.get(k, _MISSING) == v for k, v in attributes.items())
            )
        ]

    # ---------------------------------------------------------------- waiting

    def wait_for_spans(
        self,
        predicate: Callable[[list[ReceivedSpan]], bool] | None = None,
        *,
        count: int | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedSpan]:
        """Block until ``predicate(spans)`` holds and at least ``count`` spans are stored.

        With neither given, waits for any span. Returns the spans that satisfied the
        condition. Raises ``TimeoutError`` describing what was received instead.
        """
        wanted = _describe_wanted(predicate, count, "spans")
        return self._wait(
            self.spans, _ready(predicate, count), timeout, wanted, self._describe_spans
        )

    def wait_for_metrics(
        self,
        predicate: Callable[[list[ReceivedMetric]], bool] | None = None,
        *,
        name: str | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedMetric]:
        """Block until ``predicate(metrics)`` holds and a metric called ``name`` is stored.

        With neither given, waits for any metric. Raises ``TimeoutError`` on timeout.
        """

        def ready(metrics: list[ReceivedMetric]) -> bool:
            if name is not None and not any(metric.name == name for metric in metrics):
                return False
            return bool(metrics) if predicate is None else predicate(metrics)

        wanted = "metrics" + (f" (name={name!r})" if name is not None else "")
        if predicate is not None:
            wanted += f" matching {_callable_name(predicate)}"
        return self._wait(self.metrics, ready, timeout, wanted, self._describe_metrics)

    def wait_for_logs(
        self,
        predicate: Callable[[list[ReceivedLog]], bool] | None = None,
        *,
        count: int | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedLog]:
        """Block until ``predicate(logs)`` holds and at least ``count`` records are stored.

        With neither given, waits for any record. Raises ``TimeoutError`` on timeout.
        """
        wanted = _describe_wanted(predicate, count, "log records")
        return self._wait(self.logs, _ready(predicate, count), timeout, wanted, self._describe_logs)

    def _wait(
        self,
        snapshot: Callable[[], list[_T]],
        ready: Callable[[list[_T]], bool],
        timeout: float,
        wanted: str,
        describe: Callable[[list[_T]], str],
    ) -> list[_T]:
        if not self._retain:
            raise RuntimeError("this OTLP receiver was created with retain=False")
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            with self._cond:
                # Sleep until something changes; the predicate runs outside the lock so
                # ingestion is never blocked behind a slow check.
                self._cond.wait_for(
                    lambda since=seen: self._generation != since,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                seen = self._generation
            items = snapshot()
            if ready(items):
                return items
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"timed out after {timeout:g}s waiting for {wanted}. {describe(items)}"
                )

    def _requests_summary(self, counter: str) -> str:
        stats = self.stats()
        return ", ".join(f"{t}: {getattr(s, counter)}" for t, s in stats.items())

    def _endpoint_hint(self, path: str) -> str:
        try:
            http_endpoint, grpc_endpoint = self.http_endpoint, self.grpc_endpoint
        except RuntimeError:  # stopped, possibly while we were waiting
            return "The receiver is not running."
        hint = f"Exporters should send to {http_endpoint}{path} (OTLP/HTTP)"
        if grpc_endpoint is not None:
            hint += f" or {grpc_endpoint} (OTLP/gRPC)"
        return hint + "."

    def _describe_spans(self, spans: list[ReceivedSpan]) -> str:
        requests = self._requests_summary("trace_requests")
        if not spans:
            return f"No spans received (trace export requests: {requests}). " + (
                self._endpoint_hint("/v1/traces")
            )
        names: dict[str | None, Counter[str]] = {}
        for span in spans:
            names.setdefault(span.service_name, Counter())[f"{span.name} ({span.kind})"] += 1
        trace_count = len({span.trace_id for span in spans})
        lines = [
            f"Received {len(spans)} span(s) in {trace_count} trace(s) "
            f"(trace export requests: {requests}):"
        ]
        for service, counter in names.items():
            listed = ", ".join(f"{name!s} x{n}" for name, n in counter.items())
            lines.append(f"  service {service!r}: {listed}")
        return "\n".join(lines)

    def _describe_metrics(self, metrics: list[ReceivedMetric]) -> str:
        requests = self._requests_summary("metric_requests")
        if not metrics:
            return f"No metrics received (metric export requests: {requests}). " + (
                self._endpoint_hint("/v1/metrics")
            )
        names: dict[str | None, dict[str, str]] = {}
        for metric in metrics:
            names.setdefault(metric.service_name, {})[metric.name] = metric.kind
        lines = [f"Received {len(metrics)} metric(s) (metric export requests: {requests}):"]
        for service, kinds in names.items():
            listed = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
            lines.append(f"  service {service!r}: {listed}")
        return "\n".join(lines)

    def _describe_logs(self, logs: list[ReceivedLog]) -> str:
        requests = self._requests_summary("log_requests")
        if not logs:
            return f"No log records received (log export requests: {requests}). " + (
                self._endpoint_hint("/v1/logs")
            )
        per_service = Counter(log.service_name for log in logs)
        listed = ", ".join(f"{service!r} x{n}" for service, n in per_service.items())
        return f"Received {len(logs)} log record(s) (log export requests: {requests}): {listed}"


_MISSING = object()


def _start_time(span: ReceivedSpan) -> int:
    return span.start_time_unix_nano


def _callable_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def _ready(
    predicate: Callable[[list[_T]], bool] | None, count: int | None
) -> Callable[[list[_T]], bool]:
    def ready(items: list[_T]) -> bool:
        if count is not None and len(items) < count:
            return False
        if predicate is None:
            return count is not None or bool(items)
        return predicate(items)

    return ready


def _describe_wanted(predicate: Callable[..., Any] | None, count: int | None, what: str) -> str:
    conditions = []
    if count is not None:
        conditions.append(f"at least {count} {what}")
    if predicate is not None:
        conditions.append(f"{what} matching {_callable_name(predicate)}")
    return " and ".join(conditions) or f"any {what}"
