"""ClStockDataProviderInstrumentor on ClStock's sync and async providers (yfinance faked)."""

from __future__ import annotations

import asyncio
import inspect
import types

import numpy as np
import pandas as pd
import pytest
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import data.stock_data as stock_data
from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS
from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
from clstock_otel_distro.instrumentors.data_provider import ClStockDataProviderInstrumentor
from clstock_otel_distro.semconv import (
    CLSTOCK_DATA_POINTS,
    CLSTOCK_OPERATION_DURATION,
    CLSTOCK_OPERATION_NAME,
    CLSTOCK_PERIOD,
    CLSTOCK_RUNTIME_CLASS,
    CLSTOCK_SYMBOL,
    CLSTOCK_SYMBOL_COUNT,
    CLSTOCK_TICKER,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    ERROR_TYPE,
    EVENT_NO_DATA_RETURNED,
)
from data.async_stock_data import AsyncStockDataProvider
from data.stock_data import DataFetchError, StockDataProvider
from tests.support.otel_testing import Telemetry, instrumented, parent_of, without_code

_ROWS = 250


def _frame(rows: int = _ROWS) -> pd.DataFrame:
    close = np.linspace(1000.0, 1200.0, rows)
    return pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close,
                         "Volume": 1e6}, index=pd.bdate_range("2024-01-01", periods=rows))


class _FakeTicker:
    """yfinance's Ticker as StockDataProvider uses it: empty history for Toshiba."""

    def __init__(self, ticker, session=None):
        self.ticker = ticker

    def history(self, period="1mo"):
        return _frame(0) if self.ticker == "6502.T" else _frame()


@pytest.fixture
def telemetry(monkeypatch):
    monkeypatch.delenv(OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS, raising=False)
    monkeypatch.setattr(stock_data, "yf", types.SimpleNamespace(Ticker=_FakeTicker))
    pipeline = Telemetry.create()
    yield pipeline
    pipeline.shutdown()


@pytest.fixture
def traced(telemetry):
    with instrumented(ClStockDataProviderInstrumentor(), **telemetry.kwargs) as instrumentor:
        yield instrumentor


def _provider() -> StockDataProvider:
    return StockDataProvider(cache_ttl=0, data_service_url="")


def test_get_stock_data_span(telemetry, traced):
    """get_stock_data: symbol, default period, Yahoo ticker and row count."""
    with telemetry.tracer().start_as_current_span("request") as parent:
        _provider().get_stock_data("7203")

    span = telemetry.span("StockDataProvider.get_stock_data")
    code = inspect.unwrap(vars(StockDataProvider)["get_stock_data"]).__code__
    assert span.kind is SpanKind.INTERNAL
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {
        CODE_FUNCTION_NAME: "data.stock_data.StockDataProvider.get_stock_data",
        CODE_FILE_PATH: code.co_filename, CODE_LINE_NUMBER: code.co_firstlineno,
        CLSTOCK_SYMBOL: "7203", CLSTOCK_PERIOD: "1y", CLSTOCK_TICKER: "7203.T",
        CLSTOCK_DATA_POINTS: _ROWS}
    assert span.events == ()


@pytest.mark.parametrize(("args", "kwargs"), [(("6758", "6mo"), {}),
                                              (("6758",), {"period": "6mo"}),
                                              ((), {"symbol": "6758", "period": "6mo"})])
def test_arguments_found_however_passed(telemetry, traced, args, kwargs):
    """Symbol and period are read whether passed by position or by keyword."""
    _provider().get_stock_data(*args, **kwargs)
    span = telemetry.span("StockDataProvider.get_stock_data")
    assert span.attributes[CLSTOCK_SYMBOL] == "6758"
    assert span.attributes[CLSTOCK_PERIOD] == "6mo"


def test_ticker_of_a_symbol_clstock_does_not_know(telemetry, traced):
    """A symbol outside jp_stock_codes is its own ticker (no .T)."""
    _provider().get_stock_data("AAPL")
    assert telemetry.span("StockDataProvider.get_stock_data").attributes[CLSTOCK_TICKER] == "AAPL"


def test_empty_history_error_propagates(telemetry, traced):
    """Toshiba's empty history: ClStock's DataFetchError reaches the caller, span ERROR."""
    with pytest.raises(DataFetchError) as raised:
        _provider().get_stock_data("6502")
    span = telemetry.span("StockDataProvider.get_stock_data")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"DataFetchError: {raised.value}"
    assert span.attributes[ERROR_TYPE] == "data.stock_data.DataFetchError"
    assert CLSTOCK_DATA_POINTS not in span.attributes


def test_empty_frame_returned_adds_the_no_data_event(telemetry, traced):
    """A provider that returns an empty frame (upstream layout) gets 'No data returned'."""

    class PassThroughProvider(StockDataProvider):
        def get_stock_data(self, symbol, period="1y"):
            return _frame(0)

    PassThroughProvider(cache_ttl=0, data_service_url="").get_stock_data("6502", "5y")
    span = telemetry.span("PassThroughProvider.get_stock_data")
    assert [event.name for event in span.events] == [EVENT_NO_DATA_RETURNED]
    assert without_code(span.attributes) == {
        CLSTOCK_SYMBOL: "6502", CLSTOCK_PERIOD: "5y", CLSTOCK_TICKER: "6502.T",
        CLSTOCK_DATA_POINTS: 0}
    assert span.status.status_code is StatusCode.UNSET


def test_async_provider_spans_nest_across_the_executor(telemetry, traced):
    """Async get_stock_data -> executor thread -> sync get_stock_data (with threading)."""
    with instrumented(ThreadingInstrumentor()):
        frame = asyncio.run(AsyncStockDataProvider(_provider()).get_stock_data("7203", "3mo"))
    assert len(frame) == _ROWS

    spans = telemetry.spans()
    outer = telemetry.span("AsyncStockDataProvider.get_stock_data")
    inner = telemetry.span("StockDataProvider.get_stock_data")
    assert parent_of(inner, spans) is outer
    assert without_code(outer.attributes) == {
        CLSTOCK_SYMBOL: "7203", CLSTOCK_PERIOD: "3mo", CLSTOCK_TICKER: "7203.T",
        CLSTOCK_DATA_POINTS: _ROWS}


def test_get_multiple_stocks_counts_sized_arguments(telemetry, traced):
    """get_multiple_stocks: symbol_count for a list, none for a generator; children nest."""
    provider = AsyncStockDataProvider(_provider())
    results = asyncio.run(provider.get_multiple_stocks(["7203", "6758", "6502"]))
    assert isinstance(results["6502"], DataFetchError)
    asyncio.run(provider.get_multiple_stocks(s for s in ["7203"]))

    spans = telemetry.spans()
    first, second = telemetry.spans("AsyncStockDataProvider.get_multiple_stocks")
    assert without_code(first.attributes) == {CLSTOCK_SYMBOL_COUNT: 3}
    assert without_code(second.attributes) == {}
    children = [s for s in telemetry.spans("AsyncStockDataProvider.get_stock_data")
                if parent_of(s, spans) is first]
    assert sorted(s.attributes[CLSTOCK_SYMBOL] for s in children) == ["6502", "6758", "7203"]
    assert [s.status.status_code for s in children].count(StatusCode.ERROR) == 1


def test_async_exception_propagates_unchanged(telemetry, traced):
    """An invalid period's ValueError crosses the executor and the await unchanged."""
    with pytest.raises(ValueError, match="Invalid period: 7y"):
        asyncio.run(AsyncStockDataProvider(_provider()).get_stock_data("7203", "7y"))
    span = telemetry.span("AsyncStockDataProvider.get_stock_data")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == "ValueError"


def test_uninstrument_restores_originals(telemetry):
    """Both providers get their original methods back."""
    originals = {(cls, name): vars(cls)[name]
                 for cls, name in [(StockDataProvider, "get_stock_data"),
                                   (AsyncStockDataProvider, "get_stock_data"),
                                   (AsyncStockDataProvider, "get_multiple_stocks")]}
    with instrumented(ClStockDataProviderInstrumentor(), **telemetry.kwargs):
        assert all(is_traced(vars(cls)[name]) for cls, name in originals)
    assert all(vars(cls)[name] is original for (cls, name), original in originals.items())
    _provider().get_stock_data("7203")
    assert telemetry.spans() == []


def test_double_instrument_makes_one_span(telemetry, traced):
    """Instrumenting twice still gives one span per call."""
    ClStockDataProviderInstrumentor().instrument(**telemetry.kwargs)
    _provider().get_stock_data("7203")
    assert telemetry.names() == ["StockDataProvider.get_stock_data"]


def test_not_recording_and_suppressed(telemetry, traced):
    """No spans when sampled out or suppressed; the data still comes back."""
    with suppress_instrumentation():
        assert len(_provider().get_stock_data("7203")) == _ROWS
    assert telemetry.spans() == []
    dropped = Telemetry.create(sampler=ALWAYS_OFF)
    ClStockDataProviderInstrumentor().uninstrument()
    with instrumented(ClStockDataProviderInstrumentor(), **dropped.kwargs):
        assert len(_provider().get_stock_data("7203")) == _ROWS
    assert dropped.spans() == []
    assert dropped.points(CLSTOCK_OPERATION_DURATION) == [
        ({CLSTOCK_OPERATION_NAME: "StockDataProvider.get_stock_data"}, 1)]


def test_custom_tracer_provider(telemetry):
    """Spans go to the tracer provider given to instrument(), and only there."""
    other = Telemetry.create()
    with instrumented(ClStockDataProviderInstrumentor(), tracer_provider=other.tracer_provider):
        _provider().get_stock_data("7203")
    assert telemetry.spans() == [] and other.names() == ["StockDataProvider.get_stock_data"]


def test_runtime_class_of_a_subclass_instance(telemetry, traced):
    """A subclass that only inherits get_stock_data: base span, runtime class attribute."""

    class CachedProvider(StockDataProvider):
        pass

    CachedProvider(cache_ttl=0, data_service_url="").get_stock_data("7203")
    span = telemetry.span("StockDataProvider.get_stock_data")
    assert span.attributes[CLSTOCK_RUNTIME_CLASS] == "CachedProvider"


def test_metrics_recorded(telemetry, traced):
    """clstock.operation.duration per operation, error.type for the failed fetch."""
    provider = _provider()
    provider.get_stock_data("7203")
    with pytest.raises(DataFetchError):
        provider.get_stock_data("6502")
    assert sorted(telemetry.points(CLSTOCK_OPERATION_DURATION), key=lambda p: len(p[0])) == [
        ({CLSTOCK_OPERATION_NAME: "StockDataProvider.get_stock_data"}, 1),
        ({CLSTOCK_OPERATION_NAME: "StockDataProvider.get_stock_data",
          ERROR_TYPE: "data.stock_data.DataFetchError"}, 1),
    ]


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"Close": [1.0, 2.0]}), pd.DataFrame(), pd.DataFrame(index=[1, 2]),
    pd.DataFrame(columns=["Close"]), pd.Series([1.0]), pd.Series([], dtype=float), [], [1],
    None, iter([1])])
def test_rows_and_emptiness_are_pandas_own(frame):
    """The DataFrame shortcut answers what len() and .empty answer."""
    from clstock_otel_distro.instrumentors import data_provider

    expected_rows = None if frame is None or isinstance(frame, type(iter([]))) else len(frame)
    assert data_provider._rows(frame) == expected_rows
    if hasattr(frame, "empty"):
        assert data_provider._is_empty(frame) is bool(frame.empty)
    # The shortcut is taken for frames (and their subclasses), whatever module name
    # this pandas gives DataFrame: nothing else.
    assert data_provider._is_dataframe(frame) is isinstance(frame, pd.DataFrame)


def test_a_dataframe_subclass_takes_the_shortcut():
    from clstock_otel_distro.instrumentors import data_provider

    class Prices(pd.DataFrame):
        pass

    assert data_provider._is_dataframe(Prices({"Close": [1.0]}))
