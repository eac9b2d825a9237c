"""Spans to an OTLP ``ExportTraceServiceRequest``, written as protobuf bytes by hand.

The SDK's ``encode_spans`` builds a protobuf message object per span, attribute,
value, event and link, then serializes the tree. This writes the same fields,
decoding to the same message (tests/distro/test_span_pipeline_wire.py compares them
field by field), straight into bytes:

- the resource (per provider) and each instrumentation scope are encoded once and
  kept;
- a span attribute whose value repeats (a ``str``, ``int`` or ``bool``: method,
  route, symbol...) is encoded once and its bytes reused, at most
  :data:`MAX_CACHED_ATTRIBUTES` of them, then all forgotten and learned again;
- the URL-secret redaction of :mod:`clstock_otel_distro.sdk.redaction` is applied
  here, with that module's own functions.

Spans are grouped by resource then scope, in order of first appearance, as the SDK
groups them. What the SDK cannot encode it leaves out with an error log (an
``int`` beyond 64 bits, a string that is not valid Unicode); so does this, with
one warning per attribute key and type. It writes what the SDK writes, including
its choices: a link's trace state is not sent, ``flags`` carries only the
"is remote" bits, the status is always present.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from struct import Struct
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from opentelemetry.trace.status import StatusCode

from clstock_otel_distro.sdk.pipeline.span import PipelineSpan
from clstock_otel_distro.sdk.redaction import (
    _ATTRIBUTE_REDACTORS,
    _TEXT_REDACTORS,
    _redacted_attributes,
    redact_span,
    redact_text,
)

__all__ = ["MAX_CACHED_ATTRIBUTES", "SpanEncoder"]

_logger = logging.getLogger(__name__)

# About 150 bytes each (key, value and encoding): up to ~0.6 MB per kind.
MAX_CACHED_ATTRIBUTES = 4096
# Span names and attribute keys: a few hundred in practice.
MAX_CACHED_NAMES = 1024

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1
_fixed64 = Struct("<Q").pack
_fixed32 = Struct("<I").pack
_double = Struct("<d").pack
# span_id field (tag, length, big-endian id), and parent_span_id's: after trace_id's.
_SPAN_ID = Struct(">2sQ").pack
_SPAN_IDS = Struct(">2sQ2sQ").pack
# start_time_unix_nano and end_time_unix_nano (tag, fixed64 little-endian).
_TIMES = Struct("<cQcQ").pack
_SMALL = [bytes((n,)) for n in range(128)]

# SpanFlags: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK.
_LOCAL = 0x100
_REMOTE = 0x300
# Span.flags is field 16, fixed32: tag 133 as a varint.
_SPAN_FLAGS_LOCAL = b"\x85\x01" + _fixed32(_LOCAL)
_SPAN_FLAGS_REMOTE = b"\x85\x01" + _fixed32(_REMOTE)
_LINK_FLAGS_LOCAL = b"\x35" + _fixed32(_LOCAL)
_LINK_FLAGS_REMOTE = b"\x35" + _fixed32(_REMOTE)
_EMPTY_STATUS = b"\x7a\x00"
# SpanKind -> the Span.kind field (the OTLP enum is the API's value plus one).
_KIND_FIELD = [b"\x30" + _SMALL[value + 1] for value in range(5)]
_INTERNAL = SpanKind.INTERNAL
_KIND_INTERNAL = _KIND_FIELD[_INTERNAL.value]
# What ends a span whose status is unset and whose parent is local (or none).
_UNSET_LOCAL_TAIL = _EMPTY_STATUS + _SPAN_FLAGS_LOCAL
_REDACTED_KEYS = frozenset(_ATTRIBUTE_REDACTORS)
_TEXT_KEYS = frozenset(_TEXT_REDACTORS)


def _unencodable(span: Any, exc: Exception) -> None:
    _logger.warning("clstock-otel: span %r could not be encoded (%s: %s); it is not exported",
                    getattr(span, "name", None), type(exc).__name__, exc)
    _logger.debug("Span encoding failure", exc_info=True)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length(size: int) -> bytes:
    """A length as a varint (one or two bytes for a span: inline, no loop)."""
    if size < 0x80:
        return _SMALL[size]
    if size < 0x4000:
        return bytes(((size & 0x7F) | 0x80, size >> 7))
    return _varint(size)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the payload's length, the payload."""
    size = len(payload)
    return tag + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


def _string(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode("utf-8"))


def _any_value(value: Any) -> bytes:
    """An AnyValue message's bytes, with ``_encode_value``'s type order."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _string(b"\x0a", value)
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(
            b"\x32",
            b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]),
        )
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue message's bytes (the value is always present, even when empty)."""
    return _string(b"\x0a", key) + _field(b"\x12", _any_value(value))


class SpanEncoder:
    """Encodes spans; one per processor: :meth:`span_field` on the threads that end spans,
    :meth:`encode` on its export thread."""

    def __init__(self) -> None:
        # Span attribute fields (tag 9, with their KeyValue), by key then value, one
        # table per value type (True == 1, but they encode differently), at most
        # MAX_CACHED_ATTRIBUTES in all; double fields by key, up to the value.
        self._strings: dict[str, dict[str, bytes]] = {}
        self._ints: dict[str, dict[int, bytes]] = {}
        self._bools: dict[str, dict[bool, bytes]] = {}
        self._cached = 0
        self._float_prefixes: dict[str, bytes] = {}
        # Span name fields, by name.
        self._names: dict[str, bytes] = {}
        # id(static attributes) -> (them, their fields joined): _static_fields.
        self._statics: dict[int, tuple[Any, bytes | None]] = {}
        # The last trace id and its field: spans of a trace share the id (the same int
        # object, taken from the parent), and mostly arrive together.
        self._trace: tuple[Any, bytes] = (None, b"")
        # id(resource) / id(scope) -> (the object, its encoding); the object is held
        # so the id cannot be reused by another one.
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}
        self._warned: set[tuple[str, type]] = set()

    def span_field(self, span: PipelineSpan) -> bytes | None:
        """One ended span of the pipeline as its ``Span`` field, or None (with a warning)
        when it cannot be encoded. Called on the thread that ends the span: the queue
        then holds bytes (nothing for the garbage collector to walk), and the caches it
        shares with other threads are dicts, read and filled atomically."""
        try:
            return self._pipeline_span(span)
        except Exception as exc:  # a bug or an unencodable span: that span only
            _unencodable(span, exc)
            return None

    def encode(self, entries: Iterable[tuple[Any, Any]]) -> tuple[bytes, int]:
        """The request's bytes for ``entries`` and how many spans it holds.

        An entry is ``(tracer, bytes)``: a pipeline span already encoded by
        :meth:`span_field`, from that tracer of ours; or ``(None, span)``: a span of the
        SDK's (the pipeline stepped aside), redacted and encoded here. A span that
        cannot be encoded at all is left out with a warning.
        """
        # Encoded spans by source (a tracer of ours, or a (resource, scope) pair).
        buckets: dict[Any, list[bytes]] = {}
        sources: dict[Any, tuple[Any, Any]] = {}
        last_tracer = bucket = None
        count = 0
        for tracer, item in entries:
            if tracer is not None:
                if tracer is not last_tracer:
                    bucket = buckets.get(tracer)
                    if bucket is None:
                        bucket = buckets[tracer] = []
                        sources[tracer] = (tracer.resource, tracer._instrumentation_scope)
                    last_tracer = tracer
                bucket.append(item)  # type: ignore[union-attr]
                count += 1
                continue
            try:
                if item.__class__ is PipelineSpan:
                    encoded = self._pipeline_span(item)
                    resource = item.resource
                    scope = item.instrumentation_scope
                else:
                    item = redact_span(item)
                    resource = item.resource
                    scope = item.instrumentation_scope
                    encoded = self._readable_span(item)
            except Exception as exc:  # a bug or an unencodable span: that span only
                _unencodable(item, exc)
                continue
            source = (id(resource), id(scope))
            if source not in buckets:
                buckets[source] = []
                sources[source] = (resource, scope)
            buckets[source].append(encoded)
            count += 1
        # Grouped by resource, then scope, in order of first appearance (as the SDK).
        groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        for source, encoded_spans in buckets.items():
            if not encoded_spans:
                continue
            resource, scope = sources[source]
            group = groups.get(id(resource))
            if group is None:
                group = groups[id(resource)] = (resource, {})
            scope_group = group[1].get(id(scope))
            if scope_group is None:
                scope_group = group[1][id(scope)] = (scope, [])
            scope_group[1].extend(encoded_spans)

        request = []
        for resource, scopes in groups.values():
            body = [self._resource(resource)]
            for scope, encoded_spans in scopes.values():
                scope_spans = self._scope(scope) + b"".join(encoded_spans)
                if scope is not None and scope.schema_url:
                    scope_spans += _string(b"\x1a", scope.schema_url)
                body.append(_field(b"\x12", scope_spans))
            if resource.schema_url:
                body.append(_string(b"\x1a", resource.schema_url))
            request.append(_field(b"\x0a", b"".join(body)))
        return b"".join(request), count

    # ------------------------------------------------------------- one span

    def _pipeline_span(self, span: PipelineSpan) -> bytes:
        # The common span (no trace state, no events, links or dropped attributes, status
        # unset) written inline; anything else through _span, field by field.
        if not span._simple:
            return self._pipeline_span_in_full(span)
        parent = span._parent
        trace_id = span._trace_id
        trace = self._trace
        if trace[0] is not trace_id:
            trace = self._trace = (trace_id, b"\x0a\x10" + trace_id.to_bytes(16, "big"))
        name = span._name
        names = self._names
        name_field = names.get(name)
        if name_field is None:
            name_field = _string(b"\x2a", name) if name else b""
            if len(names) >= MAX_CACHED_NAMES:
                names.clear()
            names[name] = name_field
        kind = span._kind
        parts = [
            trace[1],
            _SPAN_ID(b"\x12\x08", span._span_id) if parent is None else
            _SPAN_IDS(b"\x12\x08", span._span_id, b"\x22\x08", parent._span_id),
            name_field,
            _KIND_INTERNAL if kind is _INTERNAL else _KIND_FIELD[kind.value],
            _TIMES(b"\x39", span._start_time, b"\x41", span._end_time),
        ]
        attributes = span._attributes
        if attributes:
            if not _REDACTED_KEYS.isdisjoint(attributes):
                changes = _redacted_attributes(attributes, _ATTRIBUTE_REDACTORS)
                if changes:
                    attributes = {**attributes, **changes}
            static = span._static
            if static is None:
                self._span_attributes(parts, attributes.items())
            else:
                # A traced operation's code attributes lead the dict: their fields were
                # joined once (start_span_adopting's static).
                known = self._statics.get(id(static))
                if known is None or known[0] is not static:
                    known = self._static_fields(static)
                if known[1] is None:
                    self._span_attributes(parts, attributes.items())
                else:
                    parts.append(known[1])
                    self._span_attributes(parts, islice(attributes.items(), len(static), None))
        parts.append(_UNSET_LOCAL_TAIL)
        body = b"".join(parts)
        size = len(body)  # _length(size), inline: a span's body is 128 to 16383 bytes
        if 0x80 <= size < 0x4000:
            return b"\x12" + bytes(((size & 0x7F) | 0x80, size >> 7)) + body
        return b"\x12" + _length(size) + body

    def _pipeline_span_in_full(self, span: PipelineSpan) -> bytes:
        parent = span._parent
        if parent is None:
            parent_id = None
            remote = False
        elif parent.__class__ is PipelineSpan:
            parent_id = parent._span_id
            remote = False
        else:
            parent_id = parent.span_id
            remote = parent.is_remote
        attributes = span._attributes
        if attributes and not _REDACTED_KEYS.isdisjoint(attributes):
            changes = _redacted_attributes(attributes, _ATTRIBUTE_REDACTORS)
            if changes:
                attributes = {**attributes, **changes}
        events = span._events
        links = span._links
        return self._span(
            span._trace_id, span._span_id, span._trace_state, parent_id, remote,
            span._name, span._kind, span._start_time, span._end_time, attributes,
            span._dropped_attributes, events, 0 if events is None else events.dropped,
            links, 0 if links is None else links.dropped, span._status, redact=True,
        )

    def _readable_span(self, span: ReadableSpan) -> bytes:
        # An SDK span (the pipeline stepped aside), already redacted by redact_span.
        context = span.get_span_context()
        parent = span.parent
        return self._span(
            context.trace_id, context.span_id, context.trace_state,
            parent.span_id if parent else None, bool(parent and parent.is_remote),
            span.name, span.kind, span.start_time, span.end_time, span.attributes,
            span.dropped_attributes, span.events, span.dropped_events, span.links,
            span.dropped_links, span.status, redact=False,
        )

    def _span(
        self,
        trace_id: int,
        span_id: int,
        trace_state: Any,
        parent_id: int | None,
        remote: bool,
        name: str,
        kind: Any,
        start_time: int | None,
        end_time: int | None,
        attributes: Mapping[str, Any],
        dropped_attributes: int,
        events: Sequence[Any] | None,
        dropped_events: int,
        links: Sequence[Any] | None,
        dropped_links: int,
        status: Any,
        *,
        redact: bool,
    ) -> bytes:
        parts = [
            b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big"),
        ]
        if trace_state:
            parts.append(_string(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items())))
        if parent_id is not None:
            parts += (b"\x22\x08", parent_id.to_bytes(8, "big"))
        if name:
            parts.append(_string(b"\x2a", name))
        parts.append(_KIND_FIELD[kind.value])
        if start_time:
            parts += (b"\x39", _fixed64(start_time))
        if end_time:
            parts += (b"\x41", _fixed64(end_time))
        if attributes:
            self._span_attributes(parts, attributes.items())
        if dropped_attributes:
            parts += (b"\x50", _varint(dropped_attributes))
        if events:
            for event in events:
                parts.append(_field(b"\x5a", self._event(event, redact)))
        if dropped_events:
            parts += (b"\x60", _varint(dropped_events))
        if links:
            for link in links:
                parts.append(_field(b"\x6a", self._link(link)))
        if dropped_links:
            parts += (b"\x70", _varint(dropped_links))
        parts.append(self._status(status, redact))
        parts.append(_SPAN_FLAGS_REMOTE if remote else _SPAN_FLAGS_LOCAL)
        return _field(b"\x12", b"".join(parts))

    def _static_fields(self, static: Mapping[str, Any]) -> tuple[Any, bytes | None]:
        """``static``'s attribute fields, joined, and kept (None: a redacted key, which
        the span's own values must go through)."""
        fields: list[bytes] = []
        if _REDACTED_KEYS.isdisjoint(static):
            self._span_attributes(fields, static.items())
        known = (static, b"".join(fields) if fields else None)
        statics = self._statics
        if len(statics) >= MAX_CACHED_NAMES:
            statics.clear()
        statics[id(static)] = known
        return known

    def _span_attributes(self, parts: list[bytes], items: Iterable[tuple[str, Any]]) -> None:
        # Cached encodings read by subscript (a miss raises KeyError, rare once warm:
        # then _learn encodes and keeps it), key then value: no tuple to build and hash
        # per attribute.
        strings = self._strings
        for key, value in items:
            kind = value.__class__
            try:
                if kind is str:
                    parts.append(strings[key][value])
                elif kind is float:
                    parts.append(self._float_prefixes[key] + _double(value))
                elif kind is int:
                    parts.append(self._ints[key][value])
                elif kind is bool:
                    parts.append(self._bools[key][value])
                else:
                    encoded = self._attribute(b"\x4a", key, value)
                    if encoded is not None:
                        parts.append(encoded)
            except KeyError:
                encoded = self._learn(key, value, kind)
                if encoded is not None:
                    parts.append(encoded)

    def _learn(self, key: str, value: Any, kind: type) -> bytes | None:
        """A str, int, bool or float attribute not cached yet: encoded, and kept."""
        if kind is float:
            return self._float_prefix(key) + _double(value)
        encoded = self._attribute(b"\x4a", key, value)
        if encoded is None:
            return None
        if self._cached >= MAX_CACHED_ATTRIBUTES:
            self._strings.clear()
            self._ints.clear()
            self._bools.clear()
            self._cached = 0
        table: dict[str, dict[Any, bytes]] = (
            self._strings if kind is str else self._ints if kind is int else self._bools)
        by_value = table.get(key)
        if by_value is None:
            by_value = table[key] = {}
        by_value[value] = encoded
        self._cached += 1
        return encoded

    def _float_prefix(self, key: str) -> bytes:
        """A double attribute's field up to its 8 value bytes (the same for every value)."""
        key_field = _string(b"\x0a", key)
        prefix = b"\x4a" + _varint(len(key_field) + 11) + key_field + b"\x12\x09\x21"
        if len(self._float_prefixes) >= MAX_CACHED_NAMES:
            self._float_prefixes.clear()
        self._float_prefixes[key] = prefix
        return prefix

    def _attribute(self, tag: bytes, key: str, value: Any) -> bytes | None:
        """One attribute as the field ``tag``, or None (logged) when it cannot be encoded."""
        try:
            return _field(tag, _key_value(key, value))
        except Exception as exc:
            problem = (key, type(value))
            if problem not in self._warned:
                self._warned.add(problem)
                _logger.warning(
                    "clstock-otel: attribute %r (%s) cannot be encoded in OTLP (%s: %s); it is "
                    "left out, as the OpenTelemetry SDK does", key, type(value).__name__,
                    type(exc).__name__, exc)
            return None

    def _attributes_of(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        if not attributes:
            return b""
        encoded = [self._attribute(tag, key, value) for key, value in attributes.items()]
        return b"".join([item for item in encoded if item is not None])

    def _event(self, event: Any, redact: bool) -> bytes:
        attributes = event.attributes
        if redact and attributes and not _TEXT_KEYS.isdisjoint(attributes):
            changes = _redacted_attributes(attributes, _TEXT_REDACTORS)
            if changes:
                attributes = {**attributes, **changes}
        parts = [b"\x09", _fixed64(event.timestamp)] if event.timestamp else []
        if event.name:
            parts.append(_string(b"\x12", event.name))
        parts.append(self._attributes_of(b"\x1a", attributes))
        if event.dropped_attributes:
            parts += (b"\x20", _varint(event.dropped_attributes))
        return b"".join(parts)

    def _link(self, link: Any) -> bytes:
        context = link.context
        parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
                 b"\x12\x08", context.span_id.to_bytes(8, "big"),
                 self._attributes_of(b"\x22", link.attributes)]
        if link.dropped_attributes:
            parts += (b"\x28", _varint(link.dropped_attributes))
        parts.append(_LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL)
        return b"".join(parts)

    @staticmethod
    def _status(status: Any, redact: bool) -> bytes:
        if status is None:
            return b""
        code = status.status_code
        description = status.description
        if code is StatusCode.UNSET and not description:
            return _EMPTY_STATUS
        body = b""
        if description:
            if redact:
                description = redact_text(description)
            body = _string(b"\x12", description)
        if code.value:
            body += b"\x18" + _varint(code.value)
        return _field(b"\x7a", body)

    # ---------------------------------------------------- resource and scope

    def _resource(self, resource: Any) -> bytes:
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            encoded = _field(b"\x0a", self._attributes_of(b"\x0a", resource.attributes))
            if len(self._resources) >= 16:  # a new resource per fork, not per span
                self._resources.clear()
            known = self._resources[id(resource)] = (resource, encoded)
        return known[1]

    def _scope(self, scope: Any) -> bytes:
        known = self._scopes.get(id(scope))
        if known is None or known[0] is not scope:
            if scope is None:
                body = b""
            else:
                body = b"".join((
                    _string(b"\x0a", scope.name) if scope.name else b"",
                    _string(b"\x12", scope.version) if scope.version else b"",
                    self._attributes_of(b"\x1a", scope.attributes),
                ))
            if len(self._scopes) >= 1024:
                self._scopes.clear()
            known = self._scopes[id(scope)] = (scope, _field(b"\x0a", body))
        return known[1]
