"""The exception event of a traced call that raised: the current semantic conventions'
attributes, without the deprecated ``exception.escaped``; and what upstream's FastAPI
server span records for the same failure."""

from __future__ import annotations

import asyncio
import types

import pytest
from opentelemetry.trace import StatusCode

from clstock_otel_distro.instrumentors._machinery import ClassPatch, TraceSpec, traced
from clstock_otel_distro.instrumentors._machinery.telemetry import InstrumentationTelemetry
from clstock_otel_distro.instrumentors._machinery.values import record_error
from clstock_otel_distro.semconv import CLSTOCK_OPERATION_DURATION, CLSTOCK_OPERATION_NAME
from tests.support.otel_testing import Telemetry

_ESCAPED = "exception.escaped"


async def _get(app, path: str) -> tuple[int | None, BaseException | None]:
    """One GET through the ASGI app (no HTTP client needed): its status, and what it raised."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"testserver")],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    status: list[int] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    try:
        await app(scope, receive, send)
    except Exception as exc:  # Starlette re-raises after sending its 500
        return (status or [None])[0], exc
    return (status or [None])[0], None


class QuoteError(Exception):
    """A ClStock-like failure with a module-qualified error type."""


def _trace(pipeline: Telemetry, module: types.ModuleType, cls: type, patches: list) -> None:
    setattr(module, cls.__name__, cls)
    telemetry = InstrumentationTelemetry("tests.exception_event", pipeline.kwargs,
                                         histogram=CLSTOCK_OPERATION_DURATION,
                                         operation_key=CLSTOCK_OPERATION_NAME)
    patches.append(ClassPatch(module.__name__, cls.__name__,
                              {"calculate_score": traced(telemetry, TraceSpec())}).install())


def test_an_escaped_exception_is_recorded_without_exception_escaped(telemetry, module, patches):
    """type, message and stacktrace of the very exception; no exception.escaped at all."""

    class Predictor:
        def calculate_score(self, symbol):
            raise QuoteError(f"no quote for {symbol}")

    _trace(telemetry, module, Predictor, patches)
    with pytest.raises(QuoteError):
        Predictor().calculate_score("7203")

    span = telemetry.span("Predictor.calculate_score")
    assert span.status.status_code is StatusCode.ERROR
    [event] = span.events
    assert event.name == "exception"
    assert _ESCAPED not in event.attributes
    assert event.attributes["exception.type"] == f"{__name__}.QuoteError"
    assert event.attributes["exception.message"] == "no quote for 7203"
    stacktrace = event.attributes["exception.stacktrace"]
    assert stacktrace.startswith("Traceback (most recent call last):")
    assert "in calculate_score" in stacktrace
    assert stacktrace.rstrip().endswith(f"{__name__}.QuoteError: no quote for 7203")


def test_a_builtin_exception_type_is_not_module_qualified(telemetry):
    """As the SDK spells it: ``ValueError``, not ``builtins.ValueError``."""
    with telemetry.tracer().start_as_current_span("op", record_exception=False) as span:
        record_error(span, ValueError("bad"))
    [event] = telemetry.span("op").events
    assert dict(event.attributes) == {
        "exception.type": "ValueError",
        "exception.message": "bad",
        "exception.stacktrace": "ValueError: bad\n",
    }


def test_an_exception_whose_str_raises_is_recorded_without_a_message(telemetry):
    """The event is still there (type and stacktrace); nothing is raised."""

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str")

    with telemetry.tracer().start_as_current_span("op", record_exception=False) as span:
        record_error(span, Unprintable())
    [event] = telemetry.span("op").events
    assert event.attributes["exception.type"].endswith("Unprintable")
    assert "exception.message" not in event.attributes
    assert _ESCAPED not in event.attributes


def test_upstream_fastapi_server_span_records_exception_escaped_false(telemetry):
    """Upstream's FastAPI/ASGI middleware records an exception that escaped the app with
    the SDK's ``record_exception``, which writes ``exception.escaped="False"``.

    What this test pins is upstream's behaviour, documented in the README: when it
    changes, update the README (and this test).
    """
    fastapi = pytest.importorskip("fastapi")
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = fastapi.FastAPI()

    @app.get("/boom")
    def boom():
        raise QuoteError("escaped the app")

    FastAPIInstrumentor.instrument_app(app, tracer_provider=telemetry.tracer_provider,
                                       meter_provider=telemetry.meter_provider)
    try:
        status, raised = asyncio.run(_get(app, "/boom"))
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    assert status == 500
    assert isinstance(raised, QuoteError)  # it escaped the application
    server = telemetry.span("GET /boom")
    events = [event for event in server.events if event.name == "exception"]
    assert events, [event.name for event in server.events]
    assert {event.attributes.get(_ESCAPED) for event in events} == {"False"}
