"""Values a span can carry, read without ever raising into the application.

Extractors and callbacks run through :func:`safe_call`; whatever they return goes
through :func:`attribute_value`; a failure becomes status, event and ``error.type``
through :func:`record_error`, while the exception itself propagates unchanged.

The exception event carries ``exception.type``, ``exception.message`` and
``exception.stacktrace``, and no ``exception.escaped``: the semantic conventions
deprecated it (an exception is recorded on a span only when it escapes the span's
scope, which is what every one recorded here does), and the SDK's
``record_exception`` would write the string ``"False"`` there.
"""

from __future__ import annotations

import functools
import logging
import numbers
import traceback
from collections.abc import Callable, Sized
from typing import Any

from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Span, Status, StatusCode

from clstock_otel_distro.semconv import ERROR_TYPE

_logger = logging.getLogger(__name__)

_PRIMITIVES = frozenset((str, bool, int, float))


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
    if value is None or value.__class__ in _PRIMITIVES or isinstance(value, str):
        return value
    # numpy's float64 is a float, and IntEnum an int: their number, as the builtin type
    # (the same OTLP value; the span keeps no foreign object, and stores it as it stores
    # a float). Checked first, in C, before the ABCs (numpy's other numbers).
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):  # (bool, which cannot be subclassed, passed above)
        return int(value)
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


def _message(exc: BaseException) -> str | None:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ raises
        return None


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    message = _message(exc)
    return f"{name}: {message}" if message else name


_EXCEPTION_EVENT = "exception"


def _exception_event(span: Span, exc: BaseException) -> None:
    """The semantic conventions' exception event, without the deprecated ``exception.escaped``."""
    attributes = {EXCEPTION_TYPE: error_type(exc)}
    message = _message(exc)
    if message is not None:
        attributes[EXCEPTION_MESSAGE] = message
    # Three-argument form: Python 3.9 has no format_exception(exc).
    attributes[EXCEPTION_STACKTRACE] = "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    span.add_event(_EXCEPTION_EVENT, attributes)


def record_error(span: Span, exc: BaseException, kind: str | None = None) -> None:
    """Mark ``span`` failed by ``exc``: status ERROR, exception event, ``error.type``.

    Never raises; the caller re-raises ``exc`` itself, unchanged.
    """
    try:
        span.set_status(Status(StatusCode.ERROR, _describe(exc)))
        span.set_attribute(ERROR_TYPE, kind or error_type(exc))
        _exception_event(span, exc)  # last: it formats the exception, which may raise
    except Exception:
        _logger.debug("clstock-otel could not record an exception on a span", exc_info=True)
