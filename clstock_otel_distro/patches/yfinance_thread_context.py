"""Carry the download's context to the worker threads of ``yfinance.download``.

yfinance fetches each ticker of a download on its own thread, started by the
``multitasking`` library (``@multitasking.task _download_one_threaded``), not by a
ThreadPoolExecutor, and a new thread starts with an empty context: without help the
per-ticker history spans would each start a trace of their own. The yfinance
instrumentation must work without opentelemetry-instrumentation-threading, so the
context travels through the one thing that reaches the worker unchanged: the
arguments. The submitting side (``_download_one_threaded``, called in the download
span) hands over the ticker as a str subclass carrying the current context; the
worker side (``_download_one``, the body each worker runs) swaps the plain string back
in and attaches that context for the duration. When the threading instrumentation is
active too, its ``Thread.run`` wrapper has already attached the very same context
object (captured in ``Thread.start``, inside the submitting call): the worker sees it
is current and does not attach it a second time.

Both functions are private to yfinance. Installed by the yfinance instrumentation (and
undone with it): no switch of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt
from opentelemetry.context import attach, detach, get_current

from clstock_otel_distro.instrumentors._machinery.arguments import ArgumentSlot
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_SUBMIT = "_download_one_threaded"
_RUN = "_download_one"
_ARGUMENT = "ticker"


class _TickerInContext(str):
    """A ticker symbol carrying the OpenTelemetry context of the download it is part of."""

    otel_context: Any = None


def _shape(module: ModuleType) -> str | None:
    for name in (_SUBMIT, _RUN):
        function = getattr(module, name, None)
        if not callable(function):
            return f"{name} is missing"
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            return f"{name} has no signature"
        if _ARGUMENT not in parameters:
            return f"{name} no longer takes a {_ARGUMENT!r} argument"
    return None


def _submit_in_context(slot: ArgumentSlot) -> Callable[..., Any]:
    def submit(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        ticker = slot.get(args, kwargs)
        if isinstance(ticker, str) and not isinstance(ticker, _TickerInContext):
            carrier = _TickerInContext(ticker)
            carrier.otel_context = get_current()
            args, kwargs = slot.replace(args, kwargs, carrier)
        return wrapped(*args, **kwargs)

    return submit


def _run_in_download_context(slot: ArgumentSlot) -> Callable[..., Any]:
    def run(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        ticker = slot.get(args, kwargs)
        token = None
        if isinstance(ticker, _TickerInContext):
            args, kwargs = slot.replace(args, kwargs, str(ticker))  # a plain str again
            if get_current() is not ticker.otel_context:
                token = attach(ticker.otel_context)
        try:
            return wrapped(*args, **kwargs)
        finally:
            if token is not None:
                detach(token)

    return run


def patch(module: ModuleType) -> Callable[[], None]:
    """Wrap ``yfinance.multi``'s submitting and worker functions."""
    originals = {name: getattr(module, name) for name in (_SUBMIT, _RUN)}
    for name, build in ((_SUBMIT, _submit_in_context), (_RUN, _run_in_download_context)):
        wrapt.wrap_function_wrapper(module, name, build(ArgumentSlot(originals[name], _ARGUMENT)))

    def undo() -> None:
        for name, original in originals.items():
            setattr(module, name, original)

    return undo


PATCH = UpstreamPatch(
    name="yfinance-thread-context", distribution="yfinance", versions=">=0.2.54,<2",
    module="yfinance.multi", symbol=f"{_SUBMIT}+{_RUN}",
    purpose="the per-ticker spans of yfinance.download stay in the download's trace",
    shape=_shape, apply=patch,
)
