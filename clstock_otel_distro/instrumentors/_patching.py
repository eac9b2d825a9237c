"""The machinery every instrumentor of the distro shares: written once, used everywhere.

What it provides:

- **Lazy patching.** :class:`AttributePatch` (``module:Class.method`` or
  ``module:function``) and :class:`ClassPatch` (a class and all its subclasses) import
  nothing: ``install()`` registers a wrapt post-import hook, so the target is patched
  the moment the application imports its module (right away if it already has), and
  never if it never does. ``uninstall()`` disarms a hook that has not fired yet and
  restores the original objects (identity ``is``).
- **Subclass-aware wrapping.** :class:`ClassPatch` wraps each listed method where it
  is defined: on the base and on every subclass that overrides it, including
  subclasses defined later. An inherited method is wrapped once, on its defining
  class. Spans are named ``DefiningClass.method``.
- **One traced call.** :class:`Operation` knows everything that can be computed
  before a call; ``TracedCall`` carries one call (span, context token, start time)
  through success or failure; four thin drivers run it for plain functions,
  coroutine functions, generators and async generators.
- **Safe attributes.** Extractors run only for recording spans, one by one, each
  guarded: a failing extractor is logged at DEBUG and never reaches the application.
- **Errors.** :func:`record_error` sets status ERROR, the exception event and
  ``error.type``; the exception itself propagates unchanged.
- **Duration metrics.** Every call is measured into the instrumentor's histogram,
  sampled or not. A call whose span records is recorded at once, in its span's
  context (so an exemplar points at that span); the durations of calls that record
  no span (the non-sampled fast path) wait in a small per-operation buffer and are
  recorded when the metrics are next collected (:class:`PendingDurations`): the same
  values, in the same collection interval, at a fraction of the cost on the call's
  path.

Usage, in an instrumentor::

    telemetry = Telemetry(__name__, kwargs, histogram=CLSTOCK_OPERATION_DURATION,
                          operation_key=CLSTOCK_OPERATION_NAME)
    score = TraceSpec(attributes={CLSTOCK_SYMBOL: arg("symbol")},
                      result_attributes={CLSTOCK_SCORE: result()})
    patch = ClassPatch("models.predictor", "StockPredictor",
                       {"calculate_score": traced(telemetry, score)}).install()
    ...
    patch.uninstall()
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import logging
import numbers
import os
import threading
import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from time import perf_counter
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _SUPPRESS_KEY
from opentelemetry.context import attach, detach, get_current
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, NoOpHistogram, get_meter
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_tracer,
    set_span_in_context,
)
from opentelemetry.trace.propagation import _SPAN_KEY

from clstock_otel_distro.config import env_bool, env_choice, env_targets
from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_CODE_ATTRIBUTES,
    OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES,
    OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS,
)
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    CLSTOCK_RUNTIME_CLASS,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    DURATION_BUCKETS,
    ERROR_TYPE,
    SCHEMA_URL,
)
from clstock_otel_distro.version import __version__

__all__ = [
    "CODE_DETAILS",
    "ArgumentSlot",
    "AttributePatch",
    "CallExtractor",
    "ClassPatch",
    "MeasuredCall",
    "Operation",
    "PatchingInstrumentor",
    "PendingDurations",
    "ResultExtractor",
    "Target",
    "Telemetry",
    "TraceSpec",
    "TracedCall",
    "Wrapper",
    "WrapperFactory",
    "arg",
    "arg_getter",
    "attribute_value",
    "class_name",
    "clstock_telemetry",
    "configured_targets",
    "driver_for",
    "error_type",
    "install_all",
    "is_suppressed",
    "is_traced",
    "record_error",
    "result",
    "safe_call",
    "sized_len",
    "trace_classes",
    "traced",
    "uninstall_all",
]

_logger = logging.getLogger(__name__)

# (instance, args, kwargs) -> attribute value; (result, instance, args, kwargs) -> value.
CallExtractor = Callable[[Any, tuple, dict], Any]
ResultExtractor = Callable[[Any, Any, tuple, dict], Any]
# A wrapt wrapper: (wrapped, instance, args, kwargs) -> whatever wrapped returns.
Wrapper = Callable[[Callable[..., Any], Any, tuple, dict], Any]
# Builds the wrapper of one concrete target (signature, owner) at patch time.
WrapperFactory = Callable[["Target"], Wrapper]

_ABSENT: Any = object()  # "not in the class __dict__", distinct from None
CODE_DETAILS = ("all", "function", "none")
_PRIMITIVES = (str, bool, int, float)

# is_suppressed() and Telemetry.skips_child() read the context by key: _SUPPRESS_KEY
# and _SPAN_KEY are what is_instrumentation_enabled() and get_current_span() look up
# (both defined by the API; the contrib instrumentations' utils import the first the
# same way), and this is the legacy suppression key they still honour.
_SUPPRESS_KEY_PLAIN = "suppress_instrumentation"
_SAMPLED = TraceFlags.SAMPLED


# --------------------------------------------------------------------------------------
# Guarded helpers
# --------------------------------------------------------------------------------------


def is_suppressed(ctx: Any) -> bool:
    """Whether instrumentation is suppressed in ``ctx`` (``suppress_instrumentation()``).

    Reads the context by key, as ``is_instrumentation_enabled()`` does, but without
    looking the current context up again: this runs on every traced call.
    """
    return bool(ctx.get(_SUPPRESS_KEY) or ctx.get(_SUPPRESS_KEY_PLAIN))


def safe_call(function: Callable[..., Any], *args: Any, what: str = "extractor") -> Any:
    """``function(*args)``, or None (logged at DEBUG) if it raises: never into the app."""
    try:
        return function(*args)
    except Exception:
        _logger.debug("clstock-otel %s %r failed; ignored", what, function, exc_info=True)
        return None


def attribute_value(value: Any) -> Any:
    """``value`` as a valid span attribute value, or None to leave the attribute out.

    Strings, booleans, ints and floats pass; other integral/real numbers (numpy
    scalars) are converted; sequences of those become lists; anything else is
    dropped rather than ``str()``-ed (an application object's ``__str__`` may be
    slow, huge or raise).
    """
    if value is None or isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        items = [attribute_value(item) for item in value]
        if all(isinstance(item, str) for item in items):
            return items
        if all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in items):
            return items
    return None


def sized_len(value: Any) -> int | None:
    """``len(value)`` for sized collections; None for iterators (never consumed) and None."""
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Sized):
        return None
    return len(value)


@functools.lru_cache(maxsize=512)
def _error_type_of(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its qualified class name, module-qualified
    except for builtins (``ValueError``, ``data.stock_data.DataFetchError``)."""
    return _error_type_of(type(exc))


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ raises
        return name
    return f"{name}: {message}" if message else name


def record_error(span: Span, exc: BaseException, kind: str | None = None) -> None:
    """Mark ``span`` failed by ``exc``: status ERROR, exception event, ``error.type``.

    Never raises; the caller re-raises ``exc`` itself, unchanged.
    """
    try:
        span.set_status(Status(StatusCode.ERROR, _describe(exc)))
        span.set_attribute(ERROR_TYPE, kind or error_type(exc))
        span.record_exception(exc)  # last: it formats the exception, which may raise
    except Exception:
        _logger.debug("clstock-otel could not record an exception on a span", exc_info=True)


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class ArgumentSlot:
    """Where one named argument of a callable sits in a call's ``(args, kwargs)``."""

    __slots__ = ("default", "index", "keyword", "name")

    def __init__(self, function: Callable[..., Any], name: str, *, skip_first: bool = False):
        # Bound once, at wrap time, from the signature: the per-call lookup is an index
        # or a dict get, never inspect.Signature.bind (tens of microseconds a call).
        self.name = name
        self.index: int | None = None
        self.default: Any = None
        self.keyword = True  # unknown names are looked up in kwargs (covers **kwargs)
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):  # no signature (builtins): keyword lookup only
            return
        if skip_first and parameters and parameters[0].kind in _POSITIONAL:
            parameters = parameters[1:]  # self / cls: wrapt passes it as ``instance``
        position = 0
        for parameter in parameters:
            if parameter.kind in _POSITIONAL:
                if parameter.name == name:
                    self.index = position
                    self.keyword = parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
                    self._set_default(parameter)
                    return
                position += 1
            elif parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name == name:
                self._set_default(parameter)
                return

    def _set_default(self, parameter: inspect.Parameter) -> None:
        if parameter.default is not inspect.Parameter.empty:
            self.default = parameter.default

    def get(self, args: tuple, kwargs: dict) -> Any:
        """The argument's value in this call (its default when not passed)."""
        index = self.index
        if index is not None and index < len(args):
            return args[index]
        if self.keyword:
            return kwargs.get(self.name, self.default)
        return self.default

    def replace(self, args: tuple, kwargs: dict, value: Any) -> tuple[tuple, dict]:
        """New ``(args, kwargs)`` passing ``value`` for this argument; inputs untouched."""
        index = self.index
        if index is not None and index < len(args):
            return (*args[:index], value, *args[index + 1 :]), kwargs
        return args, {**kwargs, self.name: value}


def arg_getter(
    function: Callable[..., Any], name: str, *, skip_first: bool = False
) -> Callable[[tuple, dict], Any]:
    """A fast reader of argument ``name`` of ``function`` from ``(args, kwargs)``.

    ``skip_first`` drops ``self``/``cls`` from the signature (wrapt passes the instance
    separately). Positional, keyword and defaulted arguments are all found.
    """
    return ArgumentSlot(function, name, skip_first=skip_first).get


# --------------------------------------------------------------------------------------
# What is traced: targets and specs
# --------------------------------------------------------------------------------------


def class_name(cls: type) -> str:
    """The class's qualified name as spans show it: ``Outer.Inner``, and ``Predictor``
    rather than ``make_predictor.<locals>.Predictor`` for a class made in a function."""
    return cls.__qualname__.rpartition("<locals>.")[2]


class Target:
    """One callable about to be wrapped: where it is defined and what it is."""

    __slots__ = (
        "bound",
        "function",
        "name",
        "owner",
        "qualified_name",
        "raw",
        "span_name",
        "track_runtime_class",
    )

    def __init__(self, owner: Any, name: str, raw: Any, *, track_runtime_class: bool = False):
        self.owner = owner
        self.name = name
        self.raw = raw
        is_class = isinstance(owner, type)
        self.function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        self.bound = is_class and not isinstance(raw, staticmethod)
        self.track_runtime_class = track_runtime_class and self.bound
        if is_class:
            self.span_name = f"{class_name(owner)}.{name}"
            self.qualified_name = f"{owner.__module__}.{owner.__qualname__}.{name}"
        else:
            self.span_name = name
            module = getattr(owner, "__name__", None) or getattr(self.function, "__module__", "")
            self.qualified_name = f"{module}.{name}" if module else name

    def arg(self, name: str, signature_of: Callable[..., Any] | None = None) -> ArgumentSlot:
        """The slot of argument ``name``; ``signature_of`` lends a more precise signature
        (e.g. the function a ``*args, **kwargs`` wrapper forwards to)."""
        if signature_of is None:
            return ArgumentSlot(self.function, name, skip_first=self.bound)
        return ArgumentSlot(signature_of, name, skip_first=True)

    def code_attributes(self, detail: str = "all") -> dict[str, Any]:
        """``code.function.name`` and, when cheaply known, file path and line number.

        ``detail``: ``"all"`` (the three), ``"function"`` (the name only) or ``"none"``.
        """
        if detail == "none":
            return {}
        attributes: dict[str, Any] = {CODE_FUNCTION_NAME: self.qualified_name}
        if detail == "function":
            return attributes
        try:
            code = inspect.unwrap(self.function).__code__
        except (AttributeError, ValueError):  # builtins, odd callables
            return attributes
        attributes[CODE_FILE_PATH] = code.co_filename
        attributes[CODE_LINE_NUMBER] = code.co_firstlineno
        return attributes


def arg(
    name: str,
    transform: Callable[[Any], Any] | None = None,
    signature_of: Callable[..., Any] | None = None,
) -> Callable[[Target], CallExtractor]:
    """Extractor factory: the value of argument ``name`` (default applied), optionally
    transformed (e.g. ``sized_len``)."""

    def build(target: Target) -> CallExtractor:
        get = target.arg(name, signature_of).get
        if transform is None:
            return lambda instance, args, kwargs: get(args, kwargs)
        return lambda instance, args, kwargs: transform(get(args, kwargs))

    return build


def result(transform: Callable[[Any], Any] | None = None) -> Callable[[Target], ResultExtractor]:
    """Extractor factory: the call's return value, optionally transformed (e.g. ``len``)."""

    def build(target: Target) -> ResultExtractor:
        if transform is None:
            return lambda value, instance, args, kwargs: value
        return lambda value, instance, args, kwargs: transform(value)

    return build


@dataclass(frozen=True)
class TraceSpec:
    """What to record for one traced callable; extractors are built per target."""

    name: str | None = None  # fixed span name; default DefiningClass.method / function
    kind: SpanKind = SpanKind.INTERNAL
    attributes: Mapping[str, Callable[[Target], CallExtractor]] = field(default_factory=dict)
    result_attributes: Mapping[str, Callable[[Target], ResultExtractor]] = field(
        default_factory=dict
    )
    # result -> True adds the named event (e.g. "No data returned" on an empty frame).
    result_events: Mapping[str, Callable[[Target], ResultExtractor]] = field(default_factory=dict)
    # result -> a description when the result hides a failure (yfinance's empty frame):
    # the span gets status ERROR and ``error.type`` = result_error_type.
    result_error: Callable[[Target], ResultExtractor] | None = None
    result_error_type: str = "error"
    # Called (guarded, sampled or not) after a call that failed, in the caller's
    # context: e.g. yfinance's download counts its failed tickers this way.
    on_failure: Callable[[], Any] | None = None


# --------------------------------------------------------------------------------------
# Deferred duration metrics
# --------------------------------------------------------------------------------------

# Why defer: the SDK's Histogram.record costs about 6 µs a call (the measurement
# object, its attributes cleaned and hashed, the aggregation's lock), four times what
# the rest of a non-sampled traced call costs. For a call that records no span, the
# duration is instead appended to an array (about 0.1 µs) and handed to the SDK when
# the metric reader collects: an observable instrument's callback runs at the start
# of every collection (periodic export, force_flush, shutdown) and records what is
# pending, so every value lands in the same collection interval as before, with the
# same attributes: the exported histogram is the same. What changes: that work runs
# on the collecting thread, not on the call's; such values carry no exemplar (the
# default trace-based exemplar filter keeps none for non-sampled calls anyway); and
# an operation holds at most PENDING_LIMIT values (8 bytes each) between two
# collections, beyond which its calls are recorded at once again, as before.
PENDING_LIMIT = 16384


class PendingDurations:
    """Durations waiting for the next collection of one histogram, per attribute set."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._lock = threading.Lock()
        self._slots: dict[tuple, tuple[Mapping[str, Any], array]] = {}

    def slot(self, attributes: Mapping[str, Any]) -> array:
        """The array collecting the durations recorded with ``attributes``."""
        key = tuple(sorted(attributes.items()))
        with self._lock:
            found = self._slots.get(key)
            if found is None:
                found = self._slots[key] = (dict(attributes), array("d"))
        return found[1]

    def flush(self, options: CallbackOptions | None = None) -> list[Any]:
        """Record every pending duration; an observable callback (it observes nothing)."""
        record = self.histogram.record
        for attributes, values in self._take():
            try:
                for value in values:
                    record(value, attributes)
            except Exception:
                _logger.debug("clstock-otel could not record pending durations", exc_info=True)
        return []

    def _take(self) -> list[tuple[Mapping[str, Any], array]]:
        # Under the lock, so that two collections never take the same values. Calls
        # append without it: an append landing between the copy and the delete is
        # after the copied prefix, which is all that is deleted.
        taken = []
        with self._lock:
            for attributes, values in self._slots.values():
                count = len(values)
                if count:
                    taken.append((attributes, values[:count]))
                    del values[:count]
        return taken

    def forget_in_child(self) -> None:
        """Drop what is pending, in a forked child (its parent records those values).

        The child has one thread, but the lock may have been copied held: it is
        replaced, not taken.
        """
        self._lock = threading.Lock()
        for _, values in self._slots.values():
            del values[:]


# One PendingDurations per histogram instrument: a meter returns the same instrument
# when an instrumentor is instrumented again, and an observable instrument can be
# registered only once per meter and name (the SDK returns the first one, with its
# callbacks), so the buffer and its callback are shared by every Telemetry using it.
_PENDING: weakref.WeakKeyDictionary[Any, PendingDurations] = weakref.WeakKeyDictionary()
_PENDING_LOCK = threading.Lock()


def _pending_durations(meter: Meter, histogram: Histogram, name: str) -> PendingDurations | None:
    """The deferred recorder of ``histogram``; None when recording is free anyway."""
    if isinstance(histogram, NoOpHistogram):
        return None
    with _PENDING_LOCK:
        pending = _PENDING.get(histogram)
        if pending is None:
            pending = PendingDurations(histogram)
            try:
                meter.create_observable_gauge(f"{name}.pending", callbacks=[pending.flush],
                                              unit="s")
            except Exception:  # no collection hook: record every call at once
                _logger.debug("clstock-otel cannot defer %s", name, exc_info=True)
                return None
            _PENDING[histogram] = pending
    return pending


def _forget_pending_in_child() -> None:
    for pending in list(_PENDING.values()):
        pending.forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pending_in_child)


# --------------------------------------------------------------------------------------
# Telemetry: tracer, histogram and the non-sampled fast path
# --------------------------------------------------------------------------------------


def _static_decision(sampler: Any, decision: Any) -> bool:
    """Whether ``sampler`` always decides ``decision`` (ALWAYS_ON / ALWAYS_OFF)."""
    from opentelemetry.sdk.trace.sampling import StaticSampler

    return isinstance(sampler, StaticSampler) and getattr(sampler, "_decision", None) is decision


def _sampler_of(tracer: Tracer) -> Any:
    sampler = getattr(tracer, "sampler", None)
    if sampler is None:  # a ProxyTracer: look at the tracer it delegates to, if any yet
        sampler = getattr(getattr(tracer, "_tracer", None), "sampler", None)
    return sampler


def _drops_unsampled_children(tracer: Tracer) -> bool | None:
    """Whether ``tracer`` drops every child of a non-sampled parent; None if unknown yet.

    True for the SDK's default sampler, ``ParentBased`` whose local and remote
    "parent not sampled" delegates are ``ALWAYS_OFF``: such a child would be a
    non-recording span, so the wrapper can skip creating it altogether.
    """
    sampler = _sampler_of(tracer)
    if sampler is None:
        return None
    try:
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased
    except ImportError:  # pragma: no cover - a sampler without the SDK
        return False
    if not isinstance(sampler, ParentBased):
        return False
    return all(_static_decision(getattr(sampler, name, None), Decision.DROP)
               for name in ("_local_parent_not_sampled", "_remote_parent_not_sampled"))


def _records_sampled_children(tracer: Tracer) -> bool | None:
    """Whether ``tracer`` records every child of a sampled local parent; None if unknown.

    True for the SDK's default sampler, ``ParentBased`` whose "local parent sampled"
    delegate is ``ALWAYS_ON``: such a child is certain to record, so its call-time
    attributes can be computed before it starts and given to ``start_span``.
    """
    sampler = _sampler_of(tracer)
    if sampler is None:
        return None
    try:
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased
    except ImportError:  # pragma: no cover - a sampler without the SDK
        return False
    return isinstance(sampler, ParentBased) and _static_decision(
        getattr(sampler, "_local_parent_sampled", None), Decision.RECORD_AND_SAMPLE)


class Telemetry:
    """The tracer and duration histogram of one instrumentor."""

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
        # ``code_attributes`` (an instrument() argument, else
        # OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES): "all" (code.function.name,
        # code.file.path, code.line.number on every span), "function" or "none". Each
        # attribute costs about 1 µs when the span starts, and 5-6 µs when the OTLP
        # exporter encodes it unless the distro's attribute cache (which encodes a
        # repeated value once) is on (bench/README.md).
        detail = kwargs.get("code_attributes")
        if detail is None:
            detail = env_choice(OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES,
                                DEFAULT_CLSTOCK_CODE_ATTRIBUTES, CODE_DETAILS)
        elif detail not in CODE_DETAILS:
            _logger.warning("clstock-otel: code_attributes=%r is not one of %s; using 'all'",
                            detail, ", ".join(map(repr, CODE_DETAILS)))
            detail = DEFAULT_CLSTOCK_CODE_ATTRIBUTES
        self.code_detail: str = detail
        # ``defer_unsampled_durations`` (an instrument() argument, else
        # OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS): False records every call's
        # duration at once, on the call's thread (see PENDING_LIMIT).
        defer = kwargs.get("defer_unsampled_durations")
        if defer is None:
            defer = env_bool(OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS, True)
        self.pending: PendingDurations | None = None
        if defer:
            self.pending = _pending_durations(meter, self.histogram, histogram)
        self.operation_key = operation_key
        self._drops_unsampled: bool | None = None
        self._records_sampled: bool | None = None
        # The last parent found non-sampled: in a non-sampled trace many traced calls
        # share a parent, and an identity check is cheaper than re-reading its flags.
        # (A strong reference to one small span object; replaced by the next one.)
        self.unsampled_parent: Any = None

    def drops_unsampled_children(self) -> bool:
        """Whether children of a non-sampled parent are dropped (checked once, cached)."""
        known = self._drops_unsampled
        if known is None:
            known = _drops_unsampled_children(self.tracer)
            if known is None:  # no real tracer yet: ask again next time
                return False
            self._drops_unsampled = known
        return known

    def records_sampled_children(self) -> bool:
        """Whether children of a sampled local parent always record (checked once)."""
        known = self._records_sampled
        if known is None:
            known = _records_sampled_children(self.tracer)
            if known is None:  # no real tracer yet: ask again next time
                return False
            self._records_sampled = known
        return known

    def records_child(self, ctx: Any) -> bool:
        """Whether a span started in ``ctx`` is certain to record.

        True when the current span is a local, sampled, recording parent (one of
        this process's spans) and the sampler records every child of such a parent:
        the default ``parentbased_always_on`` or ``parentbased_traceidratio``.
        """
        parent = ctx.get(_SPAN_KEY)
        if parent is None or not parent.is_recording():
            return False
        parent_context = parent.get_span_context()
        return bool(parent_context.trace_flags & _SAMPLED) and not parent_context.is_remote \
            and self.records_sampled_children()

    def skips_child(self, ctx: Any) -> bool:
        """Whether a span started in ``ctx`` can be skipped: the fast path.

        True when the current span is a valid, non-sampled parent and the sampler
        drops children of such parents: the span would only be non-recording. The
        context then keeps the non-sampled parent, so what is propagated (trace id,
        sampled=0) does not change. Calls are still measured: metrics do not depend
        on sampling.
        """
        parent = ctx.get(_SPAN_KEY)
        return parent is not None and (parent is self.unsampled_parent
                                       or self._drops_children_of(parent))

    def _drops_children_of(self, parent: Span) -> bool:
        parent_context = parent.get_span_context()
        if (parent_context.trace_flags & _SAMPLED or not parent_context.is_valid
                or not self.drops_unsampled_children()):
            return False
        self.unsampled_parent = parent
        return True


def clstock_telemetry(instrumenting_module: str, kwargs: Mapping[str, Any]) -> Telemetry:
    """The Telemetry of an instrumentor of ClStock's own code (one shared histogram)."""
    return Telemetry(instrumenting_module, kwargs, histogram=CLSTOCK_OPERATION_DURATION,
                     description="Duration of ClStock operations.",
                     operation_key=CLSTOCK_OPERATION_NAME)


# --------------------------------------------------------------------------------------
# The traced call
# --------------------------------------------------------------------------------------


class Operation:
    """Everything about one traced callable that is known before it is called."""

    __slots__ = (
        "_metric_errors",
        "_metric_ok",
        "_pending",
        "_records",
        "call_extractors",
        "classifies",
        "histogram",
        "kind",
        "name",
        "on_failure",
        "result_error",
        "result_error_type",
        "result_events",
        "result_extractors",
        "runtime_owner",
        "static_attributes",
        "telemetry",
    )

    def __init__(self, telemetry: Telemetry, target: Target, spec: TraceSpec) -> None:
        self.telemetry = telemetry
        self.histogram = telemetry.histogram
        self.name = spec.name or target.span_name
        self.kind = spec.kind
        self.static_attributes = target.code_attributes(telemetry.code_detail)
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
        self.classifies = self.result_error is not None
        key = telemetry.operation_key
        self._metric_ok: dict[str, Any] = {key: self.name} if key else {}
        self._metric_errors: dict[str, dict[str, Any]] = {}
        pending = telemetry.pending
        self._pending = pending.slot(self._metric_ok) if pending is not None else None
        # Recording into the API's no-op histogram (no MeterProvider) is skipped.
        self._records = not isinstance(self.histogram, NoOpHistogram)

    # -- start -------------------------------------------------------------------------

    def begin(self, instance: Any, args: tuple, kwargs: dict,
              activate: bool = True) -> MeasuredCall | None:
        """Start one call: a traced call, a measured-only call (fast path), or None
        ("just call through": instrumentation is suppressed)."""
        ctx = get_current()
        # is_suppressed() and Telemetry.skips_child(), inlined: this is every call's path.
        if ctx.get(_SUPPRESS_KEY) or ctx.get(_SUPPRESS_KEY_PLAIN):
            return None
        telemetry = self.telemetry
        parent = ctx.get(_SPAN_KEY)
        if parent is not None and (parent is telemetry.unsampled_parent
                                   or telemetry._drops_children_of(parent)):
            return MeasuredCall(self, instance, args, kwargs)
        if telemetry.records_child(ctx):
            # Certain to record: the call-time attributes go to start_span with the
            # static ones (one attribute copy instead of two; a sampler sees them).
            span = self.start_span(ctx, self.name, self.call_attributes(instance, args, kwargs))
            if span is None:
                return None
        else:
            span = self.start_span(ctx, self.name, self.static_attributes)
            if span is None:
                return None
            if span.is_recording():
                self.annotate_call(span, instance, args, kwargs)
        call = TracedCall(self, span, set_span_in_context(span, ctx), instance, args, kwargs)
        if activate:
            call.activate()
        return call

    def start_span(self, ctx: Any, name: str, attributes: Mapping[str, Any]) -> Span | None:
        """A span of this operation's kind under ``ctx``; None (logged) if that fails."""
        try:
            return self.telemetry.tracer.start_span(name, ctx, self.kind, attributes)
        except Exception:
            _logger.debug("clstock-otel could not start span %s", name, exc_info=True)
            return None

    def annotate_call(self, span: Span, instance: Any, args: tuple, kwargs: dict) -> None:
        """Set the call-time attributes of a recording span (each extractor guarded)."""
        attributes = self.call_attributes(instance, args, kwargs, static=False)
        if attributes:
            span.set_attributes(attributes)

    def call_attributes(self, instance: Any, args: tuple, kwargs: dict,
                        static: bool = True) -> dict[str, Any]:
        """The call-time attributes (each extractor guarded), after the static ones."""
        attributes: dict[str, Any] = dict(self.static_attributes) if static else {}
        owner = self.runtime_owner
        if owner is not None and instance is not None:
            runtime = instance if isinstance(instance, type) else type(instance)
            if runtime is not owner:
                attributes[CLSTOCK_RUNTIME_CLASS] = class_name(runtime)
        for key, extract in self.call_extractors:
            try:
                value = attribute_value(extract(instance, args, kwargs))
            except Exception:
                _logger.debug(
                    "clstock-otel %s: extracting %s failed", self.name, key, exc_info=True
                )
                continue
            if value is not None:
                attributes[key] = value
        return attributes

    # -- finish ------------------------------------------------------------------------

    def classify(self, call: MeasuredCall, value: Any) -> str | None:
        """The ``error.type`` of a result that hides a failure, else None (success)."""
        description = safe_call(self.result_error, value, call.instance, call.args, call.kwargs)
        if not description:
            return None
        call.note = str(description)
        return self.result_error_type

    def annotate_result(
        self, call: TracedCall, span: Span, value: Any, failure: str | None
    ) -> None:
        """Set the result attributes, events and hidden-failure status of a recording span."""
        attributes: dict[str, Any] = {}
        for key, extract in self.result_extractors:
            try:
                extracted = attribute_value(extract(value, call.instance, call.args, call.kwargs))
            except Exception:
                _logger.debug(
                    "clstock-otel %s: extracting %s failed", self.name, key, exc_info=True
                )
                continue
            if extracted is not None:
                attributes[key] = extracted
        if failure is not None:
            attributes[ERROR_TYPE] = failure
            span.set_status(Status(StatusCode.ERROR, call.note))
        if attributes:
            span.set_attributes(attributes)
        for event, happened in self.result_events:
            if safe_call(happened, value, call.instance, call.args, call.kwargs):
                span.add_event(event)

    def finish(self, call: MeasuredCall, elapsed: float, failure: str | None) -> None:
        """After the span ended: measure the call, and report a failure."""
        self.record_duration(call, elapsed, failure)
        if failure is not None and self.on_failure is not None:
            safe_call(self.on_failure, what="failure callback")

    def record_duration(self, call: MeasuredCall, elapsed: float, failure: str | None) -> None:
        """Record the call's duration in the histogram, ``error.type`` on failure.

        A successful call without a recording span is deferred to the next collection
        (see PendingDurations); one with a recording span is recorded in its context.
        """
        if not self._records:
            return
        if failure is None:
            pending = self._pending
            if pending is not None and not call.recording and len(pending) < PENDING_LIMIT:
                pending.append(elapsed)
                return
            attributes = self._metric_ok
        else:
            attributes = self._metric_errors.get(failure)
            if attributes is None:
                attributes = {**self._metric_ok, ERROR_TYPE: failure}
                if len(self._metric_errors) < 64:  # bounded: error types are few
                    self._metric_errors[failure] = attributes
        self.histogram.record(elapsed, attributes, call.metric_context())


class MeasuredCall:
    """One call in flight that is measured but not traced (the non-sampled fast path)."""

    __slots__ = ("args", "instance", "kwargs", "note", "op", "started")
    recording = False  # whether the call has a recording span

    def metric_context(self) -> Any:
        """The context its duration is recorded in (None: the current one)."""
        return None

    def __init__(self, op: Operation, instance: Any, args: tuple, kwargs: dict) -> None:
        self.op = op
        self.instance = instance
        self.args = args  # what the wrapped callable is called with (an op may rewrite)
        self.kwargs = kwargs
        # ``note``: op-specific per-call detail (a hidden failure's description, an
        # HTTP request's parts), set by the op when it has some: never read unset.
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

    __slots__ = ("context", "recording", "span", "token")

    def __init__(self, op: Operation, span: Span, context: Any, instance: Any, args: tuple,
                 kwargs: dict) -> None:
        super().__init__(op, instance, args, kwargs)
        self.span = span
        self.context = context
        self.token: Any = None
        self.recording = span.is_recording()

    def metric_context(self) -> Any:
        # The span's own context: an exemplar of this duration points at its span.
        return self.context

    def activate(self) -> None:
        self.token = attach(self.context)

    def deactivate(self) -> None:
        token = self.token
        if token is not None:
            self.token = None
            detach(token)

    def _close(self, value: Any, failure: str | None, exc: BaseException | None) -> None:
        self.deactivate()
        span = self.span
        try:
            if span.is_recording():
                if exc is None:
                    self.op.annotate_result(self, span, value, failure)
                elif failure is not None:
                    record_error(span, exc, failure)
        finally:
            span.end()  # whatever went wrong above, the span is not left open


# -- the four thin drivers -----------------------------------------------------------------


def _function_driver(op: Operation) -> Wrapper:
    def traced_function(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        call = op.begin(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            value = wrapped(*call.args, **call.kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.succeed(value)
        return value

    return traced_function


def _coroutine_driver(op: Operation) -> Wrapper:
    # wrapt calls this (sync) wrapper, which returns the coroutine below; the span
    # starts when the coroutine is awaited, in the awaiting task's context.
    async def traced_coroutine(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        call = op.begin(instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            value = await wrapped(*call.args, **call.kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.succeed(value)
        return value

    return traced_coroutine


# Generators: the span covers the whole iteration, but is current only while the
# generator's own code runs (each step), never while the consumer runs between two
# items: a span left attached across a ``yield`` would become the parent of whatever
# the consumer does next and leak into its context. So the drivers re-implement
# ``yield from`` (which async generators lack) step by step: activate, advance the
# inner generator (send / throw), deactivate, yield the item out.


def _generator_driver(op: Operation) -> Wrapper:
    def traced_generator(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        call = op.begin(instance, args, kwargs, activate=False)
        inner = wrapped(*args, **kwargs) if call is None else wrapped(*call.args, **call.kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                if call is not None:
                    call.activate()
                try:
                    item = inner.send(sent) if thrown is None else inner.throw(thrown)
                finally:
                    if call is not None:
                        call.deactivate()
                sent, thrown = None, None
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:  # consumer's throw(): forward it inside
                    thrown = exc
        except StopIteration as stop:
            if call is not None:
                call.succeed(stop.value)
            return stop.value
        except GeneratorExit:  # closed early by the consumer: a normal end
            if call is not None:
                call.activate()
            try:
                inner.close()
            finally:
                if call is not None:
                    call.deactivate()
                    call.succeed(None)
            raise
        except BaseException as exc:
            if call is not None:
                call.fail(exc)
            raise

    return traced_generator


def _async_generator_driver(op: Operation) -> Wrapper:
    async def traced_async_generator(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        call = op.begin(instance, args, kwargs, activate=False)
        inner = wrapped(*args, **kwargs) if call is None else wrapped(*call.args, **call.kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                if call is not None:
                    call.activate()
                try:
                    item = await (inner.asend(sent) if thrown is None else inner.athrow(thrown))
                finally:
                    if call is not None:
                        call.deactivate()
                sent, thrown = None, None
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:  # consumer's athrow(): forward it inside
                    thrown = exc
        except StopAsyncIteration:
            if call is not None:
                call.succeed(None)
            return
        except GeneratorExit:  # aclose() by the consumer: a normal end
            if call is not None:
                call.activate()
            try:
                await inner.aclose()
            finally:
                if call is not None:
                    call.deactivate()
                    call.succeed(None)
            raise
        except BaseException as exc:
            if call is not None:
                call.fail(exc)
            raise

    return traced_async_generator


def driver_for(function: Any) -> Callable[[Operation], Wrapper]:
    """The driver matching what ``function`` is (async generator, coroutine, ...)."""
    if inspect.isasyncgenfunction(function):
        return _async_generator_driver
    if inspect.iscoroutinefunction(function):
        return _coroutine_driver
    if inspect.isgeneratorfunction(function):
        return _generator_driver
    return _function_driver


def traced(telemetry: Telemetry, spec: TraceSpec) -> WrapperFactory:
    """The wrapper factory tracing a target as ``spec`` says, with ``telemetry``."""

    def build(target: Target) -> Wrapper:
        return driver_for(target.function)(Operation(telemetry, target, spec))

    return build


# --------------------------------------------------------------------------------------
# Patching
# --------------------------------------------------------------------------------------


# wrapt proxies refuse to be pickled or copied ("object proxy must define
# __reduce_ex__()"), which would make tracing change behaviour: a bound method given
# to a ProcessPoolExecutor or multiprocessing is pickled, an object holding one may be
# deep-copied. So our wrappers pickle the way Python pickles functions and bound
# methods, by reference: (owner, name) or (instance, name), looked up again on load
# (traced there if that process is instrumented too), and copy like them: a function
# is its own copy, a bound method's deep copy is bound to a deep copy of the instance.


def _attribute(owner: Any, name: str) -> Any:
    """``owner.name``; a module owner is given by name (modules do not pickle)."""
    if isinstance(owner, str):
        owner = importlib.import_module(owner)
    return getattr(owner, name)


class _BoundTracedFunction(wrapt.BoundFunctionWrapper):
    """A traced method bound to an instance (or class): pickles like a bound method."""

    def __reduce_ex__(self, protocol: int) -> tuple[Any, tuple[Any, ...]]:
        parent = self._self_parent
        if self._self_instance is None:  # looked up on the class: the plain function
            return parent.__reduce_ex__(protocol)
        return getattr, (self._self_instance, parent._self_clstock_name)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict) -> Any:
        if self._self_instance is None:
            return self
        instance = copy.deepcopy(self._self_instance, memo)
        return getattr(instance, self._self_parent._self_clstock_name)


class _TracedFunction(wrapt.FunctionWrapper):
    """The marker wrapper: an object of this class was put in place by this distro."""

    __bound_function_wrapper__ = _BoundTracedFunction

    def __init__(self, wrapped: Any, wrapper: Wrapper, group: Any, owner: Any, name: str):
        super().__init__(wrapped, wrapper)
        self._self_clstock_group = group
        self._self_clstock_owner = owner.__name__ if isinstance(owner, ModuleType) else owner
        self._self_clstock_name = name

    def __reduce_ex__(self, protocol: int) -> tuple[Any, tuple[Any, ...]]:
        return _attribute, (self._self_clstock_owner, self._self_clstock_name)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict) -> Any:
        return self


def is_traced(obj: Any) -> bool:
    """Whether ``obj`` is a wrapper this distro installed (a wrapt proxy of our marker
    class: someone else's wrapt wrapper is not ours, and is wrapped like a function)."""
    return isinstance(obj, _TracedFunction)


@dataclass
class _Record:
    """One attribute a patch replaced: where, what was there, what it put there."""

    owner: Any
    name: str
    original: Any  # _ABSENT: the attribute was inherited; uninstall deletes it
    installed: Any


def _resolve(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _class_tree(base: type) -> list[type]:
    """``base`` and all its subclasses, transitively, each once."""
    seen: dict[type, None] = {base: None}
    pending = [base]
    while pending:
        cls = pending.pop()
        try:
            children = cls.__subclasses__()
        except TypeError:  # ``type`` itself needs an argument
            continue
        for child in children:
            if child not in seen:
                seen[child] = None
                pending.append(child)
    return list(seen)


class _LazyPatch:
    """Patches applied when a module is imported, undone by ``uninstall()``."""

    def __init__(self, module: str, *, group: Any = None, missing_level: int = logging.WARNING):
        self.module = module
        self.group = group  # patches of one instrumentor share a group (see AttributePatch)
        self.missing_level = missing_level
        self._armed = False
        self._lock = threading.RLock()
        self._records: list[_Record] = []

    def install(self) -> _LazyPatch:
        """Patch now if the module is imported, else when it is; returns self."""
        self._armed = True
        wrapt.register_post_import_hook(self._on_import, self.module)
        return self

    def uninstall(self) -> None:
        """Disarm the pending import hook and restore every original object."""
        with self._lock:
            self._armed = False
            self._restore()

    def _on_import(self, module: ModuleType) -> None:
        # wrapt cannot unregister a hook: one that fires after uninstall() finds the
        # patch disarmed and does nothing. A patch failure is logged, never raised:
        # it would otherwise fail the application's import.
        with self._lock:
            if not self._armed:
                return
            try:
                self._apply(module)
            except Exception:
                _logger.warning(
                    "clstock-otel could not instrument %s", self.describe(), exc_info=True
                )

    def describe(self) -> str:
        return self.module

    def _apply(self, module: ModuleType) -> None:
        raise NotImplementedError

    def _set(self, owner: Any, name: str, original: Any, installed: Any) -> None:
        setattr(owner, name, installed)
        self._records.append(_Record(owner, name, original, installed))

    def _restore(self) -> None:
        for record in reversed(self._records):
            current = (
                record.owner.__dict__.get(record.name, _ABSENT)
                if isinstance(record.owner, type)
                else getattr(record.owner, record.name, _ABSENT)
            )
            if current is not record.installed:
                _logger.debug(
                    "clstock-otel leaves %s.%s alone: replaced since patched",
                    record.owner,
                    record.name,
                )
                continue
            if record.original is _ABSENT:
                delattr(record.owner, record.name)
            else:
                setattr(record.owner, record.name, record.original)
        self._records.clear()


class AttributePatch(_LazyPatch):
    """Wrap one ``module:path`` attribute (function, or method on that exact class)."""

    def __init__(
        self,
        module: str,
        path: str,
        wrapper: WrapperFactory,
        *,
        group: Any = None,
        rebind_partialmethods: bool = False,
        missing_level: int = logging.WARNING,
    ):
        super().__init__(module, group=group, missing_level=missing_level)
        self.path = path
        self.wrapper = wrapper
        self.rebind_partialmethods = rebind_partialmethods

    def describe(self) -> str:
        return f"{self.module}:{self.path}"

    def _apply(self, module: ModuleType) -> None:
        owner_path, _, name = self.path.rpartition(".")
        try:
            owner = _resolve(module, owner_path) if owner_path else module
            if isinstance(owner, type):
                original = owner.__dict__.get(name, _ABSENT)
                raw = original if original is not _ABSENT else inspect.getattr_static(owner, name)
            else:
                raw = original = getattr(owner, name)
        except AttributeError:
            _logger.log(
                self.missing_level, "clstock-otel: %s has no %s; not traced", self.module, self.path
            )
            return
        if is_traced(raw):
            if raw._self_clstock_group is self.group and self.group is not None:
                # An alias of a function this instrumentor already wrapped under another
                # name (``yfinance.download`` is bound from ``yfinance.multi.download``
                # after that was patched): restore it too on uninstall.
                self._records.append(_Record(owner, name, raw.__wrapped__, raw))
            else:
                _logger.debug("clstock-otel: %s is already traced", self.describe())
            return
        proxy = _TracedFunction(raw, self.wrapper(Target(owner, name, raw)), self.group,
                                owner, name)
        self._set(owner, name, original, proxy)
        if self.rebind_partialmethods and isinstance(owner, type):
            self._rebind_partialmethods(owner, raw, proxy)

    def _rebind_partialmethods(self, owner: type, original: Any, proxy: Any) -> None:
        # ``get = partialmethod(request, "GET")`` (older curl_cffi) holds the function
        # object itself: wrapping ``request`` on the class would not reach it. Rebuild
        # each such partialmethod around the wrapper, on the class and its subclasses.
        for cls in _class_tree(owner):
            for attr, value in list(vars(cls).items()):
                if isinstance(value, functools.partialmethod) and value.func is original:
                    rebound = functools.partialmethod(proxy, *value.args, **value.keywords)
                    self._set(cls, attr, value, rebound)


class ClassPatch(_LazyPatch):
    """Wrap methods of a class and of all its subclasses, present and future."""

    def __init__(self, module: str, qualname: str, methods: Mapping[str, WrapperFactory], *,
                 group: Any = None, missing_level: int = logging.WARNING,
                 require_methods: bool = False):
        super().__init__(module, group=group, missing_level=missing_level)
        self.qualname = qualname
        self.methods = dict(methods)
        self.require_methods = require_methods  # log a listed method no class defines
        self._hooks: list[tuple[type, Any, Any]] = []

    def describe(self) -> str:
        return f"{self.module}:{self.qualname}"

    def _apply(self, module: ModuleType) -> None:
        try:
            base = _resolve(module, self.qualname)
        except AttributeError:
            _logger.log(self.missing_level, "clstock-otel: %s has no class %s; not traced",
                        self.module, self.qualname)
            return
        if not isinstance(base, type):
            _logger.warning("clstock-otel: %s is not a class; not traced", self.describe())
            return
        tree = _class_tree(base)
        for cls in tree:
            self._patch_methods(cls)
        self._install_subclass_hook(base)
        if self.require_methods:
            for name in self.methods:
                if not any(name in vars(cls) for cls in tree):
                    where = next((c.__qualname__ for c in base.__mro__ if name in vars(c)), None)
                    _logger.log(self.missing_level, "clstock-otel: %s defines no method %s%s;"
                                " not traced", self.describe(), name,
                                f" (inherited from {where}: name that class)" if where else "")

    def _patch_methods(self, cls: type) -> None:
        # Only what ``cls`` itself defines: an inherited method is wrapped once, on the
        # class that defines it, and every subclass calls that same wrapper.
        namespace = vars(cls)
        for name, wrapper in self.methods.items():
            raw = namespace.get(name, _ABSENT)
            if raw is _ABSENT or is_traced(raw):
                continue
            function = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if not inspect.isfunction(function) or getattr(function, "__isabstractmethod__", False):
                continue  # properties, abstract stubs, odd descriptors: nothing to run
            target = Target(cls, name, raw, track_runtime_class=True)
            self._set(cls, name, raw, _TracedFunction(raw, wrapper(target), self.group, cls, name))

    def _install_subclass_hook(self, base: type) -> None:
        # Subclasses defined after instrumentation: Python calls the nearest
        # ``__init_subclass__`` in the new class's MRO while creating it, so one hook on
        # the base sees every future subclass, however deep. The hook first runs what
        # would have run without it: the base's own ``__init_subclass__`` if it defines
        # one (bound through the descriptor protocol, as Python does), else the next one
        # up the MRO via super(base, cls). Then it wraps the new class's overrides. On
        # uninstall the base's ``__dict__`` gets back exactly what it had (its own hook,
        # or nothing). If someone installed their own hook on top of ours meanwhile,
        # ours stays in their chain, disarmed: it only chains.
        previous = vars(base).get("__init_subclass__", _ABSENT)
        patch = self

        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            if previous is _ABSENT:
                super(base, cls).__init_subclass__(**kwargs)
            else:
                previous.__get__(None, cls)(**kwargs)
            if patch._armed:
                patch._on_subclass(cls)

        __init_subclass__.__qualname__ = f"{base.__qualname__}.__init_subclass__"
        hook = classmethod(__init_subclass__)
        base.__init_subclass__ = hook  # type: ignore[assignment]
        self._hooks.append((base, previous, hook))

    def _on_subclass(self, cls: type) -> None:
        with self._lock:
            if not self._armed:
                return
            try:
                self._patch_methods(cls)
            except Exception:  # never fail the application's class statement
                _logger.warning(
                    "clstock-otel could not instrument subclass %s of %s",
                    cls.__qualname__,
                    self.describe(),
                    exc_info=True,
                )

    def _restore(self) -> None:
        for base, previous, hook in reversed(self._hooks):
            if vars(base).get("__init_subclass__") is not hook:
                continue  # wrapped by someone since: ours stays in their chain, disarmed
            if previous is _ABSENT:
                delattr(base, "__init_subclass__")
            else:
                base.__init_subclass__ = previous  # type: ignore[assignment]
        self._hooks.clear()
        super()._restore()


def configured_targets(
    kwargs: Mapping[str, Any], variable: str, default: str
) -> tuple[list[tuple[str, str]], int]:
    """The ``(module, qualname)`` targets to patch, and the level to log a missing one at.

    ``targets=`` given to ``instrument()`` (``"module:Name"`` strings or pairs) wins;
    else ``variable`` (parsed, with one warning per bad entry), else ``default``. A
    missing class is a WARNING when the operator named it, DEBUG for a default target
    (the defaults cover several ClStock layouts; most are absent from any one).
    """
    given = kwargs.get("targets")
    if given is not None:
        pairs = [tuple(t.split(":", 1)) if isinstance(t, str) else tuple(t) for t in given]
        return [(module, name) for module, name in pairs], logging.WARNING
    targets = env_targets(variable, default)
    defaults = [tuple(entry.strip().split(":", 1)) for entry in default.split(",") if entry]
    return targets, logging.DEBUG if targets == defaults else logging.WARNING


def install_all(patches: Iterable[_LazyPatch]) -> list[_LazyPatch]:
    """Install each patch; returns them as a list (to give to :func:`uninstall_all`)."""
    return [patch.install() for patch in patches]


def uninstall_all(patches: Iterable[_LazyPatch]) -> None:
    """Uninstall patches in reverse order (each failure logged, the rest still undone)."""
    for patch in reversed(list(patches)):
        try:
            patch.uninstall()
        except Exception:
            _logger.warning(
                "clstock-otel could not uninstrument %s", patch.describe(), exc_info=True
            )


class PatchingInstrumentor(BaseInstrumentor):
    """An instrumentor made of lazy patches: ``_install`` returns them, and
    uninstrumenting undoes them (in reverse order, see :func:`uninstall_all`)."""

    _patches: Sequence[Any] = ()

    def _install(self, **kwargs: Any) -> list[Any]:
        raise NotImplementedError

    def _instrument(self, **kwargs: Any) -> None:
        self._patches = self._install(**kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstall_all(self._patches)
        self._patches = []


def trace_classes(instrumenting_module: str, kwargs: Mapping[str, Any],
                  specs: Mapping[str, TraceSpec], variable: str, default: str) -> list[Any]:
    """Trace the ``specs`` methods of the configured classes and all their subclasses.

    The classes come from ``targets=``, else ``variable``, else ``default`` (see
    :func:`configured_targets`); each is patched when its module is imported.
    """
    telemetry = clstock_telemetry(instrumenting_module, kwargs)
    methods = {name: traced(telemetry, spec) for name, spec in specs.items()}
    targets, missing_level = configured_targets(kwargs, variable, default)
    return install_all(
        ClassPatch(module, qualname, methods, group=telemetry, missing_level=missing_level)
        for module, qualname in targets)
