"""ClStockMethodsInstrumentor: OTEL_PYTHON_CLSTOCK_TRACE_METHODS entries, lazily patched."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
import textwrap
import uuid

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_TRACE_METHODS
from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
from clstock_otel_distro.instrumentors.methods import ClStockMethodsInstrumentor
from clstock_otel_distro.semconv import (
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    CLSTOCK_RUNTIME_CLASS,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    ERROR_TYPE,
)
from tests.support.otel_testing import Telemetry, instrumented, parent_of

_SOURCE = textwrap.dedent("""
    import asyncio


    class Screener:
        def screen(self, symbols):
            return [s for s in symbols if s.startswith("7")]

        async def refresh(self, symbol):
            await asyncio.sleep(0)
            return symbol


    class NightlyScreener(Screener):
        def screen(self, symbols):
            return super().screen(symbols)[:1]


    class InheritingScreener(Screener):
        pass


    def rank(scores):
        if not scores:
            raise ValueError("nothing to rank")
        return sorted(scores, reverse=True)


    async def fetch_all(symbols):
        return list(symbols)
""")


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The name of a not-yet-imported application module; removed from sys.modules after."""
    name = f"screening_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(OTEL_PYTHON_CLSTOCK_TRACE_METHODS, raising=False)
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def telemetry():
    pipeline = Telemetry.create()
    yield pipeline
    pipeline.shutdown()


def test_methods_and_functions_from_the_environment(telemetry, app, monkeypatch):
    """Listed methods and functions, sync and async, are traced once imported."""
    monkeypatch.setenv(OTEL_PYTHON_CLSTOCK_TRACE_METHODS,
                       f"{app}:Screener.screen,{app}:rank, {app}:Screener.refresh,"
                       f"{app}:fetch_all")
    with instrumented(ClStockMethodsInstrumentor(), **telemetry.kwargs):
        assert app not in sys.modules
        module = importlib.import_module(app)
        with telemetry.tracer().start_as_current_span("job") as job:
            assert module.NightlyScreener().screen(["7203", "7974", "6758"]) == ["7203"]
            assert module.rank([1, 3, 2]) == [3, 2, 1]
            assert asyncio.run(module.Screener().refresh("7203")) == "7203"
            assert asyncio.run(module.fetch_all(("7203",))) == ["7203"]

    spans = telemetry.spans()
    assert sorted(telemetry.names()) == [
        "NightlyScreener.screen", "Screener.refresh", "Screener.screen", "fetch_all", "job",
        "rank"]
    outer = telemetry.span("NightlyScreener.screen")
    inner = telemetry.span("Screener.screen")
    assert parent_of(inner, spans) is outer
    assert inner.attributes[CLSTOCK_RUNTIME_CLASS] == "NightlyScreener"
    rank = telemetry.span("rank")
    assert rank.kind is SpanKind.INTERNAL
    assert rank.parent.span_id == job.get_span_context().span_id
    code = inspect.unwrap(module.rank).__code__
    assert dict(rank.attributes) == {CODE_FUNCTION_NAME: f"{app}.rank",
                                     CODE_FILE_PATH: code.co_filename,
                                     CODE_LINE_NUMBER: code.co_firstlineno}
    assert telemetry.span("Screener.refresh").attributes[CODE_FUNCTION_NAME] == (
        f"{app}.Screener.refresh")


def test_targets_given_to_instrument(telemetry, app):
    """targets= replaces the variable (for tests and manual setups)."""
    module = importlib.import_module(app)
    with instrumented(ClStockMethodsInstrumentor(), targets=[f"{app}:rank"], **telemetry.kwargs):
        module.rank([2, 1])
    assert telemetry.names() == ["rank"]


def test_malformed_entry_is_warned_about_and_skipped(telemetry, app, monkeypatch, caplog):
    """One warning names the variable and the bad entries; the good entries still apply."""
    monkeypatch.setenv(OTEL_PYTHON_CLSTOCK_TRACE_METHODS,
                       f"{app}:rank,no colon here,{app}:two:colons")
    with caplog.at_level(logging.WARNING), \
            instrumented(ClStockMethodsInstrumentor(), **telemetry.kwargs):
        importlib.import_module(app).rank([1])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert OTEL_PYTHON_CLSTOCK_TRACE_METHODS in warnings[0]
    assert "'no colon here'" in warnings[0] and f"'{app}:two:colons'" in warnings[0]
    assert telemetry.names() == ["rank"]


def test_missing_and_inherited_targets_are_logged(telemetry, app, monkeypatch, caplog):
    """A missing class or function, or a method only inherited, is logged and skipped."""
    monkeypatch.setenv(OTEL_PYTHON_CLSTOCK_TRACE_METHODS,
                       f"{app}:Missing.screen,{app}:missing_function,"
                       f"{app}:InheritingScreener.screen,{app}:rank")
    with caplog.at_level(logging.WARNING), \
            instrumented(ClStockMethodsInstrumentor(), **telemetry.kwargs):
        module = importlib.import_module(app)
        module.InheritingScreener().screen(["7203"])
        module.rank([1])
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    value = os.environ[OTEL_PYTHON_CLSTOCK_TRACE_METHODS]
    named_by = f" ({OTEL_PYTHON_CLSTOCK_TRACE_METHODS}={value!r})"
    assert messages == [
        f"clstock-otel: {app} has no class Missing; not traced{named_by}",
        f"clstock-otel: {app} has no missing_function; not traced{named_by}",
        f"clstock-otel: {app}:InheritingScreener defines no method screen"
        f" (inherited from Screener: name that class); not traced{named_by}",
    ]
    assert telemetry.names() == ["rank"]


def test_exception_propagates_unchanged(telemetry, app):
    """A traced function's exception reaches the caller; the span records it."""
    module = importlib.import_module(app)
    with instrumented(ClStockMethodsInstrumentor(), targets=[f"{app}:rank"], **telemetry.kwargs), \
            pytest.raises(ValueError, match="nothing to rank") as raised:
        module.rank([])
    span = telemetry.span("rank")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"ValueError: {raised.value}"
    assert span.attributes[ERROR_TYPE] == "ValueError"


def test_uninstrument_restores_originals(telemetry, app):
    """Functions and methods are the original objects after uninstrument."""
    module = importlib.import_module(app)
    rank, screen = module.rank, vars(module.Screener)["screen"]
    targets = [f"{app}:rank", f"{app}:Screener.screen"]
    with instrumented(ClStockMethodsInstrumentor(), targets=targets, **telemetry.kwargs):
        assert is_traced(module.rank) and is_traced(vars(module.Screener)["screen"])
    assert module.rank is rank and vars(module.Screener)["screen"] is screen
    module.rank([1])
    assert telemetry.spans() == []


def test_double_instrument_not_recording_and_suppressed(telemetry, app):
    """One span when instrumented twice; none when suppressed; sampled out is measured."""
    module = importlib.import_module(app)
    with instrumented(ClStockMethodsInstrumentor(), targets=[f"{app}:rank"], **telemetry.kwargs):
        ClStockMethodsInstrumentor().instrument(targets=[f"{app}:rank"], **telemetry.kwargs)
        module.rank([1])
        with suppress_instrumentation():
            module.rank([2])
    assert telemetry.names() == ["rank"]
    assert telemetry.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "rank"}, 1)]

    dropped = Telemetry.create(sampler=ALWAYS_OFF)
    with instrumented(ClStockMethodsInstrumentor(), targets=[f"{app}:rank"], **dropped.kwargs):
        module.rank([1])
    assert dropped.spans() == []
    assert dropped.points(CLSTOCK_OPERATION_DURATION) == [({CLSTOCK_OPERATION_NAME: "rank"}, 1)]


def test_custom_tracer_provider(telemetry, app):
    """Spans go to the tracer provider given to instrument(), and only there."""
    module = importlib.import_module(app)
    other = Telemetry.create()
    with instrumented(ClStockMethodsInstrumentor(), targets=[f"{app}:rank"],
                      tracer_provider=other.tracer_provider):
        module.rank([1])
    assert telemetry.spans() == [] and other.names() == ["rank"]
