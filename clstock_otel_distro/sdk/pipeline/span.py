"""The pipeline's span: the OpenTelemetry ``Span`` API with the SDK's semantics, in slots.

A :class:`PipelineSpan` keeps what the SDK's ``Span`` keeps (name, ids, parent,
kind, times, attributes, events, links, status) and applies the same rules: the
span limits, attribute cleaning (``opentelemetry.attributes``' own function for
anything that is not a plain ``str``/``int``/``float``/``bool``), the status rules,
``record_exception``'s event, one end. It differs where the SDK's cost is:

- no lock per span and no ``BoundedAttributes``: attributes live in a plain dict
  (the common case, a new key with a plain value, is a type check, a length check
  and a dict store);
- no ``SpanContext`` unless someone asks for it (``get_span_context``): a child
  reads its parent's ids straight from the parent span;
- no ``ReadableSpan`` copy at end: the span itself is queued, and encoded on the
  export thread;
- events and links use the SDK's own ``Event``, ``Link`` and ``BoundedList`` (only
  spans that have them pay for them).

It is a ``ReadableSpan`` too (same base classes as the SDK's span), so code that
reads finished spans (an in-memory exporter, a test) sees the SDK's properties.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, SpanContext, SpanKind
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from clstock_otel_distro.sdk.pipeline.tracer import PipelineTracer

__all__ = ["PLAIN_TYPES", "PLAIN_TYPES_LIMITED", "UNLIMITED", "UNSET_STATUS", "PipelineSpan"]

# The SDK's loggers, so that the same warnings come from the same names (and the
# filters an application set on them keep applying).
_sdk_logger = logging.getLogger("opentelemetry.sdk.trace")
_attributes_logger = logging.getLogger("opentelemetry.attributes")

UNSET_STATUS = Status(StatusCode.UNSET)
# "No limit" as a number, so the hot path compares without a None check.
UNLIMITED = sys.maxsize
# The attribute value types stored as given, never cleaned (checked by exact class):
# without a length limit, and with one (then a str is checked against it).
PLAIN_TYPES = frozenset((str, int, float, bool))
PLAIN_TYPES_LIMITED = frozenset((int, float, bool))

_new_tuple = tuple.__new__
_DEFAULT_TRACE_STATE = trace_api.DEFAULT_TRACE_STATE
_TRACE_ID_MAX = (1 << 128) - 1
_SPAN_ID_MAX = (1 << 64) - 1

# Ending is check-then-set; one lock for all spans costs less than one per span and
# is held for two attribute accesses.
_end_lock = threading.Lock()


def _new_end_lock_in_child() -> None:
    # A fork while another thread held the lock would leave the child's locked forever.
    global _end_lock
    _end_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_end_lock_in_child)


def _is_valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    # The SDK's rule (opentelemetry.sdk.trace._is_valid_link).
    return bool(context and (context.is_valid or (attributes or context.trace_state)))


class PipelineSpan(trace_api.Span, ReadableSpan):
    """A recording span of the fast pipeline (see the module docstring)."""

    __slots__ = (
        "_attributes",
        "_context",
        "_dropped_attributes",
        "_end_time",
        "_events",
        "_flags",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_record_exception",
        "_set_status_on_exception",
        "_simple",
        "_span_id",
        "_start_time",
        "_static",
        "_status",
        "_trace_id",
        "_trace_state",
        "_tracer",
    )

    def __init__(
        self,
        tracer: PipelineTracer,
        name: str,
        trace_id: int,
        span_id: int,
        flags: trace_api.TraceFlags,
        trace_state: trace_api.TraceState | None,
        parent: PipelineSpan | SpanContext | None,
        kind: SpanKind,
        start_time: int,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._trace_id = trace_id
        self._span_id = span_id
        self._flags = flags
        self._trace_state = trace_state
        # The parent span itself when it is one of ours (its ids are read from it at
        # encoding), else its SpanContext; None for a root.
        self._parent = parent
        self._kind = kind
        self._start_time = start_time
        self._end_time = None
        self._attributes = {}
        self._dropped_attributes = 0
        self._events = None
        self._links = None
        self._status = UNSET_STATUS
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._context = None
        # The static attributes leading _attributes, when start_span_adopting was given
        # them (the encoder joins their fields once); None once the order may differ.
        self._static = None
        # Nothing but ids, name, kind, times and attributes to encode (no trace state,
        # events, links, dropped attributes or status; a parent of ours, or none):
        # the encoder's short path. Cleared by whatever adds one of those.
        self._simple = trace_state is None and (parent is None or parent.__class__ is PipelineSpan)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self.get_span_context()})'

    # ------------------------------------------------------------ the Span API

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            # What SpanContext(trace_id, span_id, False, flags, trace_state) builds (the
            # tuple of its six fields, validity included), made without its Python
            # __new__: traced calls ask for it at every end (the duration's exemplar).
            trace_id = self._trace_id
            span_id = self._span_id
            context = _new_tuple(SpanContext, (
                trace_id, span_id, False, self._flags,
                _DEFAULT_TRACE_STATE if self._trace_state is None else self._trace_state,
                0 < trace_id <= _TRACE_ID_MAX and 0 < span_id <= _SPAN_ID_MAX,
            ))
            # Kept while the span runs (its children ask for it); once it has ended it
            # waits in the export queue, where one more object the garbage collector
            # walks at every collection costs more than making it again.
            if self._end_time is None:
                self._context = context
        return context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Setting attribute on ended span.")
            return
        tracer = self._tracer
        attributes = self._attributes
        # The common case, exactly as the SDK would store it: a new non-empty str key,
        # a plain value that needs no cleaning, room left.
        if (
            key.__class__ is str
            and key
            and key not in attributes
            and len(attributes) < tracer._max_attributes
            and (value.__class__ in tracer._plain_types
                 or (value.__class__ is str and len(value) <= tracer._max_length))
        ):
            attributes[key] = value
            return
        self._set_attribute_slow(key, value)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Setting attribute on ended span.")
            return
        tracer = self._tracer
        stored = self._attributes
        # The common case, as set_attribute's: new non-empty str keys, plain values that
        # need no cleaning, room for all of them. The SDK would store exactly these, in
        # order; anything else goes the SDK's way, the mapping as a whole.
        if len(stored) + len(attributes) <= tracer._max_attributes:
            plain = tracer._plain_types
            for key, value in attributes.items():
                if key.__class__ is not str or not key or key in stored or (
                    value.__class__ not in plain
                    and not (value.__class__ is str and len(value) <= tracer._max_length)
                ):
                    break
            else:
                stored.update(attributes)
                return
        self._set_items(attributes)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        limits = self._tracer._span_limits
        bounded = self._bounded(limits.max_event_attributes, attributes)
        if self._ended("_add_event"):
            return
        if self._events is None:
            self._events = BoundedList(limits.max_events)
            self._simple = False
        self._events.append(Event(name=name, attributes=bounded, timestamp=timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not _is_valid_link(context, attributes):
            return
        limits = self._tracer._span_limits
        bounded = self._bounded(limits.max_link_attributes, attributes)
        if self._ended("_add_link"):
            return
        if self._links is None:
            self._links = BoundedList(limits.max_links)
            self._simple = False
        self._links.append(Link(context=context, attributes=bounded))

    def _bounded(self, limit: int | None, attributes: types.Attributes) -> BoundedAttributes:
        """An event's or link's attributes, cleaned and limited as the SDK does."""
        return BoundedAttributes(limit, attributes, immutable=True,
                                 max_value_len=self._tracer._span_limits.max_attribute_length)

    def _ended(self, what: str) -> bool:
        """Whether the span has ended (then the SDK's warning for ``what`` is logged)."""
        if self._end_time is None:
            return False
        _sdk_logger.warning("Tried calling %s on an ended span.", what)
        return True

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Tried calling %s on an ended span.", "update_name")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Tried calling %s on an ended span.", "set_status")
            return
        # The SDK's rules: OK is final, UNSET never overrides.
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _sdk_logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
            self._simple = False
        elif isinstance(status, StatusCode):
            if status is StatusCode.UNSET:
                return
            self._status = Status(status, description)
            self._simple = False

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        stacktrace = "".join(traceback.format_exception(exception))
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        exception_type = f"{module}.{qualname}" if module and module != "builtins" else qualname
        event_attributes: dict[str, types.AnyValue] = {
            EXCEPTION_TYPE: exception_type,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: stacktrace,
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event(name="exception", attributes=event_attributes, timestamp=timestamp)

    def end(self, end_time: int | None = None) -> None:
        with _end_lock:
            if self._end_time is not None:
                already_ended = True
            else:
                already_ended = False
                self._end_time = end_time if end_time is not None else time_ns()
        if already_ended:
            _sdk_logger.warning("Calling end() on an ended span.")
            return
        on_end = self._tracer._on_end
        if on_end is not None:
            on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        # The SDK span's context-manager rules: the exception is recorded as escaped.
        if exc_val is not None and self._end_time is None:
            if self._record_exception:
                self.record_exception(exception=exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(
                    Status(
                        status_code=StatusCode.ERROR,
                        description=f"{type(exc_val).__name__}: {exc_val}",
                    )
                )
        self.end()

    # ------------------------------------------------ attributes, the SDK's way

    def _set_attribute_slow(self, key: Any, value: Any) -> None:
        """``BoundedAttributes.__setitem__``: cleaning, invalid keys, the count limit."""
        if self._tracer._max_attributes == 0:
            self._dropped_attributes += 1
            self._simple = False
            return
        if not key or not isinstance(key, str):
            _attributes_logger.warning(
                "invalid key `%s`. must be non-empty string. Dropping key from attributes.",
                key,
            )
            self._dropped_attributes += 1
            self._simple = False
            return
        self._store(key, _clean_attribute_value(value, self._tracer._max_length_or_none))

    def _set_items(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """``BoundedAttributes._set_items``: the mapping cleaned as a whole, then stored."""
        tracer = self._tracer
        if tracer._max_attributes == 0:
            self._dropped_attributes += len(attributes)
            self._simple = False
            return
        cleaned = _clean_attribute_value(attributes, tracer._max_length_or_none)
        dropped = len(attributes) - len(cleaned)
        if dropped:
            self._dropped_attributes += dropped
            self._simple = False
        for key, value in cleaned.items():
            self._store(key, value)

    def _store(self, key: str, value: types.AnyValue) -> None:
        attributes = self._attributes
        self._static = None  # a key set again moves, the oldest may go: no known prefix
        # A key set again moves to the end, as in the SDK's dict.
        if key in attributes:
            del attributes[key]
        if len(attributes) >= self._tracer._max_attributes:
            _attributes_logger.warning(
                "Attributes dict is full. Dropping the oldest key-value pair from attributes "
                "to make space for the new key-value pair.",
            )
            del attributes[next(iter(attributes))]
            self._dropped_attributes += 1
            self._simple = False
        attributes[key] = value

    # ------------------------------------------------- ReadableSpan properties

    @property
    def context(self) -> SpanContext:
        return self.get_span_context()

    @property
    def parent(self) -> SpanContext | None:
        parent = self._parent
        if parent is None or isinstance(parent, SpanContext):
            return parent
        return parent.get_span_context()

    @property
    def attributes(self) -> types.Attributes:
        return MappingProxyType(self._attributes)

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def events(self) -> Sequence[Event]:
        return tuple(self._events) if self._events is not None else ()

    @property
    def dropped_events(self) -> int:
        return self._events.dropped if self._events is not None else 0

    @property
    def links(self) -> Sequence[Link]:
        return tuple(self._links) if self._links is not None else ()

    @property
    def dropped_links(self) -> int:
        return self._links.dropped if self._links is not None else 0

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self._tracer._instrumentation_scope

    @property
    def instrumentation_info(self) -> Any:
        return self._tracer.instrumentation_info

    def to_readable(self) -> ReadableSpan:
        """An SDK ``ReadableSpan`` with this span's data (for code that wants the SDK's type)."""
        return ReadableSpan(
            name=self._name, context=self.get_span_context(), parent=self.parent,
            resource=self.resource, attributes=BoundedAttributes(attributes=self._attributes),
            events=self.events, links=self.links, kind=self._kind, status=self._status,
            start_time=self._start_time, end_time=self._end_time,
            instrumentation_scope=self.instrumentation_scope,
        )

    def to_json(self, indent: int | None = 4) -> str:
        return self.to_readable().to_json(indent)
