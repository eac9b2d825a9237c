"""The pipeline's tracer and tracer provider: the SDK's, with a cheaper span underneath.

:class:`PipelineTracerProvider` is an ``opentelemetry.sdk.trace.TracerProvider``
(same constructor, ``resource``, ``sampler``, ``id_generator``, span limits, tracer
configurator, ``force_flush``, ``shutdown``); its tracers make
:class:`~clstock_otel_distro.sdk.pipeline.span.PipelineSpan` s and hand them, when
they end, straight to the pipeline's own processors.

It *steps aside* (every new span is the SDK's own, through the SDK's processor
chain, from then on, for the whole process) with one log line, when:

- a span processor that is not the pipeline's is added (a user's, or the SDK
  batch processor the configurator uses for exporters other than OTLP/HTTP): that
  processor may rely on anything the SDK's span offers, and must see every span;
- SDK internal metrics are on (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``): they
  are recorded per span by the SDK's tracer;
- the context runtime is not the contextvars one the fast path reads directly.

Sampling: the configured sampler is called the way the SDK calls it, except for
the default ``ParentBased(ALWAYS_ON)`` (with the SDK's own ``ALWAYS_ON`` /
``ALWAYS_OFF`` delegates), whose decision is computed inline: sampled unless the
parent is not sampled, the parent's trace state kept. Non-sampled spans are
``NonRecordingSpan`` s, as in the SDK.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import threading
import warnings
from collections.abc import Callable, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.environment_variables._internal import (
    parse_boolean_environment_variable,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationInfo, InstrumentationScope
from opentelemetry.trace import NoOpTracer, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

from clstock_otel_distro.sdk.pipeline.span import (
    PLAIN_TYPES,
    PLAIN_TYPES_LIMITED,
    UNLIMITED,
    PipelineSpan,
)

__all__ = ["PipelineTracer", "PipelineTracerProvider"]

_logger = logging.getLogger(__name__)
_context_logger = logging.getLogger("opentelemetry.context")

_INVALID_SPAN_ID = trace_api.INVALID_SPAN_ID
_INVALID_TRACE_ID = trace_api.INVALID_TRACE_ID
_SAMPLED = TraceFlags.SAMPLED
_RANDOM = TraceFlags.RANDOM_TRACE_ID
# One TraceFlags object per value: SpanContext wants the type, not a bare int.
_FLAGS = {value: TraceFlags(value) for value in range(4)}
_ROOT_FLAGS = _FLAGS[_SAMPLED | _RANDOM]
_getrandbits = random.getrandbits


def _current_context_var() -> Any:
    """The ContextVar holding the current Context, when the runtime is the default one."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    return getattr(runtime, "_current_context", None)


def _is_default_sampler(sampler: Any) -> bool:
    """``ParentBased(ALWAYS_ON)`` with the SDK's default delegates, nothing custom."""
    return (
        type(sampler) is ParentBased
        and getattr(sampler, "_root", None) is ALWAYS_ON
        and getattr(sampler, "_remote_parent_sampled", None) is ALWAYS_ON
        and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
        and getattr(sampler, "_local_parent_sampled", None) is ALWAYS_ON
        and getattr(sampler, "_local_parent_not_sampled", None) is ALWAYS_OFF
    )


class PipelineTracer(sdk_trace.Tracer):
    """The SDK's tracer, whose recording spans are :class:`PipelineSpan` s."""

    def __init__(self, *args: Any, provider: PipelineTracerProvider, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._provider = provider
        limits = self._span_limits
        self._max_attributes = (
            UNLIMITED if limits.max_span_attributes is None else limits.max_span_attributes
        )
        self._max_length_or_none = limits.max_span_attribute_length
        self._max_length = (
            UNLIMITED if self._max_length_or_none is None else self._max_length_or_none
        )
        # The longest str attribute value stored as given (UNLIMITED: no limit).
        self.attribute_length_limit = self._max_length
        # The attribute value types stored as given whatever their length (span.py).
        self._plain_types = (
            PLAIN_TYPES if self._max_length_or_none is None else PLAIN_TYPES_LIMITED
        )
        self._default_sampler = _is_default_sampler(self.sampler)
        self._random_ids = type(self.id_generator) is RandomIdGenerator
        self._context_var = provider._context_var
        # Set by the provider: whether spans are ours, and what receives them at end.
        self._fast = provider._fast
        self._on_end: Callable[[PipelineSpan], None] | None = provider._on_end
        self._update_fast_path()

    def _set_tracer_config(self, tracer_config: Any) -> None:
        super()._set_tracer_config(tracer_config)
        self._update_fast_path()

    def _update_fast_path(self) -> None:
        # The inline path: our spans, an enabled tracer, the default sampler, random ids.
        self._quick = (self._fast and self._tracer_config.is_enabled
                       and self._default_sampler and self._random_ids)

    def start_span_adopting(
        self, name: str, context: Context, kind: SpanKind, attributes: dict[str, Any],
        static: dict[str, Any] | None = None,
    ) -> trace_api.Span:
        """``start_span(name, context, kind, attributes)`` for a caller that hands over
        ``attributes``: a dict of its own, not used after the call, whose keys are
        non-empty ``str`` and whose values are ``int``, ``float``, ``bool`` or ``str``
        of at most :attr:`attribute_length_limit` characters (the traced calls'
        attributes, checked as they are extracted).

        Such attributes need neither cleaning nor a copy: a child of a sampled span of
        ours, and a root (no span in ``context``: sampled, a random trace id, as
        ``start_span``'s), keep the dict itself. Anything else takes ``start_span``.

        ``static``: a non-empty dict whose items lead ``attributes``, in order, and that
        never changes (a traced operation's code attributes): the encoder joins their
        fields once per ``static`` instead of once per span.
        """
        if self._quick and len(attributes) <= self._max_attributes:
            current = context.get(_SPAN_KEY)
            if current.__class__ is PipelineSpan and current._flags & _SAMPLED:
                span = PipelineSpan(
                    self, name, current._trace_id, _getrandbits(64) or _span_id(),
                    current._flags, current._trace_state, current, kind, time_ns(),
                    True, True,
                )
                span._attributes = attributes
                span._static = static
                return span
            if current is None:
                span = PipelineSpan(
                    self, name, _getrandbits(128) or _trace_id(), _getrandbits(64) or _span_id(),
                    _ROOT_FLAGS, None, None, kind, time_ns(), True, True,
                )
                span._attributes = attributes
                span._static = static
                return span
        return self.start_span(name, context, kind, attributes)

    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        if not self._fast:
            return super().start_as_current_span(
                name, context, kind, attributes, links, start_time, record_exception,
                set_status_on_exception, end_on_exit,
            )
        return _CurrentSpan(
            self,
            (name, context, kind, attributes, links, start_time, record_exception,
             set_status_on_exception),
            end_on_exit,
        )

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        if self._quick:
            current = (self._context_var.get() if context is None else context).get(_SPAN_KEY)
            # ParentBased(ALWAYS_ON) under a sampled span of ours: the child takes the
            # parent's trace id, flags (sampled, random trace id) and trace state.
            if current.__class__ is PipelineSpan and current._flags & _SAMPLED:
                span = PipelineSpan(
                    self, name, current._trace_id, _getrandbits(64) or _span_id(),
                    current._flags, current._trace_state, current, kind,
                    time_ns() if start_time is None else start_time,
                    record_exception, set_status_on_exception,
                )
            elif current is None:
                # A root: sampled, random trace id, no trace state.
                span = PipelineSpan(
                    self, name, _getrandbits(128) or _trace_id(), _getrandbits(64) or _span_id(),
                    _ROOT_FLAGS, None, None, kind,
                    time_ns() if start_time is None else start_time,
                    record_exception, set_status_on_exception,
                )
            else:
                return self._start_span(name, context, kind, attributes, links, start_time,
                                        record_exception, set_status_on_exception)
            if attributes:
                _set_initial_attributes(span, attributes)
            if links:
                _add_initial_links(span, links)
            return span
        if not self._fast or not self._tracer_config.is_enabled:
            return super().start_span(
                name, context, kind, attributes, links, start_time, record_exception,
                set_status_on_exception,
            )
        return self._start_span(name, context, kind, attributes, links, start_time,
                                record_exception, set_status_on_exception)

    def _start_span(
        self,
        name: str,
        context: Context | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[trace_api.Link] | None,
        start_time: int | None,
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> trace_api.Span:
        """The SDK tracer's start_span, for any sampler, id generator and parent."""
        current = (self._context_var.get() if context is None else context).get(_SPAN_KEY)
        # The parent: one of our spans (read directly), another span's context, or none
        # (an invalid one counts as none, as in the SDK: an id generator may give 0).
        if current.__class__ is PipelineSpan and current.get_span_context().is_valid:
            parent: PipelineSpan | SpanContext | None = current
            trace_id = current._trace_id
            parent_flags = current._flags
            parent_state = current._trace_state
        else:
            parent = None if current is None else current.get_span_context()
            if parent is not None and not isinstance(parent, SpanContext):
                raise TypeError("parent_span_context must be a SpanContext or None.")
            if parent is None or not parent.is_valid:
                parent = None
            else:
                trace_id = parent.trace_id
                parent_flags = parent.trace_flags
                parent_state = parent.trace_state
        if parent is None:
            if self._random_ids:
                trace_id = _getrandbits(128) or _trace_id()
            else:
                trace_id = self.id_generator.generate_trace_id()

        if self._default_sampler:
            # ParentBased(ALWAYS_ON): follow the parent's sampled flag; keep its state.
            if parent is None:
                sampled = True
                trace_state = None
            else:
                sampled = parent_flags & _SAMPLED
                trace_state = parent_state
            recording = sampled
            initial = attributes
        else:
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            trace_state = result.trace_state
            initial = result.attributes

        if parent is None:
            random_trace_id = self._random_ids or self.id_generator.is_trace_id_random()
        else:
            random_trace_id = parent_flags & _RANDOM
        flags = _FLAGS[(_SAMPLED if sampled else 0) | (_RANDOM if random_trace_id else 0)]

        if self._random_ids:
            span_id = _getrandbits(64) or _span_id()
        else:
            span_id = self.id_generator.generate_span_id()

        if not recording:
            return trace_api.NonRecordingSpan(
                SpanContext(trace_id, span_id, False, flags, trace_state)
            )
        span = PipelineSpan(
            self, name, trace_id, span_id, flags, trace_state, parent, kind,
            start_time if start_time is not None else time_ns(),
            record_exception, set_status_on_exception,
        )
        if initial:
            _set_initial_attributes(span, initial)
        if links:
            _add_initial_links(span, links)
        return span


def _span_id() -> int:
    """A random span id other than the invalid 0 (getrandbits gave 0)."""
    span_id = _getrandbits(64)
    while span_id == _INVALID_SPAN_ID:
        span_id = _getrandbits(64)
    return span_id


def _trace_id() -> int:
    trace_id = _getrandbits(128)
    while trace_id == _INVALID_TRACE_ID:
        trace_id = _getrandbits(128)
    return trace_id


def _set_initial_attributes(span: PipelineSpan, attributes: types.Attributes) -> None:
    tracer = span._tracer
    if len(attributes) <= tracer._max_attributes:
        plain = tracer._plain_types
        for key, value in attributes.items():
            if key.__class__ is not str or not key or (
                value.__class__ not in plain
                and not (value.__class__ is str and len(value) <= tracer._max_length)
            ):
                break
        else:
            # Nothing to clean or drop: the SDK would store exactly these, in order.
            span._attributes = dict(attributes)
            return
    span._set_items(attributes)


def _add_initial_links(span: PipelineSpan, links: Sequence[trace_api.Link]) -> None:
    # The SDK's _new_links: valid links only, their attributes bounded, the newest kept.
    limits = span._tracer._span_limits
    valid = []
    for link in links:
        if link and sdk_trace._is_valid_link(link.context, link.attributes):
            link._attributes = sdk_trace.BoundedAttributes(
                limits.max_link_attributes,
                link.attributes,
                max_value_len=limits.max_attribute_length,
                immutable=True,
            )
            valid.append(link)
    span._links = sdk_trace.BoundedList.from_seq(limits.max_links, valid)
    span._simple = False


class _CurrentSpan:
    """``start_as_current_span``'s context manager: ``use_span``'s rules, without a generator.

    As a decorator (``@tracer.start_as_current_span(...)``), each call of the
    decorated function, sync or async, gets its own span.
    """

    __slots__ = ("_arguments", "_end_on_exit", "_span", "_token", "_tracer", "_var")

    def __init__(self, tracer: PipelineTracer, arguments: tuple[Any, ...],
                 end_on_exit: bool) -> None:
        self._tracer = tracer
        # start_span's arguments, in order.
        self._arguments = arguments
        self._end_on_exit = end_on_exit

    def __enter__(self) -> trace_api.Span:
        span = self._span = self._tracer.start_span(*self._arguments)
        var = self._var = self._tracer._context_var
        context = Context(var.get())
        dict.__setitem__(context, _SPAN_KEY, span)
        self._token = var.set(context)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        span = self._span
        try:
            self._var.reset(self._token)
        except Exception:  # as opentelemetry.context.detach does
            _context_logger.exception("Failed to detach context")
        # use_span's rules: Exception subclasses only (not GeneratorExit and the like),
        # recorded as not escaped.
        if exc_val is not None and isinstance(exc_val, Exception) and span.is_recording():
            arguments = self._arguments
            if arguments[6]:
                span.record_exception(exc_val)
            if arguments[7]:
                span.set_status(
                    Status(
                        status_code=StatusCode.ERROR,
                        description=f"{type(exc_val).__name__}: {exc_val}",
                    )
                )
        if self._end_on_exit:
            span.end()
        return False

    def _recreate(self) -> _CurrentSpan:
        return _CurrentSpan(self._tracer, self._arguments, self._end_on_exit)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._recreate():
                    return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._recreate():
                return func(*args, **kwargs)

        return wrapper


class PipelineTracerProvider(TracerProvider):
    """The SDK's TracerProvider, whose tracers make pipeline spans (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Read by the tracers the SDK constructor may already create.
        self._pipeline_lock = threading.Lock()
        self._fast = True
        self._on_end: Callable[[PipelineSpan], None] | None = None
        self._pipeline_processors: tuple[Any, ...] = ()
        self._context_var = _current_context_var()
        super().__init__(*args, **kwargs)
        if self._context_var is None:
            self._step_aside("the OpenTelemetry context runtime is not the contextvars one")
        elif parse_boolean_environment_variable(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED):
            self._step_aside(f"{OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED} is on")

    def _handle_fork(self) -> None:
        # The SDK's after-fork hook (the provider's lock, the process resource): ours too.
        self._pipeline_lock = threading.Lock()
        super()._handle_fork()

    @property
    def pipeline_active(self) -> bool:
        """Whether new spans are the pipeline's (False once it stepped aside)."""
        return self._fast

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace_api.Tracer:
        # The SDK's get_tracer, building a PipelineTracer.
        if self._disabled:
            return NoOpTracer()
        if not instrumenting_module_name:
            instrumenting_module_name = ""
            sdk_trace.logger.error("get_tracer called with missing module name.")
        if instrumenting_library_version is None:
            instrumenting_library_version = ""
        with warnings.catch_warnings():
            # The SDK's tracer still takes the deprecated InstrumentationInfo.
            warnings.simplefilter("ignore", DeprecationWarning)
            info = InstrumentationInfo(instrumenting_module_name, instrumenting_library_version,
                                       schema_url)
        scope = InstrumentationScope(instrumenting_module_name, instrumenting_library_version,
                                     schema_url, attributes)
        with self._tracers_lock:
            tracer = self._tracers.get(scope)
            if tracer is not None:
                return tracer
            tracer = PipelineTracer(
                self.sampler,
                self.resource,
                self._active_span_processor,
                self.id_generator,
                info,
                self._span_limits,
                scope,
                meter_provider=self._meter_provider,
                _tracer_config=self._apply_tracer_configurator(scope),
                provider=self,
            )
            self._tracers[scope] = tracer
        return tracer

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        from clstock_otel_distro.sdk.pipeline.processor import PipelineSpanProcessor

        if isinstance(span_processor, PipelineSpanProcessor):
            super().add_span_processor(span_processor)
            with self._pipeline_lock:
                self._pipeline_processors += (span_processor,)
                self._update_tracers()
            return
        # Called on the application's threads: a failing processor must not reach it.
        super().add_span_processor(_GuardedProcessor(span_processor))
        exporter = getattr(span_processor, "span_exporter", None)
        described = type(span_processor).__name__ + (
            f" (exporter {type(exporter).__name__})" if exporter is not None else "")
        self._step_aside(f"span processor {described} was added")

    def _step_aside(self, reason: str) -> None:
        with self._pipeline_lock:
            if not self._fast:
                return
            self._fast = False
            self._update_tracers()
        _logger.info(
            "clstock-otel: %s; the span pipeline steps aside: spans are the SDK's "
            "from now on, through every span processor", reason)

    def _update_tracers(self) -> None:
        processors = self._pipeline_processors
        if len(processors) == 1:
            on_end: Callable[[PipelineSpan], None] | None = processors[0]._enqueue
        elif processors:
            enqueues = tuple(processor._enqueue for processor in processors)

            def on_end(span: PipelineSpan) -> None:
                for enqueue in enqueues:
                    enqueue(span)
        else:
            on_end = None
        self._on_end = on_end
        with self._tracers_lock:
            for tracer in self._tracers.values():
                tracer._on_end = on_end
                tracer._fast = self._fast
                tracer._update_fast_path()


class _GuardedProcessor(SpanProcessor):
    """A span processor whose exceptions are logged (once at warning) instead of raised.

    Everything else (``span_exporter``, settings) reads through to the processor.
    """

    def __init__(self, processor: SpanProcessor) -> None:
        self._processor = processor
        self._warned = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    def _failed(self, method: str, span: Any) -> None:
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        _logger.log(
            level, "clstock-otel: span processor %s raised in %s for span %r; the application "
            "goes on, the span goes on to the other processors (later failures are logged "
            "at debug)", type(self._processor).__name__, method, getattr(span, "name", None),
            exc_info=True)

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        try:
            self._processor.on_start(span, parent_context=parent_context)
        except Exception:
            self._failed("on_start", span)

    def _on_ending(self, span: Any) -> None:
        on_ending = getattr(self._processor, "_on_ending", None)  # not in every processor
        if on_ending is None:
            return
        try:
            on_ending(span)
        except Exception:
            self._failed("_on_ending", span)

    def on_end(self, span: Any) -> None:
        try:
            self._processor.on_end(span)
        except Exception:
            self._failed("on_end", span)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)
