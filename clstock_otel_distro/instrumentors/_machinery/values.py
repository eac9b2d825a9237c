"""Values a span can carry, read without ever raising into the application.

Extractors and callbacks run through :func:`safe_call`; whatever they return goes
through :func:`attribute_value`; a failure becomes status, event and ``error.type``
through :func:`record_error`, while the exception itself propagates unchanged.
"""

from __future__ import annotations

import functools
import logging
import numbers
from collections.abc import Callable, Sized
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from clstock_otel_distro.semconv import ERROR_TYPE

_logger = logging.getLogger(__name__)

_PRIMITIVES = (str, bool, int, float)


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
