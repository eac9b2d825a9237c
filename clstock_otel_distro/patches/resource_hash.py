"""Hash each SDK Resource once instead of once per exported span.

``Resource.__hash__`` (SDK 1.45) JSON-encodes every attribute on each call, and the
OTLP encoders group spans by resource, hashing the resource of every span they
export (bench/README.md has its cost). A resource's attributes are immutable, so its
hash is computed once and kept on the object; the value is the SDK's own.
``OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE=false`` turns it off.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_CACHE = "_clstock_hash"


def _shape(module: ModuleType) -> str | None:
    resource_class = getattr(module, "Resource", None)
    if resource_class is None:
        return "Resource is missing"
    if "__hash__" not in vars(resource_class):
        return "Resource no longer defines __hash__"
    if not hasattr(resource_class({}), "__dict__"):
        return "Resource instances no longer have a __dict__ to keep the hash in"
    return None


def patch(module: ModuleType) -> Callable[[], None]:
    """Make ``Resource.__hash__`` compute each resource's hash once."""
    resource_class = module.Resource
    compute = resource_class.__hash__

    def __hash__(self: object) -> int:
        known = self.__dict__.get(_CACHE)
        if known is None:
            # Two threads may both compute it the first time: same value.
            known = self.__dict__[_CACHE] = compute(self)
        return known

    __hash__.__wrapped__ = compute  # type: ignore[attr-defined]
    resource_class.__hash__ = __hash__

    def undo() -> None:
        resource_class.__hash__ = compute

    return undo


PATCH = UpstreamPatch(
    name="resource-hash-cache", distribution="opentelemetry-sdk", versions=">=1.45,<1.46",
    module="opentelemetry.sdk.resources", symbol="Resource.__hash__",
    purpose="each Resource hashed once, not once per exported span",
    shape=_shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE,
)
