"""Hash each SDK Resource once instead of once per exported span.

``Resource.__hash__`` (SDK 1.45) JSON-encodes every attribute on each call, and the
OTLP encoders group spans by resource, hashing the resource of every span they
export: 6.5 µs per span with the process, os and host detectors' attributes, about
1% of a traced ``/api/v1/recommendations`` (bench/README.md). A resource's
attributes are immutable, so its hash is computed once and kept on the object.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource

__all__ = ["install", "uninstall"]

_CACHE = "_clstock_hash"


def install() -> None:
    """Make ``Resource.__hash__`` compute each resource's hash once (idempotent)."""
    compute = Resource.__hash__
    if getattr(compute, "_clstock_once", False):
        return

    def __hash__(self: Resource) -> int:
        known = self.__dict__.get(_CACHE)
        if known is None:
            # Two threads may both compute it the first time: same value.
            known = self.__dict__[_CACHE] = compute(self)
        return known

    __hash__._clstock_once = True  # type: ignore[attr-defined]
    __hash__.__wrapped__ = compute  # type: ignore[attr-defined]
    Resource.__hash__ = __hash__  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore the SDK's own ``Resource.__hash__`` (for tests)."""
    current: Any = Resource.__hash__
    if getattr(current, "_clstock_once", False):
        Resource.__hash__ = current.__wrapped__  # type: ignore[method-assign]
