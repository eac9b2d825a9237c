"""Encode each repeated span attribute to OTLP protobuf once, not once per span.

The OTLP exporters (HTTP and gRPC alike) turn every attribute of every exported span
into a ``KeyValue`` message built from Python, fifteen of them on a FastAPI server
span, which makes the encoding the largest single cost the distro adds to a small
request (bench/encoding.py, bench/README.md). Most attribute values repeat from span to
span (``http.request.method=GET``, ``http.route``, ``server.address``, a stock
symbol, a source file): those ``KeyValue`` messages are kept, and a span's attribute
list is assembled from them. Protobuf copies a message into the span that holds it,
so a kept message is never changed by an export.

Only ``str``, ``int`` and ``bool`` values are kept (with their type: ``True`` and
``1`` encode differently); floats (scores, prices: rarely repeated; ``-0.0`` equals
``0.0``) and sequences are encoded each time, by the SDK's own function. At most
:data:`MAX_ENTRIES` messages are kept, then all are forgotten and learned again. The
bytes sent are identical to the SDK's (tests/distro/test_attribute_cache.py).
``OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE=false`` turns it off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["MAX_ENTRIES", "PATCH", "patch"]

_logger = logging.getLogger(__name__)

# The SDK's span encoder; it looks _encode_attributes up in its own namespace for the
# span's, its events' and its links' attributes (resources are encoded elsewhere,
# once per export).
_MODULE = "opentelemetry.exporter.otlp.proto.common._internal.trace_encoder"
_FUNCTION = "_encode_attributes"
# About 200 bytes each (key, value and message): up to ~1 MB.
MAX_ENTRIES = 4096
_CACHED_TYPES = (str, int, bool)


def _shape(module: ModuleType) -> str | None:
    encode = getattr(module, _FUNCTION, None)
    if not callable(encode):
        return f"{_FUNCTION} is missing"
    # One mapping in, a list of KeyValue messages out: checked on a real call.
    encoded = encode({"clstock.shape": "ok"})
    if not (isinstance(encoded, list) and len(encoded) == 1
            and getattr(encoded[0], "key", None) == "clstock.shape"):
        return f"{_FUNCTION} no longer returns a list of KeyValue messages"
    return None


def patch(module: ModuleType) -> Callable[[], None]:
    """Wrap ``module._encode_attributes`` (the SDK's OTLP span encoder module)."""
    original = getattr(module, _FUNCTION)
    wrapt.wrap_function_wrapper(module, _FUNCTION, _KeptEncodings())
    return lambda: setattr(module, _FUNCTION, original)


PATCH = UpstreamPatch(
    name="otlp-attribute-cache", distribution="opentelemetry-exporter-otlp-proto-common",
    versions=">=1.45,<1.46",
    module=_MODULE, symbol=_FUNCTION, purpose="repeated span attributes encoded to OTLP once",
    shape=_shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE,
)


class _KeptEncodings:
    """The wrapper of ``_encode_attributes``: the kept ``KeyValue`` messages, by
    (key, type, value)."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, type, Any], Any] = {}

    def __len__(self) -> int:
        return len(self.messages)

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: tuple,
                 kwargs: dict) -> Any:
        attributes = args[0] if len(args) == 1 and not kwargs else None
        if not attributes or not isinstance(attributes, Mapping):
            return wrapped(*args, **kwargs)
        kept = self.messages
        encoded: list[Any] = []
        for key, value in attributes.items():
            kind = type(value)
            if kind not in _CACHED_TYPES or type(key) is not str:
                # The SDK's own encoding (and its logging of a value it cannot encode).
                encoded.extend(wrapped({key: value}))
                continue
            cache_key = (key, kind, value)
            message = kept.get(cache_key)
            if message is None:
                one = wrapped({key: value})
                if not one:  # not encodable (an int beyond 64 bits): logged, left out
                    continue
                message = one[0]
                if len(kept) >= MAX_ENTRIES:
                    kept.clear()
                kept[cache_key] = message
            encoded.append(message)
        return encoded
