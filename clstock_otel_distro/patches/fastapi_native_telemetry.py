"""FastAPI's own telemetry steps aside without its per-request bookkeeping when the
contrib FastAPI middleware serves the app.

FastAPI (0.165) emits its own server spans, metrics and logs whenever an
OpenTelemetry SDK is configured. ``FastAPI.__call__`` asks, on every HTTP and
websocket request, whether a provider is configured (``NativeTelemetry.enabled``:
the global tracer provider's class), walks the built middleware stack looking for
the contrib ``OpenTelemetryMiddleware`` (``_legacy_otel``) and enters
``NativeTelemetry.__call__``, which, when it finds it, records nothing: no span, no
metric, no log record, no ``scope["fastapi.telemetry"]``, no context value; it
awaits the application (``Starlette.__call__``) and returns. That is the distro's
default (the contrib FastAPI instrumentation builds its middleware into every app),
and those three steps are most of what FastAPI adds to a small request such as
ClStock's ``/health`` (bench/README.md).

This patch wraps ``FastAPI.__call__``. Once per built middleware stack (and again
whenever the stack is rebuilt, a link of its chain up to the contrib middleware
changes, or the app's telemetry settings or ``_native_telemetry`` object change), it
works out whether FastAPI would stand down and do nothing else; if so, each request
goes straight to ``Starlette.__call__`` (through ``super()``, as FastAPI calls it),
after FastAPI's own ``root_path`` step. Otherwise, and for lifespan scopes, the
request goes to FastAPI's own ``__call__``. FastAPI stands down and does nothing
else when all of these hold:

- the stack's chain of ``app`` links reaches the contrib ``OpenTelemetryMiddleware``
  (``_legacy_otel``'s own test: the answer is checked against it);
- the app's telemetry settings have no ``exclude`` callable (an excluded request
  does get bookkeeping: ``scope["fastapi.telemetry"] = None`` and a context value
  that keep mounted FastAPI apps and nested requests from observing it);
- ``enabled()`` has nothing to do that could differ: tracing is on and either the
  settings name a tracer provider or the global one is configured (set once, it
  stays; ``enabled()`` then reads it and stops). While it is the API's proxy,
  ``enabled()`` may load a provider from ``OTEL_PYTHON_*_PROVIDER`` variables: the
  stack keeps FastAPI's own path (a provider set later counts from the next stack);
- FastAPI's functions this stands in for (``_legacy_otel``,
  ``NativeTelemetry.enabled``/``__call__``, ``_unconfigured``,
  ``opentelemetry.trace.get_tracer_provider``) are the ones the patch was applied
  over, when the stack is judged (a replacement made later is not noticed until the
  next judgement).

It does not: look at the ``"fastapi.telemetry"`` scope key or at websocket scopes
apart (FastAPI goes to ``Starlette.__call__`` for both as well), nor keep FastAPI's
and ``NativeTelemetry``'s frames in a traceback that escapes the app. The request is
decided when the app is called, not when the coroutine is first awaited (ASGI
servers await at once).

The judge is ``bench/instructions.py --endpoints health``; the differential test is
tests/distro/test_fastapi_native_telemetry.py.
``OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS=false`` leaves FastAPI's ``__call__`` as it is.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt

from clstock_otel_distro.environment_variables import (
    OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS,
)
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["PATCH", "patch"]

_MODULE = "fastapi.applications"
_SYMBOL = "FastAPI.__call__"
# The app's own record of its judged stack (a _Verdict), kept in its __dict__.
_VERDICT = "_clstock_native_verdict"
_SERVED_TYPES = ("http", "websocket")
# Where upstream's own test looks for the contrib middleware (_legacy_otel).
_CONTRIB_MODULE = "opentelemetry.instrumentation.asgi"
_CONTRIB_CLASS = "OpenTelemetryMiddleware"


class _Verdict:
    """What one judgement of an app's stack found (immutable once made)."""

    __slots__ = ("belows", "config", "native", "nodes", "stack", "steps_aside")

    def __init__(self, stack: Any, native: Any, config: dict[str, Any],
                 links: tuple[tuple[Any, Any], ...], steps_aside: bool) -> None:
        self.stack = stack
        self.native = native
        self.config = config  # a copy of the settings judged
        # The chain from the stack down to the contrib middleware: each node, its app.
        self.nodes = tuple(node for node, _ in links)
        self.belows = tuple(below for _, below in links)
        self.steps_aside = steps_aside


_APP = operator.attrgetter("app")


def _shape(module: ModuleType) -> str | None:
    cls = getattr(module, "FastAPI", None)
    if not isinstance(cls, type):
        return "FastAPI is missing"
    call = cls.__dict__.get("__call__")
    if not inspect.iscoroutinefunction(call):
        return f"{_SYMBOL} is not a coroutine function"
    if list(inspect.signature(call).parameters) != ["self", "scope", "receive", "send"]:
        return f"{_SYMBOL} no longer takes (scope, receive, send)"
    if not callable(getattr(module, "_legacy_otel", None)):
        return "_legacy_otel is missing"
    native = getattr(module, "NativeTelemetry", None)
    if not isinstance(native, type) or not callable(getattr(native, "enabled", None)):
        return "NativeTelemetry.enabled is missing"
    native_call = native.__dict__.get("__call__")
    if not inspect.iscoroutinefunction(native_call) or "legacy_otel" not in (
            inspect.signature(native_call).parameters):
        return "NativeTelemetry.__call__ no longer takes legacy_otel"
    return None


def patch(module: ModuleType) -> Callable[[], None]:
    """Wrap ``FastAPI.__call__`` of ``module`` (``fastapi.applications``)."""
    from fastapi.telemetry import _asgi
    from opentelemetry import trace

    cls = module.FastAPI
    original = cls.__dict__["__call__"]
    seen = _Seen(module, _asgi, trace)
    wrapt.wrap_function_wrapper(module, _SYMBOL, _stand_aside(cls, seen))

    def undo() -> None:
        cls.__call__ = original

    return undo


PATCH = UpstreamPatch(
    name="fastapi-native-telemetry", distribution="fastapi", versions=">=0.165,<0.166",
    module=_MODULE, symbol=_SYMBOL,
    purpose="FastAPI's own telemetry skipped per request where the contrib middleware serves",
    shape=_shape, apply=patch, switch=OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS,
)


class _Seen:
    """FastAPI's functions the bypass stands in for, as they were when it was applied."""

    def __init__(self, applications: ModuleType, asgi: ModuleType, trace: ModuleType) -> None:
        self.applications = applications
        self.asgi = asgi
        self.trace = trace
        self.native_class = applications.NativeTelemetry
        self.values = self._current()

    def _current(self) -> tuple[Any, ...]:
        native = self.native_class
        return (self.applications._legacy_otel, self.applications.NativeTelemetry,
                native.__dict__.get("enabled"), native.__dict__.get("__call__"),
                self.asgi._unconfigured, self.trace.get_tracer_provider)

    def unchanged(self) -> bool:
        return all(now is then for now, then in zip(self._current(), self.values))


def _stand_aside(cls: type, seen: _Seen) -> Callable[..., Any]:
    def call(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        # The per-request path: the app's verdict still holds (same stack, same chain
        # down to the contrib middleware, same telemetry object and settings).
        try:
            scope, receive, send = args
            verdict = instance._clstock_native_verdict
            if not (verdict.steps_aside
                    and verdict.stack is instance.middleware_stack
                    and verdict.native is instance._native_telemetry
                    and verdict.native.config == verdict.config
                    and tuple(map(_APP, verdict.nodes)) == verdict.belows
                    and not kwargs
                    and scope["type"] in _SERVED_TYPES):
                return _judged(wrapped, instance, args, kwargs, cls, seen)
        except Exception:  # no verdict yet, a malformed call...: judged on the way
            return _judged(wrapped, instance, args, kwargs, cls, seen)
        if instance.root_path:
            return _with_root_path(cls, instance, scope, receive, send)
        return super(cls, instance).__call__(scope, receive, send)

    return call


def _judged(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict,
            cls: type, seen: _Seen) -> Any:
    """A request the per-request path did not serve: FastAPI's own ``__call__``, unless
    the app's stack, judged now (again), is one FastAPI stands down for."""
    try:
        scope, receive, send = args
        verdict = instance.__dict__.get(_VERDICT)
        stack = instance.middleware_stack
        native = instance._native_telemetry
        if (verdict is None or verdict.stack is not stack or verdict.native is not native
                or native.config != verdict.config
                or tuple(map(_APP, verdict.nodes)) != verdict.belows):
            # Judged on a request FastAPI asks enabled() about: HTTP or websocket,
            # without scope["fastapi.telemetry"], with a stack built.
            if stack is None or scope["type"] not in _SERVED_TYPES \
                    or "fastapi.telemetry" in scope:
                return wrapped(*args, **kwargs)
            verdict = instance.__dict__[_VERDICT] = _judge(stack, native, seen)
        if kwargs or not verdict.steps_aside or scope["type"] not in _SERVED_TYPES:
            return wrapped(*args, **kwargs)
    except Exception:  # anything unexpected: FastAPI's own way
        return wrapped(*args, **kwargs)
    if instance.root_path:
        return _with_root_path(cls, instance, scope, receive, send)
    return super(cls, instance).__call__(scope, receive, send)


async def _with_root_path(cls: type, app: Any, scope: Any, receive: Any, send: Any) -> None:
    """FastAPI's first step (the app's root path into the scope), then Starlette's call."""
    scope["root_path"] = app.root_path
    await super(cls, app).__call__(scope, receive, send)


def _judge(stack: Any, native: Any, seen: _Seen) -> _Verdict:
    """Whether FastAPI's ``__call__`` would stand down and do nothing but call Starlette's,
    for requests served by ``stack`` with the telemetry object ``native``, as long as
    nothing judged changes.

    Called for a request FastAPI's ``__call__`` asks ``enabled()`` about too, so the
    provider lookup made here is one FastAPI is about to make itself.
    """
    config = native.config
    links = _links_to_contrib(stack)
    steps_aside = bool(
        links is not None
        and seen.unchanged()
        and type(native) is seen.native_class
        and seen.applications._legacy_otel(stack) is True
        and config["exclude"] is None
        and config["tracing"] is True
        and (config["tracer_provider"] is not None
             or not seen.asgi._unconfigured(seen.trace.get_tracer_provider()))
    )
    return _Verdict(stack, native, dict(config), links or (), steps_aside)


def _links_to_contrib(stack: Any) -> tuple[tuple[Any, Any], ...] | None:
    """The ``app`` links from ``stack`` down to the first contrib middleware, walked as
    ``_legacy_otel`` walks them; None when there is none."""
    links = []
    seen: set[int] = set()
    node = stack
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        kind = type(node)
        if kind.__module__ == _CONTRIB_MODULE and kind.__name__ == _CONTRIB_CLASS:
            return tuple(links)
        below = getattr(node, "app", None)
        links.append((node, below))
        node = below
    return None
