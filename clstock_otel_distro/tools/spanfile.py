"""The span file: OTLP JSON lines, as the OpenTelemetry Collector's ``file`` exporter writes.

``clstock-otel collect --output`` and ``clstock-otel demo`` write it, ``clstock-otel
report`` reads it, and so can any tool that reads the collector's files (its
``otlpjsonfile`` receiver, ``jq``)::

    from clstock_otel_distro.tools.spanfile import SpanFileWriter, read_spans

    with SpanFileWriter("spans.jsonl") as writer:   # appends, like the collector
        receiver.add_listener(writer.write)          # one line per export request
        ...
    spans, bad_lines = read_spans("spans.jsonl")     # also reads the collector's files

Each line is one ``TracesData`` object (``{"resourceSpans":[...]}``) in the OTLP JSON
encoding (hex trace and span ids, lowerCamelCase keys, enums as integers, 64-bit
integers as decimal strings), laid out field for field as the collector's pdata JSON
marshaler lays it out; see :func:`encode_spans`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from clstock_otel_distro.tools.otlp_receiver import (
    ReceivedEvent,
    ReceivedLink,
    ReceivedSpan,
    decode_trace_request,
    from_otlp_json,
)

__all__ = ["SpanFileWriter", "encode_spans", "read_spans"]

_FILE_BUFFER_BYTES = 1 << 20
_MAX_WARNINGS = 20

# --------------------------------------------------------------------------- encoding
#
# One line per export request: a TracesData object, field for field as the Collector's
# pdata JSON marshaler (used by its file exporter) writes it: lowerCamelCase keys in
# proto declaration order, empty fields omitted, hex trace and span ids, enums as
# integers, 64-bit integers as decimal strings, and "status" always present ({} when
# unset). Readers (ours, the collector's otlpjsonfile receiver) only need valid OTLP
# JSON; matching the collector's layout keeps the two kinds of files diff-able.

_SPAN_KIND_NUMBERS = {
    "UNSPECIFIED": 0,
    "INTERNAL": 1,
    "SERVER": 2,
    "CLIENT": 3,
    "PRODUCER": 4,
    "CONSUMER": 5,
}
_STATUS_CODE_NUMBERS = {"UNSET": 0, "OK": 1, "ERROR": 2}
_FLAG_HAS_IS_REMOTE = 0x100
_FLAG_IS_REMOTE = 0x200
# json's C string encoder: quotes and escapes, leaves non-ASCII as is (as Go does).
_quote: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _encode_double(value: float) -> str:
    """A float64 the way the collector's JSON stream writes it."""
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        # proto3 JSON spelling, which both the collector and protobuf's parsers read.
        return '"Infinity"' if value > 0 else '"-Infinity"'
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        # Shortest round-trip digits in exponent form, exponent without a leading zero.
        mantissa, exponent = repr(value).split("e")
        return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0')}"
    # Shortest round-trip digits in plain form, no trailing ".0" (Go's 'f', -1).
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _encode_any_value(value: Any) -> str:
    if isinstance(value, str):
        return '{"stringValue":' + _quote(value) + "}"
    if isinstance(value, bool):  # before int: bool is an int
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if isinstance(value, int):
        return '{"intValue":"' + str(value) + '"}'
    if isinstance(value, float):
        return '{"doubleValue":' + _encode_double(value) + "}"
    if isinstance(value, (bytes, bytearray)):
        return '{"bytesValue":"' + base64.b64encode(value).decode("ascii") + '"}'
    if isinstance(value, (tuple, list)):
        if not value:
            return '{"arrayValue":{}}'
        return '{"arrayValue":{"values":[' + ",".join(_encode_any_value(v) for v in value) + "]}}"
    if isinstance(value, dict):
        if not value:
            return '{"kvlistValue":{}}'
        return '{"kvlistValue":{"values":' + _encode_key_values(value) + "}}"
    return "{}"  # an empty AnyValue


def _encode_key_values(attributes: dict[str, Any]) -> str:
    return (
        "["
        + ",".join(
            ('{"key":' + _quote(key) + ',"value":' if key else '{"value":')
            + _encode_any_value(value)
            + "}"
            for key, value in attributes.items()
        )
        + "]"
    )


def _enum_number(names: dict[str, int], name: str) -> int:
    number = names.get(name)
    if number is not None:
        return number
    # decode_trace_request keeps unknown enum values as their number.
    try:
        return int(name)
    except ValueError:
        return 0


def _encode_span(span: ReceivedSpan) -> str:
    parts = ['"traceId":"' + span.trace_id + '"', '"spanId":"' + span.span_id + '"']
    if span.trace_state:
        parts.append('"traceState":' + _quote(span.trace_state))
    if span.parent_span_id:
        parts.append('"parentSpanId":"' + span.parent_span_id + '"')
    if span.parent_is_remote is not None:
        flags = _FLAG_HAS_IS_REMOTE | (_FLAG_IS_REMOTE if span.parent_is_remote else 0)
        parts.append(f'"flags":{flags}')
    if span.name:
        parts.append('"name":' + _quote(span.name))
    kind = _enum_number(_SPAN_KIND_NUMBERS, span.kind)
    if kind:
        parts.append(f'"kind":{kind}')
    if span.start_time_unix_nano:
        parts.append(f'"startTimeUnixNano":"{span.start_time_unix_nano}"')
    if span.end_time_unix_nano:
        parts.append(f'"endTimeUnixNano":"{span.end_time_unix_nano}"')
    if span.attributes:
        parts.append('"attributes":' + _encode_key_values(span.attributes))
    if span.events:
        events = []
        for event in span.events:
            fields = []
            if event.time_unix_nano:
                fields.append(f'"timeUnixNano":"{event.time_unix_nano}"')
            if event.name:
                fields.append('"name":' + _quote(event.name))
            if event.attributes:
                fields.append('"attributes":' + _encode_key_values(event.attributes))
            events.append("{" + ",".join(fields) + "}")
        parts.append('"events":[' + ",".join(events) + "]")
    if span.links:
        links = []
        for link in span.links:
            fields = ['"traceId":"' + link.trace_id + '"', '"spanId":"' + link.span_id + '"']
            if link.trace_state:
                fields.append('"traceState":' + _quote(link.trace_state))
            if link.attributes:
                fields.append('"attributes":' + _encode_key_values(link.attributes))
            links.append("{" + ",".join(fields) + "}")
        parts.append('"links":[' + ",".join(links) + "]")
    status = []
    if span.status_message:
        status.append('"message":' + _quote(span.status_message))
    code = _enum_number(_STATUS_CODE_NUMBERS, span.status_code)
    if code:
        status.append(f'"code":{code}')
    parts.append('"status":{' + ",".join(status) + "}")
    return "{" + ",".join(parts) + "}"


def encode_spans(spans: Sequence[ReceivedSpan]) -> str:
    """One OTLP JSON line (no newline) holding ``spans``, as the collector would write it.

    Spans are grouped by resource (spans decoded from one ``ResourceSpans`` share their
    resource dict) and then by instrumentation scope, in order of first appearance.
    What :class:`ReceivedSpan` does not carry is not written: dropped-attribute/event/
    link counts, schema URLs, scope attributes and link flags.
    """
    resources: dict[int, tuple[dict[str, Any], dict[tuple[str, str], list[str]]]] = {}
    for span in spans:
        entry = resources.get(id(span.resource))
        if entry is None:
            entry = resources[id(span.resource)] = (span.resource, {})
        entry[1].setdefault((span.scope_name, span.scope_version), []).append(_encode_span(span))
    resource_spans = []
    for resource, scopes in resources.values():
        resource_json = '{"attributes":' + _encode_key_values(resource) + "}" if resource else "{}"
        scope_spans = []
        for (name, version), encoded in scopes.items():
            scope_fields = []
            if name:
                scope_fields.append('"name":' + _quote(name))
            if version:
                scope_fields.append('"version":' + _quote(version))
            scope_spans.append(
                '{"scope":{' + ",".join(scope_fields) + '},"spans":[' + ",".join(encoded) + "]}"
            )
        resource_spans.append(
            '{"resource":' + resource_json + ',"scopeSpans":[' + ",".join(scope_spans) + "]}"
        )
    if not resource_spans:
        return "{}"
    return '{"resourceSpans":[' + ",".join(resource_spans) + "]}"


class SpanFileWriter:
    """Appends spans to a file as OTLP JSON lines, one line per :meth:`write` call.

    Thread-safe: the line is encoded outside the lock and appended to a buffered file
    under it. Call :meth:`flush` to make what was written visible to readers (``tail
    -f``), :meth:`close` at the end. ``mode="w"`` truncates an existing file first.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: str = "a") -> None:
        if mode not in ("a", "w"):
            raise ValueError(f"mode must be 'a' or 'w', not {mode!r}")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: TextIO | None = open(  # noqa: SIM115 - closed by close()
            self.path, mode, encoding="utf-8", newline="\n", buffering=_FILE_BUFFER_BYTES
        )
        self.lines_written = 0
        self.spans_written = 0

    def write(self, spans: Sequence[ReceivedSpan]) -> None:
        """Append ``spans`` as one line; does nothing for no spans."""
        if not spans:
            return
        line = encode_spans(spans) + "\n"
        with self._lock:
            if self._file is None:
                raise ValueError(f"{self.path} is closed")
            self._file.write(line)
            self.lines_written += 1
            self.spans_written += len(spans)

    def flush(self) -> None:
        """Write out the buffer."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Flush and close; later writes raise ``ValueError``. Idempotent."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> SpanFileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- reading
#
# Reading walks the parsed JSON directly into ReceivedSpan objects, the way
# decode_trace_request does from protobuf messages: about ten times faster than
# from_otlp_json (protobuf's json_format, ~7k spans/s here), which matters for the
# report of a benchmark run. Anything the walk does not expect falls back to
# from_otlp_json, and the tests check that both give the same spans.

_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS_CODES = ("UNSET", "OK", "ERROR")
# proto3 JSON writes non-finite doubles as strings; the collector writes Go's spelling.
_NON_FINITE = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "+Inf": math.inf,
    "-Infinity": -math.inf,
    "-Inf": -math.inf,
}


class _Malformed(ValueError):
    """A line the fast reader does not understand."""


def _field(message: dict[str, Any], camel: str, snake: str) -> Any:
    # OTLP JSON is lowerCamelCase; protobuf JSON parsers also accept the proto names.
    value = message.get(camel)
    return message.get(snake) if value is None else value


def _int(value: Any) -> int:
    # 64-bit integers are decimal strings in OTLP JSON, but numbers are accepted too.
    if isinstance(value, bool):
        raise _Malformed(f"expected an integer, got {value!r}")
    return int(value)


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> str:
    if value is None:
        return names[0]
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        name = value.removeprefix(prefix)
        if name not in names:
            raise _Malformed(f"unknown enum value {value!r}")
        return name
    number = _int(value)
    return names[number] if 0 <= number < len(names) else str(number)


def _decode_any_value(value: dict[str, Any]) -> Any:
    for camel, snake in (
        ("stringValue", "string_value"),
        ("boolValue", "bool_value"),
        ("intValue", "int_value"),
        ("doubleValue", "double_value"),
        ("arrayValue", "array_value"),
        ("kvlistValue", "kvlist_value"),
        ("bytesValue", "bytes_value"),
    ):
        item = _field(value, camel, snake)
        if item is None:
            continue
        if camel == "intValue":
            return _int(item)
        if camel == "doubleValue":
            return _NON_FINITE[item] if isinstance(item, str) else float(item)
        if camel == "arrayValue":
            return tuple(_decode_any_value(v) for v in item.get("values") or ())
        if camel == "kvlistValue":
            return _decode_attributes(item.get("values"))
        if camel == "bytesValue":
            return base64.b64decode(item)
        if camel == "boolValue" and not isinstance(item, bool):
            raise _Malformed(f"boolValue {item!r}")
        return item
    return None


def _decode_attributes(key_values: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv.get("key", ""): _decode_any_value(kv.get("value") or {}) for kv in key_values or ()}


def _hex_id(value: Any) -> str:
    if not value:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"id {value!r} is not a hex string")
    return bytes.fromhex(value).hex()  # validates, and lower-cases as the decoder does


def _decode_document(document: Any) -> list[ReceivedSpan]:
    """Spans of one OTLP JSON TracesData object, like ``decode_trace_request`` does."""
    if not isinstance(document, dict):
        raise _Malformed("not a JSON object")
    resource_spans = _field(document, "resourceSpans", "resource_spans")
    if resource_spans is None and document:
        raise _Malformed("no resourceSpans: not an OTLP JSON traces line")
    spans: list[ReceivedSpan] = []
    for resource_entry in resource_spans or ():
        resource = _decode_attributes((resource_entry.get("resource") or {}).get("attributes"))
        for scope_entry in _field(resource_entry, "scopeSpans", "scope_spans") or ():
            scope = scope_entry.get("scope") or {}
            scope_name, scope_version = scope.get("name", ""), scope.get("version", "")
            for span in scope_entry.get("spans") or ():
                status = span.get("status") or {}
                flags = _int(span.get("flags") or 0)
                spans.append(
                    ReceivedSpan(
                        trace_id=_hex_id(_field(span, "traceId", "trace_id")),
                        span_id=_hex_id(_field(span, "spanId", "span_id")),
                        parent_span_id=_hex_id(_field(span, "parentSpanId", "parent_span_id"))
                        or None,
                        name=span.get("name", ""),
                        kind=_enum(span.get("kind"), _SPAN_KINDS, "SPAN_KIND_"),
                        start_time_unix_nano=_int(
                            _field(span, "startTimeUnixNano", "start_time_unix_nano") or 0
                        ),
                        end_time_unix_nano=_int(
                            _field(span, "endTimeUnixNano", "end_time_unix_nano") or 0
                        ),
                        attributes=_decode_attributes(span.get("attributes")),
                        status_code=_enum(status.get("code"), _STATUS_CODES, "STATUS_CODE_"),
                        status_message=status.get("message", ""),
                        events=tuple(
                            ReceivedEvent(
                                name=event.get("name", ""),
                                time_unix_nano=_int(
                                    _field(event, "timeUnixNano", "time_unix_nano") or 0
                                ),
                                attributes=_decode_attributes(event.get("attributes")),
                            )
                            for event in span.get("events") or ()
                        ),
                        links=tuple(
                            ReceivedLink(
                                trace_id=_hex_id(_field(link, "traceId", "trace_id")),
                                span_id=_hex_id(_field(link, "spanId", "span_id")),
                                attributes=_decode_attributes(link.get("attributes")),
                                trace_state=_field(link, "traceState", "trace_state") or "",
                            )
                            for link in span.get("links") or ()
                        ),
                        resource=resource,
                        scope_name=scope_name,
                        scope_version=scope_version,
                        transport="file",
                        trace_state=_field(span, "traceState", "trace_state") or "",
                        parent_is_remote=(
                            bool(flags & _FLAG_IS_REMOTE) if flags & _FLAG_HAS_IS_REMOTE else None
                        ),
                    )
                )
    return spans


def _decode_line(line: str) -> list[ReceivedSpan]:
    document = json.loads(line)
    try:
        return _decode_document(document)
    except _Malformed:
        raise
    except (AttributeError, KeyError, TypeError, ValueError):
        # Something the fast walk does not expect (a field of an unusual JSON type):
        # let protobuf's own OTLP JSON parser have the last word.
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        return decode_trace_request(from_otlp_json(line, ExportTraceServiceRequest), "file")


def read_spans(
    path: str | Path, *, warn: Callable[[str], None] | None = None
) -> tuple[list[ReceivedSpan], int]:
    """The spans of an OTLP JSON lines file, and how many lines were skipped as bad.

    ``warn`` gets one message per bad line (default: printed to stderr), up to 20,
    then one saying how many more were skipped.
    """
    if warn is None:

        def warn(message: str) -> None:
            print(message, file=sys.stderr)

    spans: list[ReceivedSpan] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                spans.extend(_decode_line(line))
            except Exception as exc:  # any undecodable line is skipped, not fatal
                bad += 1
                if bad <= _MAX_WARNINGS:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    warn(f"{path}:{number}: skipped, not OTLP JSON traces ({reason[:200]})")
    if bad > _MAX_WARNINGS:
        warn(f"{path}: {bad - _MAX_WARNINGS} more bad lines skipped")
    return spans, bad
