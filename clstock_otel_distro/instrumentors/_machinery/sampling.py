"""What the sampler will decide for a child span, learnt once per tracer.

Two shortcuts of the traced call (``calls.Operation.begin``) rest on it:

- the fast path: under a non-sampled parent, with a sampler that drops every child of
  such a parent (the SDK's default, ``ParentBased`` with ``ALWAYS_OFF`` delegates, or
  ``ALWAYS_OFF`` itself), the span would only be non-recording, so none is created;
  the context keeps the parent, so what is propagated (trace id, sampled=0) does not
  change;
- attributes up front: under a local, sampled, recording parent, with a sampler that
  records every such child (``parentbased_always_on`` or ``parentbased_traceidratio``),
  the call-time attributes are computed before the span starts and given to
  ``start_span`` (one attribute copy instead of two).

Both are one :meth:`ChildSampling.verdict` per parent, remembered for the last parent
seen: the many traced calls under one parent (ten ``calculate_score`` under one
``get_top_recommendations``) pay an identity check. A remembered "records" verdict
stays true when the parent ends meanwhile: the child's attributes then go to
``start_span`` instead of ``set_attributes`` after it, which the default sampler
does not look at, so the span is the same.

The context is read by key: these are the keys ``get_current_span()`` and
``is_instrumentation_enabled()`` look up (the API defines them; the contrib
instrumentations' utils import the suppression key the same way), plus the legacy
suppression key they still honour. With the API's default runtime context (a
``ContextVar``) the current context is read, set and reset on that variable
directly (:func:`current_context_var`; a call's context is ``Context({**parent,
SPAN_KEY: span})``, one copy where ``set_span_in_context`` makes two), as the API's
``get_current``, ``attach`` and ``detach`` do through two calls each.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as context_api
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Span, TraceFlags, Tracer
from opentelemetry.trace.propagation import _SPAN_KEY

try:  # the span pipeline's span class, read directly when it is the parent
    from clstock_otel_distro.sdk.pipeline.span import PipelineSpan as _PIPELINE_SPAN
except Exception:  # pragma: no cover - the pipeline cannot load with this OpenTelemetry
    _PIPELINE_SPAN = None

SPAN_KEY = _SPAN_KEY
SUPPRESS_KEY = _SUPPRESS_INSTRUMENTATION_KEY
SUPPRESS_KEY_PLAIN = "suppress_instrumentation"
_SAMPLED = TraceFlags.SAMPLED

# What a child of a given parent will be (ChildSampling.verdict).
UNDECIDED = 0  # ask the tracer: a root, a custom sampler, a remote or non-recording parent
DROPPED = 1  # non-recording: not created (the fast path)
RECORDS = 2  # certain to record: attributes up front


def current_context_var() -> Any:
    """The ContextVar behind the API's current context, or None when the runtime is
    not the default contextvars one (then the API's functions are used)."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    return getattr(runtime, "_current_context", None)


def _sampler_of(tracer: Tracer) -> Any:
    sampler = getattr(tracer, "sampler", None)
    if sampler is None:  # a ProxyTracer: look at the tracer it delegates to, if any yet
        sampler = getattr(getattr(tracer, "_tracer", None), "sampler", None)
    return sampler


def _parent_based_decides(tracer: Tracer, delegates: tuple[str, ...], decision: str
                          ) -> bool | None:
    """Whether ``tracer``'s sampler is ``ParentBased`` with each of ``delegates`` a static
    sampler always deciding ``decision``; None while the tracer has no sampler yet."""
    sampler = _sampler_of(tracer)
    if sampler is None:
        return None
    try:
        from opentelemetry.sdk.trace.sampling import ParentBased
    except ImportError:  # pragma: no cover - a sampler without the SDK
        return False
    if not isinstance(sampler, ParentBased):
        return False
    return all(_always_decides(getattr(sampler, name, None), decision) for name in delegates)


def _always_decides(sampler: Any, decision: str) -> bool:
    """Whether ``sampler`` is one of the SDK's static samplers deciding ``decision``
    (``ALWAYS_ON``, ``ALWAYS_OFF``, or the subclasses the SDK's configuration builds)."""
    try:
        from opentelemetry.sdk.trace.sampling import Decision, StaticSampler
    except ImportError:  # pragma: no cover - a sampler without the SDK
        return False
    return isinstance(sampler, StaticSampler) and getattr(sampler, "_decision",
                                                          None) is Decision[decision]


# The default sampler's "parent not sampled" delegates drop: such a child would be a
# non-recording span. Its "local parent sampled" delegate records: such a child is
# certain to record.
_DROPS_UNSAMPLED = (("_local_parent_not_sampled", "_remote_parent_not_sampled"), "DROP")
_RECORDS_SAMPLED = (("_local_parent_sampled",), "RECORD_AND_SAMPLE")


def _drops_unsampled_children(tracer: Tracer) -> bool | None:
    """Whether a child of a non-sampled parent is never recorded: the default sampler,
    or ``ALWAYS_OFF`` (``OTEL_TRACES_SAMPLER=always_off``: every span dropped); None
    while the tracer has no sampler yet."""
    sampler = _sampler_of(tracer)
    if sampler is None:
        return None
    if _always_decides(sampler, "DROP"):
        return True
    return _parent_based_decides(tracer, *_DROPS_UNSAMPLED)


class ChildSampling:
    """The sampler's decisions for child spans of one tracer, checked once and cached."""

    __slots__ = ("_drops_unsampled", "_records_sampled", "last", "tracer")

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._drops_unsampled: bool | None = None
        self._records_sampled: bool | None = None
        # (the last parent, its verdict), replaced as one tuple so that threads never
        # see one parent with another's verdict. (A strong reference to one span: in
        # a trace many traced calls share a parent, and an identity check is cheaper
        # than re-reading its flags.)
        self.last: tuple[Any, int] = (None, UNDECIDED)

    def drops_unsampled_children(self) -> bool:
        """Whether children of a non-sampled parent are dropped."""
        known = self._drops_unsampled
        if known is None:
            known = self._drops_unsampled = _drops_unsampled_children(self.tracer)
        return bool(known)  # None (no real tracer yet): asked again next time

    def records_sampled_children(self) -> bool:
        """Whether children of a sampled local parent always record."""
        known = self._records_sampled
        if known is None:
            known = self._records_sampled = _parent_based_decides(self.tracer,
                                                                  *_RECORDS_SAMPLED)
        return bool(known)

    def verdict(self, parent: Span | None) -> int:
        """UNDECIDED, DROPPED or RECORDS for a child of ``parent`` (the current span),
        remembered for the last parent (callers check ``last`` first, inline)."""
        last = self.last
        if parent is last[0]:
            return last[1]
        verdict = self._decide(parent)
        self.last = (parent, verdict)
        return verdict

    def _decide(self, parent: Span | None) -> int:
        if parent is None:
            return UNDECIDED
        if parent.__class__ is _PIPELINE_SPAN and parent._flags & _SAMPLED:
            # The span pipeline's own sampled span, read directly (no SpanContext to
            # build): local, recording until it ends. (A non-sampled one: below.)
            return (RECORDS if parent._end_time is None and self.records_sampled_children()
                    else UNDECIDED)
        # A SpanContext is the tuple of its fields: read at once, not property by property.
        _, _, is_remote, flags, _, is_valid = parent.get_span_context()
        if not flags & _SAMPLED:
            if is_valid and self.drops_unsampled_children():
                return DROPPED
            return UNDECIDED
        if not is_remote and parent.is_recording() and self.records_sampled_children():
            return RECORDS
        return UNDECIDED
