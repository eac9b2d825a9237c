"""What the sampler will decide for a child span, learnt once per tracer.

Two shortcuts of the traced call (``calls.Operation.begin``) rest on it:

- the fast path: under a non-sampled parent, with a sampler that drops every child of
  such a parent (the SDK's default, ``ParentBased`` with ``ALWAYS_OFF`` delegates, or
  ``always_off`` itself, which drops every span), the span would only be
  non-recording, so none is created; the context keeps the parent, so what is
  propagated (trace id, sampled=0) does not change;
- attributes up front: under a local, sampled, recording parent, with a sampler that
  records every such child (``parentbased_always_on`` or ``parentbased_traceidratio``),
  the call-time attributes are computed before the span starts and given to
  ``start_span`` (one attribute copy instead of two).

The context is read by key: these are the keys ``get_current_span()`` and
``is_instrumentation_enabled()`` look up (the API defines them; the contrib
instrumentations' utils import the suppression key the same way), plus the legacy
suppression key they still honour.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import Span, TraceFlags, Tracer
from opentelemetry.trace.propagation import _SPAN_KEY

SPAN_KEY = _SPAN_KEY
SUPPRESS_KEY = _SUPPRESS_INSTRUMENTATION_KEY
SUPPRESS_KEY_PLAIN = "suppress_instrumentation"
_SAMPLED = TraceFlags.SAMPLED


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
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler
    except ImportError:  # pragma: no cover - a sampler without the SDK
        return False
    if not isinstance(sampler, ParentBased):
        return False
    wanted = Decision[decision]
    for name in delegates:
        delegate = getattr(sampler, name, None)
        if not (isinstance(delegate, StaticSampler)
                and getattr(delegate, "_decision", None) is wanted):
            return False
    return True


def _drops_every_span(tracer: Tracer) -> bool | None:
    """Whether ``tracer``'s sampler is a static one that drops (``always_off``); None
    while the tracer has no sampler yet."""
    sampler = _sampler_of(tracer)
    if sampler is None:
        return None
    try:
        from opentelemetry.sdk.trace.sampling import Decision, StaticSampler
    except ImportError:  # pragma: no cover - a sampler without the SDK
        return False
    return isinstance(sampler, StaticSampler) and getattr(sampler, "_decision",
                                                          None) is Decision.DROP


# The default sampler's "parent not sampled" delegates drop: such a child would be a
# non-recording span. Its "local parent sampled" delegate records: such a child is
# certain to record.
_DROPS_UNSAMPLED = (("_local_parent_not_sampled", "_remote_parent_not_sampled"), "DROP")
_RECORDS_SAMPLED = (("_local_parent_sampled",), "RECORD_AND_SAMPLE")


class ChildSampling:
    """The sampler's decisions for child spans of one tracer, checked once and cached."""

    __slots__ = ("_drops_unsampled", "_records_sampled", "tracer", "unsampled_parent")

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._drops_unsampled: bool | None = None
        self._records_sampled: bool | None = None
        # The last parent found non-sampled: in a non-sampled trace many traced calls
        # share a parent, and an identity check is cheaper than re-reading its flags.
        # (A strong reference to one small span object; replaced by the next one.)
        self.unsampled_parent: Any = None

    def drops_unsampled_children(self) -> bool:
        """Whether children of a non-sampled parent are dropped."""
        known = self._drops_unsampled
        if known is None:
            known = _drops_every_span(self.tracer)
            if known is False:
                known = _parent_based_decides(self.tracer, *_DROPS_UNSAMPLED)
            self._drops_unsampled = known
        return bool(known)  # None (no real tracer yet): asked again next time

    def records_sampled_children(self) -> bool:
        """Whether children of a sampled local parent always record."""
        known = self._records_sampled
        if known is None:
            known = self._records_sampled = _parent_based_decides(self.tracer,
                                                                  *_RECORDS_SAMPLED)
        return bool(known)

    def drops_children_of(self, parent: Span) -> bool:
        """Whether a child of ``parent`` would be dropped: the fast path (remembered)."""
        parent_context = parent.get_span_context()
        if (parent_context.trace_flags & _SAMPLED or not parent_context.is_valid
                or not self.drops_unsampled_children()):
            return False
        self.unsampled_parent = parent
        return True

    def records_child(self, ctx: Any) -> bool:
        """Whether a span started in ``ctx`` is certain to record (attributes up front)."""
        parent = ctx.get(SPAN_KEY)
        if parent is None or not parent.is_recording():
            return False
        parent_context = parent.get_span_context()
        return bool(parent_context.trace_flags & _SAMPLED) and not parent_context.is_remote \
            and self.records_sampled_children()
