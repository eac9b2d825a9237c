"""The wrappers that run a traced call, one per kind of callable.

A driver turns an :class:`~calls.Operation` into a wrapt wrapper matching what the
target is, so the wrapper keeps its ``inspect`` answers: a plain function, a
coroutine function (the span starts when the coroutine is awaited, in the awaiting
task's context), a generator or an async generator. :func:`traced` is what
instrumentors use: a wrapper factory building the operation and picking the driver
when the target is patched.

Generators: the span covers the whole iteration, but is current only while the
generator's own code runs (each step), never while the consumer runs between two
items: a span left attached across a ``yield`` would become the parent of whatever
the consumer does next and leak into its context. So both generator drivers
re-implement ``yield from`` (which async generators lack) step by step, and share
their bookkeeping (:class:`_Steps`): only the ``yield`` and ``await`` are theirs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from clstock_otel_distro.instrumentors._machinery.calls import MeasuredCall, Operation
from clstock_otel_distro.instrumentors._machinery.specs import (
    Target,
    TraceSpec,
    Wrapper,
    WrapperFactory,
)
from clstock_otel_distro.instrumentors._machinery.telemetry import InstrumentationTelemetry

__all__ = ["driver_for", "traced"]


def _function_driver(op: Operation) -> Wrapper:
    def traced_function(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        call = op.begin(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            value = wrapped(*call.args, **call.kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.succeed(value)
        return value

    return traced_function


def _coroutine_driver(op: Operation) -> Wrapper:
    async def traced_coroutine(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        call = op.begin(instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            value = await wrapped(*call.args, **call.kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        call.succeed(value)
        return value

    return traced_coroutine


class _Steps:
    """The bookkeeping of one traced (async) generator's iteration.

    It starts the call (not yet current), creates the inner generator, keeps what
    the consumer sends or throws in for the next step, makes the call current around
    each step and ends it however the iteration ends. A call of None (suppressed)
    makes every method a pass-through.
    """

    __slots__ = ("call", "inner", "sent", "thrown")

    def __init__(self, op: Operation, wrapped: Callable[..., Any], instance: Any,
                 args: tuple, kwargs: dict) -> None:
        call = op.begin(instance, args, kwargs, activate=False)
        self.call: MeasuredCall | None = call
        self.inner = wrapped(*args, **kwargs) if call is None else \
            wrapped(*call.args, **call.kwargs)
        self.sent: Any = None
        self.thrown: BaseException | None = None

    def resume(self, send: Callable[[Any], Any], throw: Callable[[BaseException], Any]) -> Any:
        """Make the call current and resume the inner generator with what the consumer
        sent or threw: the next item (for an async generator, the awaitable of it).
        ``pause()`` must follow, whatever happens."""
        if self.call is not None:
            self.call.activate()
        sent, thrown = self.sent, self.thrown
        self.sent = self.thrown = None
        return send(sent) if thrown is None else throw(thrown)

    def pause(self) -> None:
        """The step is over: the consumer runs outside the call's span."""
        if self.call is not None:
            self.call.deactivate()

    def receive(self, sent: Any) -> None:
        """What the consumer sent with ``send()`` / ``asend()``: for the next step."""
        self.sent = sent

    def receive_thrown(self, exc: BaseException) -> None:
        """What the consumer threw in with ``throw()`` / ``athrow()``: for the next step."""
        self.thrown = exc

    def enter_close(self) -> None:
        """Closed early by the consumer: the inner generator's cleanup runs in the span."""
        if self.call is not None:
            self.call.activate()

    def closed(self) -> None:
        """After the inner generator's close: an early close is a normal end."""
        if self.call is not None:
            self.call.deactivate()
            self.call.succeed(None)

    def returned(self, value: Any) -> None:
        if self.call is not None:
            self.call.succeed(value)

    def failed(self, exc: BaseException) -> None:
        if self.call is not None:
            self.call.fail(exc)


def _generator_driver(op: Operation) -> Wrapper:
    def traced_generator(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        steps = _Steps(op, wrapped, instance, args, kwargs)
        inner = steps.inner
        try:
            while True:
                try:
                    item = steps.resume(inner.send, inner.throw)
                finally:
                    steps.pause()
                try:
                    steps.receive((yield item))
                except GeneratorExit:
                    raise
                except BaseException as exc:  # the consumer's throw(): forwarded inside
                    steps.receive_thrown(exc)
        except StopIteration as stop:
            steps.returned(stop.value)
            return stop.value
        except GeneratorExit:
            steps.enter_close()
            try:
                inner.close()
            finally:
                steps.closed()
            raise
        except BaseException as exc:
            steps.failed(exc)
            raise

    return traced_generator


def _async_generator_driver(op: Operation) -> Wrapper:
    async def traced_async_generator(
        wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> Any:
        steps = _Steps(op, wrapped, instance, args, kwargs)
        inner = steps.inner
        try:
            while True:
                try:
                    item = await steps.resume(inner.asend, inner.athrow)
                finally:
                    steps.pause()
                try:
                    steps.receive((yield item))
                except GeneratorExit:
                    raise
                except BaseException as exc:  # the consumer's athrow(): forwarded inside
                    steps.receive_thrown(exc)
        except StopAsyncIteration:
            steps.returned(None)
            return
        except GeneratorExit:
            steps.enter_close()
            try:
                await inner.aclose()
            finally:
                steps.closed()
            raise
        except BaseException as exc:
            steps.failed(exc)
            raise

    return traced_async_generator


def driver_for(function: Any) -> Callable[[Operation], Wrapper]:
    """The driver matching what ``function`` is (async generator, coroutine, ...)."""
    if inspect.isasyncgenfunction(function):
        return _async_generator_driver
    if inspect.iscoroutinefunction(function):
        return _coroutine_driver
    if inspect.isgeneratorfunction(function):
        return _generator_driver
    return _function_driver


def traced(telemetry: InstrumentationTelemetry, spec: TraceSpec) -> WrapperFactory:
    """The wrapper factory tracing a target as ``spec`` says, with ``telemetry``."""

    def build(target: Target) -> Wrapper:
        return driver_for(target.function)(Operation(telemetry, target, spec))

    return build

