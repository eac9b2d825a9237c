"""What is traced: a target about to be wrapped, and the spec of its span.

An instrumentor declares a :class:`TraceSpec` per method: the span's name and kind,
and extractor factories (:func:`arg`, :func:`result`, or its own) for the attributes.
When a target is patched, each factory is given the :class:`Target` and builds the
extractor for that one callable (argument slots are bound to its signature then, not
on every call). An operation whose span depends on each call (an HTTP request: named
after its method, headers injected, the status deciding success) gives a ``per_call``
hook returning a :class:`CallDetail` instead of overriding the traced call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind

from clstock_otel_distro.instrumentors._machinery.arguments import ArgumentSlot
from clstock_otel_distro.semconv import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    ERROR_TYPE,
)

# (instance, args, kwargs) -> attribute value; (result, instance, args, kwargs) -> value.
CallExtractor = Callable[[Any, tuple, dict], Any]
ResultExtractor = Callable[[Any, Any, tuple, dict], Any]
# A wrapt wrapper: (wrapped, instance, args, kwargs) -> whatever wrapped returns.
Wrapper = Callable[[Callable[..., Any], Any, tuple, dict], Any]
# Builds the wrapper of one concrete target (signature, owner) at patch time.
WrapperFactory = Callable[["Target"], Wrapper]


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
        slot = target.arg(name, signature_of)
        if transform is None:
            return slot.extractor()
        get = slot.get
        return lambda instance, args, kwargs: transform(get(args, kwargs))

    return build


def the_result(value: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The result extractor of ``result()``: the return value itself (the traced call
    recognises it and reads the value without calling it)."""
    return value


def result(transform: Callable[[Any], Any] | None = None) -> Callable[[Target], ResultExtractor]:
    """Extractor factory: the call's return value, optionally transformed (e.g. ``len``)."""

    def build(target: Target) -> ResultExtractor:
        if transform is None:
            return the_result
        return lambda value, instance, args, kwargs: transform(value)

    return build


class CallDetail:
    """What one call of a per-call operation knows about itself (an HTTP request).

    The operation asks it, at fixed points of the one traced-call path
    (``calls.Operation``): the span's name and start attributes, more attributes if
    the span records, the arguments to call with once the propagated context is known,
    whether the result is a failure, and the duration's attributes. Each answer is
    guarded: a failing one is logged at DEBUG and never reaches the application.
    Subclasses override what differs from these defaults.
    """

    __slots__ = ()

    span_name: str = ""

    def attributes(self) -> Mapping[str, Any]:
        """Attributes known before the call, given to ``start_span`` (the sampler sees them)."""
        return {}

    def recording_attributes(self) -> Mapping[str, Any]:
        """Attributes worth computing only when the span records."""
        return {}

    def prepare(self, args: tuple, kwargs: dict, context: Any) -> tuple[tuple, dict]:
        """The ``(args, kwargs)`` to call with, given the context the call propagates
        (its span's, or the non-sampled parent's on the fast path)."""
        return args, kwargs

    def classify(self, value: Any) -> str | None:
        """The ``error.type`` of a result that is a failure, else None (success)."""
        return None

    def metric_attributes(self, failure: str | None) -> Mapping[str, Any]:
        """The attributes of this call's duration."""
        return {ERROR_TYPE: failure} if failure is not None else {}


# (instance, args, kwargs) -> this call's detail, or None: call through untraced.
PerCall = Callable[[Any, tuple, dict], "CallDetail | None"]


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
    # The code.* attributes of the target (as configured); a library's entry point
    # (curl_cffi's Session.request) says nothing the span name does not.
    code_attributes: bool = True
    # Builds, per target, the hook describing each call (see CallDetail).
    per_call: Callable[[Target], PerCall] | None = None
