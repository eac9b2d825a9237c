"""One traced call: prepared once per target (:class:`Operation`), carried per call.

:meth:`Operation.begin` decides, for each call, one of three outcomes:

- ``None``: call straight through (instrumentation suppressed, or the ``per_call``
  hook declined the call, e.g. an excluded URL);
- a :class:`MeasuredCall`: the fast path under a non-sampled parent whose sampler
  drops such children (sampling.py): no span, only the duration;
- a :class:`TracedCall`: a span started with its attributes (computed only if it
  records), made current (``activate``) while the target runs.

The driver then ends it with ``succeed(value)`` or ``fail(exc)``: result attributes,
hidden failures, the exception, the span's end, and the duration
(durations.py defers a non-sampled one). Nothing here raises into the application:
extractors and hooks are guarded one by one. The hot path (``begin``, ``succeed``)
is judged by ``bench/per_call.py`` and ``bench/per_call_instructions.py``; it does not
bind arguments (arguments.py did that once) nor compute anything a non-recording span
does not need. Every Python call and step on it counts (on CPython 3.11 a call costs
about ten steps): the context is read and set on its ContextVar, the sampler's verdict
is remembered per parent (sampling.py), and the span starts inline in ``begin``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from time import perf_counter
from typing import Any

from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.metrics import NoOpHistogram
from opentelemetry.trace import Span, Status, StatusCode

from clstock_otel_distro.instrumentors._machinery.durations import (
    PENDING_LIMIT,
    TRACED_PENDING_LIMIT,
    TracedSlot,
)
from clstock_otel_distro.instrumentors._machinery.sampling import (
    DROPPED,
    RECORDS,
    SPAN_KEY,
    SUPPRESS_KEY,
    SUPPRESS_KEY_PLAIN,
    current_context_var,
)
from clstock_otel_distro.instrumentors._machinery.specs import (
    CallDetail,
    Target,
    TraceSpec,
    class_name,
    the_result,
)
from clstock_otel_distro.instrumentors._machinery.telemetry import InstrumentationTelemetry
from clstock_otel_distro.instrumentors._machinery.values import (
    attribute_value,
    error_type,
    record_error,
    safe_call,
)
from clstock_otel_distro.semconv import CLSTOCK_RUNTIME_CLASS, ERROR_TYPE

_logger = logging.getLogger(__name__)
# The API's logger for a failed detach, so the same message comes from the same name.
_context_logger = logging.getLogger("opentelemetry.context")

_HOOK = "per-call hook"
# Extracted values that attribute_value() would return unchanged, checked by class.
_PLAIN = frozenset((str, bool, int, float, type(None)))
_PLAIN_VALUES = frozenset((str, bool, int, float))


class Operation:
    """Everything about one traced callable that is known before it is called."""

    __slots__ = (
        "_context_var",
        "_length_limit",
        "_metric_errors",
        "_metric_ok",
        "_pending",
        "_pending_owner",
        "_pending_traced",
        "_records",
        "_start_adopting",
        "call_extractors",
        "classifies",
        "histogram",
        "kind",
        "name",
        "on_failure",
        "per_call",
        "result_error",
        "result_error_type",
        "result_events",
        "result_extractors",
        "runtime_owner",
        "sampling",
        "static_attributes",
        "tracer",
    )

    def __init__(self, telemetry: InstrumentationTelemetry, target: Target,
                 spec: TraceSpec) -> None:
        self.tracer = telemetry.tracer
        self.sampling = telemetry.sampling
        self.histogram = telemetry.histogram
        self.name = spec.name or target.span_name
        self.kind = spec.kind
        self.static_attributes = (
            target.code_attributes(telemetry.code_detail) if spec.code_attributes else {})
        self.runtime_owner = target.owner if target.track_runtime_class else None
        self.call_extractors = tuple((key, build(target)) for key, build in spec.attributes.items())
        self.result_extractors = tuple(
            (key, build(target)) for key, build in spec.result_attributes.items()
        )
        self.result_events = tuple(
            (event, build(target)) for event, build in spec.result_events.items()
        )
        self.result_error = spec.result_error(target) if spec.result_error else None
        self.result_error_type = spec.result_error_type
        self.on_failure = spec.on_failure
        self.per_call = spec.per_call(target) if spec.per_call else None
        # Whether a result is looked at before the call ends (a per-call detail may
        # fail it: an HTTP status, which its duration's attributes also need).
        self.classifies = self.result_error is not None or self.per_call is not None
        key = telemetry.operation_key
        self._metric_ok: dict[str, Any] = {key: self.name} if key else {}
        self._metric_errors: dict[str, dict[str, Any]] = {}
        pending = telemetry.pending
        deferred = pending is not None and self.per_call is None
        self._pending_owner = pending if deferred else None
        self._pending = pending.slot(self._metric_ok) if deferred else None
        # Where traced calls' durations wait: a TracedSlot once the SDK has resolved
        # this attribute set (its first recording) and they can; False if they cannot.
        self._pending_traced: Any = None if deferred else False
        # Recording into the API's no-op histogram (no MeterProvider) is skipped.
        self._records = not isinstance(self.histogram, NoOpHistogram)
        # The current context's ContextVar (sampling.py), or None: the API's functions.
        self._context_var = current_context_var()
        # The pipeline tracer's start_span_adopting (sdk/pipeline/tracer.py), when the
        # static attributes are plain values under non-empty str keys, as it requires.
        adopting = getattr(self.tracer, "start_span_adopting", None)
        limit = getattr(self.tracer, "attribute_length_limit", None)
        self._length_limit = limit if isinstance(limit, int) else 0
        self._start_adopting = adopting if callable(adopting) and isinstance(limit, int) and all(
            key.__class__ is str and key and value.__class__ in _PLAIN_VALUES
            and (value.__class__ is not str or len(value) <= limit)
            for key, value in self.static_attributes.items()) and all(
            key.__class__ is str and key for key, _ in self.call_extractors) else None

    # -- start -------------------------------------------------------------------------

    def begin(self, instance: Any, args: tuple, kwargs: dict,
              activate: bool = True) -> MeasuredCall | None:
        """Start one call: a traced call, a measured-only call (fast path), or None
        ("just call through")."""
        var = self._context_var
        ctx = get_current() if var is None else var.get()
        # Suppression and the sampler's verdict read the context by key (sampling.py),
        # inline: this is every call's path.
        if ctx.get(SUPPRESS_KEY) or ctx.get(SUPPRESS_KEY_PLAIN):
            return None
        parent = ctx.get(SPAN_KEY)
        call: MeasuredCall | None
        if self.per_call is not None:
            call = self._begin_described(ctx, parent, instance, args, kwargs)
            if call is None:
                return None
        else:
            sampling = self.sampling
            last = sampling.last
            verdict = last[1] if parent is last[0] else sampling.verdict(parent)
            if verdict == DROPPED:
                return MeasuredCall(self, instance, args, kwargs)
            # Certain to record: the call-time attributes go to start_span with the
            # static ones (one attribute copy instead of two; a sampler sees them).
            # Otherwise they are computed only if the span records.
            records = verdict == RECORDS
            try:  # start_span(), inline: every traced call's path
                if records:
                    attributes = self.static_attributes.copy()
                    if (self._extract_call_attributes(attributes, instance, args, kwargs)
                            and self._start_adopting is not None):
                        # A new dict of plain values, handed over: no check, no copy.
                        span = self._start_adopting(self.name, ctx, self.kind, attributes,
                                                    self.static_attributes or None)
                    else:
                        span = self.tracer.start_span(self.name, ctx, self.kind, attributes)
                else:
                    span = self.tracer.start_span(self.name, ctx, self.kind,
                                                  self.static_attributes)
            except Exception:
                _logger.debug("clstock-otel could not start span %s", self.name, exc_info=True)
                return None
            if not records and span.is_recording():
                self.annotate_call(span, instance, args, kwargs)
            # A recording child under a "records" verdict is sampled: the sampler's
            # delegate for a sampled local parent records and samples (sampling.py).
            call = TracedCall(self, span, ctx, instance, args, kwargs, records or None)
            if activate:  # TracedCall.activate(), inline
                call.token = attach(call.context) if var is None else var.set(call.context)
            return call
        if activate:
            call.activate()
        return call

    def _begin_described(self, ctx: Any, parent: Any, instance: Any, args: tuple,
                         kwargs: dict) -> MeasuredCall | None:
        """``begin`` for a per-call operation: the same three outcomes, with the span
        named and annotated by the call's detail, and the arguments it prepares."""
        detail = safe_call(self.per_call, instance, args, kwargs, what=_HOOK)
        if detail is None:
            return None
        call: MeasuredCall
        if self.sampling.verdict(parent) == DROPPED:
            call, context = MeasuredCall(self, instance, args, kwargs), ctx
        else:
            span = self._start_described(ctx, detail, instance, args, kwargs)
            if span is None:
                return None
            call = TracedCall(self, span, ctx, instance, args, kwargs)
            context = call.context
        call.detail = detail
        try:  # e.g. inject the context it propagates: the span's, or the parent's
            call.args, call.kwargs = detail.prepare(args, kwargs, context)
        except Exception:  # the call goes ahead with its own arguments
            _logger.debug("clstock-otel %s: %s failed", self.name, _HOOK, exc_info=True)
        return call

    def start_span(self, ctx: Any, name: str, attributes: Mapping[str, Any]) -> Span | None:
        """A span of this operation's kind under ``ctx``; None (logged) if that fails."""
        try:
            return self.tracer.start_span(name, ctx, self.kind, attributes)
        except Exception:
            _logger.debug("clstock-otel could not start span %s", name, exc_info=True)
            return None

    def _start_described(self, ctx: Any, detail: CallDetail, instance: Any, args: tuple,
                         kwargs: dict) -> Span | None:
        """The span of a per-call operation: named, and first annotated, by its detail."""
        try:
            name = detail.span_name
            attributes = {**self.static_attributes, **detail.attributes()}
        except Exception:
            _logger.debug("clstock-otel %s: %s failed", self.name, _HOOK, exc_info=True)
            return None
        span = self.start_span(ctx, name, attributes)
        if span is not None and span.is_recording():
            self.annotate_call(span, instance, args, kwargs)
            extra = safe_call(detail.recording_attributes, what=_HOOK)
            if extra:
                span.set_attributes(extra)
        return span

    def annotate_call(self, span: Span, instance: Any, args: tuple, kwargs: dict) -> None:
        """Set the call-time attributes of a recording span (each extractor guarded)."""
        attributes = self.call_attributes(instance, args, kwargs, static=False)
        if attributes:
            span.set_attributes(attributes)

    def call_attributes(self, instance: Any, args: tuple, kwargs: dict,
                        static: bool = True) -> dict[str, Any]:
        """The call-time attributes (each extractor guarded), after the static ones."""
        attributes: dict[str, Any] = self.static_attributes.copy() if static else {}
        self._extract_call_attributes(attributes, instance, args, kwargs)
        return attributes

    def _extract_call_attributes(self, attributes: dict[str, Any], instance: Any, args: tuple,
                                 kwargs: dict) -> bool:
        """Add the call-time attributes to ``attributes``; whether every value added is
        a ``str``, ``int``, ``float`` or ``bool`` (nothing for the SDK to clean)."""
        plain = True
        limit = self._length_limit
        owner = self.runtime_owner
        if owner is not None and instance is not None:
            runtime = instance if isinstance(instance, type) else type(instance)
            if runtime is not owner:
                name = attributes[CLSTOCK_RUNTIME_CLASS] = class_name(runtime)
                if len(name) > limit:
                    plain = False
        for key, extract in self.call_extractors:
            try:
                value = extract(instance, args, kwargs)
                kind = value.__class__
                if kind is str:
                    if len(value) > limit:
                        plain = False
                elif kind not in _PLAIN:
                    value = attribute_value(value)
                    plain = False
            except Exception:
                _logger.debug(
                    "clstock-otel %s: extracting %s failed", self.name, key, exc_info=True
                )
                continue
            if value is not None:
                attributes[key] = value
        return plain

    # -- finish ------------------------------------------------------------------------

    def classify(self, call: MeasuredCall, value: Any) -> str | None:
        """The ``error.type`` of a result that is a failure, else None (success).

        A hidden failure's description (``call.note``) becomes the span's status
        description; a per-call detail's failure has none (its ``error.type`` says it).
        """
        if self.per_call is not None:
            call.note = None
            return safe_call(call.detail.classify, value, what=_HOOK)
        description = safe_call(self.result_error, value, call.instance, call.args, call.kwargs)
        if not description:
            return None
        call.note = str(description)
        return self.result_error_type

    def annotate_result(
        self, call: TracedCall, span: Span, value: Any, failure: str | None
    ) -> None:
        """Set the result attributes, events and failure status of a recording span."""
        # One set_attribute per value, in order (what set_attributes of them all would
        # store: each value is a valid attribute value, each key a constant).
        for key, extract in self.result_extractors:
            try:
                extracted = value if extract is the_result else extract(
                    value, call.instance, call.args, call.kwargs)
                if extracted.__class__ not in _PLAIN:
                    extracted = attribute_value(extracted)
            except Exception:
                _logger.debug(
                    "clstock-otel %s: extracting %s failed", self.name, key, exc_info=True
                )
                continue
            if extracted is not None:
                span.set_attribute(key, extracted)
        if failure is not None:
            span.set_status(Status(StatusCode.ERROR, call.note))
            span.set_attribute(ERROR_TYPE, failure)
        for event, happened in self.result_events:
            if safe_call(happened, value, call.instance, call.args, call.kwargs):
                span.add_event(event)

    def finish(self, call: MeasuredCall, elapsed: float, failure: str | None) -> None:
        """After the span ended: measure the call, and report a failure."""
        if self._records:
            if failure is None and call.recording:
                # _record_duration's most common case, inline: a traced call's duration
                # waits for the collection with its span (the exemplar candidate).
                traced = self._pending_traced
                if (traced.__class__ is TracedSlot
                        and len(traced.values) < TRACED_PENDING_LIMIT):
                    traced.add(elapsed, call.span, call.sampled)
                    return
            self._record_duration(call, elapsed, failure)
        if failure is not None and self.on_failure is not None:
            safe_call(self.on_failure, what="failure callback")

    def _record_duration(self, call: MeasuredCall, elapsed: float, failure: str | None) -> None:
        """Record the call's duration in the histogram, ``error.type`` on failure.

        A successful call is deferred to the next collection (durations.py): one with
        a recording span with its span context, when the metric-record cache can keep
        the exemplars the SDK would (else it is recorded at once in the span's context,
        so an exemplar of the duration points at that span). Failures are recorded at
        once.
        """
        if failure is None:
            if not call.recording:
                pending = self._pending
                if pending is not None and len(pending) < PENDING_LIMIT:
                    pending.append(elapsed)
                    return
            else:
                traced = self._pending_traced
                if traced is None:
                    traced = self._find_traced_slot()
                if traced.__class__ is TracedSlot and len(traced.values) < TRACED_PENDING_LIMIT:
                    traced.add(elapsed, call.span, call.sampled)
                    return
        if self.per_call is not None:
            attributes = safe_call(call.detail.metric_attributes, failure, what=_HOOK)
        elif failure is None:
            attributes = self._metric_ok
        else:
            attributes = self._metric_errors.get(failure)
            if attributes is None:
                attributes = {**self._metric_ok, ERROR_TYPE: failure}
                if len(self._metric_errors) < 64:  # bounded: error types are few
                    self._metric_errors[failure] = attributes
        self.histogram.record(elapsed, attributes, call.context)

    def _find_traced_slot(self) -> Any:
        owner = self._pending_owner
        slot = owner.traced_slot(self._metric_ok) if owner is not None else False
        if slot is not None:  # None: not known before the SDK has recorded the set once
            self._pending_traced = slot
        return slot


class MeasuredCall:
    """One call in flight that is measured but not traced (the non-sampled fast path)."""

    # ``note``: a hidden failure's description; ``detail``: the per-call hook's
    # CallDetail. Each is set by the operation when it has one: never read unset.
    __slots__ = ("args", "detail", "instance", "kwargs", "note", "op", "started")
    recording = False  # whether the call has a recording span
    # The context its duration is recorded in (None: the current one).
    context: Any = None

    def __init__(self, op: Operation, instance: Any, args: tuple, kwargs: dict) -> None:
        self.op = op
        self.instance = instance
        self.args = args  # what the wrapped callable is called with (a detail may rewrite)
        self.kwargs = kwargs
        self.started = perf_counter()

    def activate(self) -> None:
        """Make the call's span current (the generator drivers do it for each step)."""

    def deactivate(self) -> None:
        """Undo ``activate()``."""

    def succeed(self, value: Any) -> None:
        """End the call with its return value (which may still classify as a failure)."""
        try:
            elapsed = perf_counter() - self.started
            op = self.op
            failure = op.classify(self, value) if op.classifies else None
            self._close(value, failure, None)
            op.finish(self, elapsed, failure)
        except Exception:
            _logger.debug("clstock-otel could not finish %s", self.op.name, exc_info=True)

    def fail(self, exc: BaseException) -> None:
        """End the call with the exception it raised (the caller re-raises it)."""
        try:
            elapsed = perf_counter() - self.started
            # Like the API's use_span: only Exception is an error; GeneratorExit,
            # KeyboardInterrupt, CancelledError... end the span with status unset.
            failure = error_type(exc) if isinstance(exc, Exception) else None
            self._close(None, failure, exc)
            self.op.finish(self, elapsed, failure)
        except Exception:
            _logger.debug("clstock-otel could not finish %s", self.op.name, exc_info=True)

    def _close(self, value: Any, failure: str | None, exc: BaseException | None) -> None:
        """End the span, if any (none here)."""


class TracedCall(MeasuredCall):
    """One traced call in flight: its span, and the token of its current context."""

    __slots__ = ("context", "recording", "sampled", "span", "token")

    def __init__(self, op: Operation, span: Span, parent_context: Any, instance: Any,
                 args: tuple, kwargs: dict, sampled: bool | None = None) -> None:
        # MeasuredCall's fields, set here rather than through super().__init__ (every
        # traced call's path).
        self.op = op
        self.instance = instance
        self.args = args
        self.kwargs = kwargs
        self.span = span
        # The span's own context (``parent_context`` with the span): made current, and
        # the duration is recorded in it (an exemplar of the duration points at it).
        # set_span_in_context(span, parent_context) with one copy instead of two (a
        # Context forbids item assignment).
        self.context = Context({**parent_context, SPAN_KEY: span})
        self.token: Any = None
        # Whether the span is sampled, when begin() knows it (else None: not known).
        self.sampled = sampled
        self.recording = span.is_recording()
        self.started = perf_counter()

    def activate(self) -> None:
        var = self.op._context_var
        self.token = attach(self.context) if var is None else var.set(self.context)

    def deactivate(self) -> None:
        token = self.token
        if token is not None:
            self.token = None
            var = self.op._context_var
            if var is None:
                detach(token)
                return
            try:  # as the API's detach: e.g. a token of another context
                var.reset(token)
            except Exception:
                _context_logger.exception("Failed to detach context")

    def _close(self, value: Any, failure: str | None, exc: BaseException | None) -> None:
        token = self.token
        if token is not None:  # deactivate(), inline
            self.token = None
            var = self.op._context_var
            if var is None:
                detach(token)
            else:
                try:
                    var.reset(token)
                except Exception:
                    _context_logger.exception("Failed to detach context")
        span = self.span
        try:
            if span.is_recording():
                if exc is None:
                    self.op.annotate_result(self, span, value, failure)
                elif failure is not None:
                    record_error(span, exc, failure)
        finally:
            span.end()  # whatever went wrong above, the span is not left open
