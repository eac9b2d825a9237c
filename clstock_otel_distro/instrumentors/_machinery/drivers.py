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
    """The bookkeeping of one traced (async) generator's iteration, for both drivers.

    It starts the call (not yet current) and creates the inner generator; for each
    step it makes the call current, resumes the inner generator with what the
    consumer sent or threw in, and makes the call not current again; it ends the
    call however the iteration ends. A call of None (suppressed) makes it a plain
    ``yield from``.
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

    def _enter(self) -> None:
        if self.call is not None:
            self.call.activate()

    def _leave(self) -> None:
        if self.call is not None:
            self.call.deactivate()

    def _take(self) -> tuple[Any, BaseException | None]:
        sent, thrown = self.sent, self.thrown
        self.sent = self.thrown = None
        return sent, thrown

    def next_item(self) -> Any:
        """The generator's next item (StopIteration at its end), produced in the span."""
        sent, thrown = self._take()
        self._enter()
        try:
            return self.inner.send(sent) if thrown is None else self.inner.throw(thrown)
        finally:
            self._leave()

    async def next_async_item(self) -> Any:
        """The async generator's next item (StopAsyncIteration at its end), in the span."""
        sent, thrown = self._take()
        self._enter()
        try:
            if thrown is None:
                return await self.inner.asend(sent)
            return await self.inner.athrow(thrown)
        finally:
            self._leave()

    def thrown_in(self, exc: BaseException) -> None:
        """The consumer threw ``exc`` in: forwarded inside at the next step, except the
        GeneratorExit of ``close()``, which ends the iteration (re-raised)."""
        if isinstance(exc, GeneratorExit):
            raise exc
        self.thrown = exc

    def close(self) -> None:
        """Closed early by the consumer: the inner generator's cleanup runs in the span,
        and an early close is a normal end."""
        self._enter()
        try:
            self.inner.close()
        finally:
            self._closed()

    async def aclose(self) -> None:
        """``close()`` for an async generator."""
        self._enter()
        try:
            await self.inner.aclose()
        finally:
            self._closed()

    def _closed(self) -> None:
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
        try:
            while True:
                item = steps.next_item()
                try:
                    steps.sent = yield item
                except BaseException as exc:  # the consumer's throw() or close()
                    steps.thrown_in(exc)
        except StopIteration as stop:
            steps.returned(stop.value)
            return stop.value
        except GeneratorExit:
            steps.close()
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
        try:
            while True:
                item = await steps.next_async_item()
                try:
                    steps.sent = yield item
                except BaseException as exc:  # the consumer's athrow() or aclose()
                    steps.thrown_in(exc)
        except StopAsyncIteration:
            steps.returned(None)
        except GeneratorExit:
            await steps.aclose()
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

