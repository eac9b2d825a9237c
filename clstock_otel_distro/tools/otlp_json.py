"""The OTLP JSON codec: every place that reads or writes OTLP JSON goes through here.

OTLP JSON is the protobuf JSON mapping of the OTLP messages with one exception: trace
and span ids are hex, not base64. Three things need it:

- the receiver's OTLP/HTTP endpoint, for ``application/json`` request bodies of any
  signal: :func:`from_otlp_json` parses them into protobuf messages;
- the span file (:mod:`~clstock_otel_distro.tools.spanfile`) that ``clstock-otel
  collect`` and ``demo`` write: :func:`encode_spans` turns received spans into one
  ``TracesData`` line, laid out as the OpenTelemetry Collector's file exporter lays it
  out;
- ``clstock-otel report``, reading such files (ours or the collector's):
  :func:`decode_spans` turns one line back into :class:`ReceivedSpan` objects.

``decode_spans(encode_spans(spans)) == spans`` for any spans, and :func:`decode_spans`
gives what protobuf's own parser followed by
:func:`~clstock_otel_distro.tools.otlp_data.decode_trace_request` gives.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from clstock_otel_distro.tools.otlp_data import (
    SPAN_KINDS,
    STATUS_CODES,
    ReceivedEvent,
    ReceivedLink,
    ReceivedSpan,
    decode_trace_request,
    enum_name,
    message_types,
    parent_is_remote,
    span_flags,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = ["decode_spans", "encode_spans", "from_otlp_json"]

_M = TypeVar("_M", bound="Message")

# --------------------------------------------------------------------------- messages

# The only bytes fields so named in OTLP (spans, links, log records, exemplars); an
# attribute key never collides because KeyValue's JSON keys are "key" and "value".
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item)


def from_otlp_json(data: bytes | str, message_type: type[_M]) -> _M:
    """Parse OTLP JSON (hex ids, int or named enums) into a new ``message_type`` message.

    Unknown fields are ignored, as the OTLP spec requires of receivers. Raises
    ``ValueError`` (or protobuf's ``ParseError``) on malformed input.
    """
    from google.protobuf import json_format

    document = json.loads(data)
    _hex_ids_to_base64(document)
    message = message_type()
    json_format.ParseDict(document, message, ignore_unknown_fields=True)
    return message


# --------------------------------------------------------------------------- encoding
#
# One TracesData object, field for field as the Collector's pdata JSON marshaler (used
# by its file exporter) writes it: lowerCamelCase keys in proto declaration order, empty
# fields omitted, hex trace and span ids, enums as integers, 64-bit integers as decimal
# strings, and "status" always present ({} when unset). Readers (ours, the collector's
# otlpjsonfile receiver) only need valid OTLP JSON; matching the collector's layout
# keeps the two kinds of files diff-able.

_SPAN_KIND_NUMBERS = {name: number for number, name in enumerate(SPAN_KINDS)}
_STATUS_CODE_NUMBERS = {name: number for number, name in enumerate(STATUS_CODES)}
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


def _enum_number(numbers: dict[str, int], name: str) -> int:
    number = numbers.get(name)
    if number is not None:
        return number
    # The decoders keep an unknown enum value as its number.
    try:
        return int(name)
    except ValueError:
        return 0


def _ids(trace_id: str, span_id: str, trace_state: str) -> list[str]:
    fields = ['"traceId":"' + trace_id + '"', '"spanId":"' + span_id + '"']
    if trace_state:
        fields.append('"traceState":' + _quote(trace_state))
    return fields


def _with_attributes(fields: list[str], attributes: dict[str, Any]) -> str:
    if attributes:
        fields.append('"attributes":' + _encode_key_values(attributes))
    return "{" + ",".join(fields) + "}"


def _encode_event(event: ReceivedEvent) -> str:
    fields = [f'"timeUnixNano":"{event.time_unix_nano}"'] if event.time_unix_nano else []
    if event.name:
        fields.append('"name":' + _quote(event.name))
    return _with_attributes(fields, event.attributes)


def _encode_link(link: ReceivedLink) -> str:
    return _with_attributes(_ids(link.trace_id, link.span_id, link.trace_state), link.attributes)


def _encode_span(span: ReceivedSpan) -> str:
    parts = _ids(span.trace_id, span.span_id, span.trace_state)
    if span.parent_span_id:
        parts.append('"parentSpanId":"' + span.parent_span_id + '"')
    flags = span_flags(span.parent_is_remote)
    if flags:
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
        parts.append('"events":[' + ",".join(map(_encode_event, span.events)) + "]")
    if span.links:
        parts.append('"links":[' + ",".join(map(_encode_link, span.links)) + "]")
    status = ['"message":' + _quote(span.status_message)] if span.status_message else []
    code = _enum_number(_STATUS_CODE_NUMBERS, span.status_code)
    if code:
        status.append(f'"code":{code}')
    parts.append('"status":{' + ",".join(status) + "}")
    return "{" + ",".join(parts) + "}"


def encode_spans(spans: Sequence[ReceivedSpan]) -> str:
    """One OTLP JSON ``TracesData`` line (no newline) holding ``spans``, as the collector
    would write it.

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
            scope_fields = ['"name":' + _quote(name)] if name else []
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


# --------------------------------------------------------------------------- decoding
#
# Decoding walks the parsed JSON directly into ReceivedSpan objects, the way
# decode_trace_request walks protobuf messages: much faster than protobuf's json_format,
# which matters for the report of a benchmark run.
# Anything the walk does not expect falls back to from_otlp_json, and the tests check
# that both give the same spans.

# proto3 JSON writes non-finite doubles as strings; the collector writes Go's spelling.
_NON_FINITE = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "+Inf": math.inf,
    "-Infinity": -math.inf,
    "-Inf": -math.inf,
}


class _Malformed(ValueError):
    """A document that is not OTLP JSON traces, whatever parser reads it."""


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
    return enum_name(names, _int(value))


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


def _decode_time(message: dict[str, Any], camel: str, snake: str) -> int:
    return _int(_field(message, camel, snake) or 0)


def _decode_span(
    span: dict[str, Any], resource: dict[str, Any], scope: dict[str, Any], transport: str
) -> ReceivedSpan:
    status = span.get("status") or {}
    return ReceivedSpan(
        trace_id=_hex_id(_field(span, "traceId", "trace_id")),
        span_id=_hex_id(_field(span, "spanId", "span_id")),
        parent_span_id=_hex_id(_field(span, "parentSpanId", "parent_span_id")) or None,
        name=span.get("name", ""),
        kind=_enum(span.get("kind"), SPAN_KINDS, "SPAN_KIND_"),
        start_time_unix_nano=_decode_time(span, "startTimeUnixNano", "start_time_unix_nano"),
        end_time_unix_nano=_decode_time(span, "endTimeUnixNano", "end_time_unix_nano"),
        attributes=_decode_attributes(span.get("attributes")),
        status_code=_enum(status.get("code"), STATUS_CODES, "STATUS_CODE_"),
        status_message=status.get("message", ""),
        events=tuple(
            ReceivedEvent(
                name=event.get("name", ""),
                time_unix_nano=_decode_time(event, "timeUnixNano", "time_unix_nano"),
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
        scope_name=scope.get("name", ""),
        scope_version=scope.get("version", ""),
        transport=transport,
        trace_state=_field(span, "traceState", "trace_state") or "",
        parent_is_remote=parent_is_remote(_int(span.get("flags") or 0)),
    )


def _decode_document(document: Any, transport: str) -> list[ReceivedSpan]:
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
            spans.extend(
                _decode_span(span, resource, scope, transport)
                for span in scope_entry.get("spans") or ()
            )
    return spans


def decode_spans(line: str | bytes, transport: str = "file") -> list[ReceivedSpan]:
    """The spans of one OTLP JSON ``TracesData`` (or ``ExportTraceServiceRequest``) document.

    Accepts what protobuf's JSON parser accepts (lowerCamelCase or proto field names,
    enums as numbers or names, 64-bit integers as strings or numbers) and gives the
    spans it would. Raises ``ValueError`` (or protobuf's ``ParseError``) when the
    document is not OTLP JSON traces.
    """
    document = json.loads(line)
    try:
        return _decode_document(document, transport)
    except _Malformed:
        raise
    except (AttributeError, KeyError, TypeError, ValueError):
        # Something the fast walk does not expect (a field of an unusual JSON type):
        # let protobuf's own OTLP JSON parser have the last word.
        request_type = message_types("traces")[0]
        return decode_trace_request(from_otlp_json(line, request_type), transport)
