"""YFinanceInstrumentor through the real yfinance code, against ClStock's market replay."""

from __future__ import annotations

import datetime
import inspect
from contextlib import nullcontext

import multitasking
import pytest
import yfinance
import yfinance.multi
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from yfinance.base import TickerBase

from clstock_otel_distro.instrumentors import yfinance as yfinance_instrumentation
from clstock_otel_distro.instrumentors._machinery.proxies import is_traced
from clstock_otel_distro.instrumentors._machinery.values import error_type
from clstock_otel_distro.instrumentors.curl_cffi import CurlCffiInstrumentor
from clstock_otel_distro.instrumentors.data_provider import ClStockDataProviderInstrumentor
from clstock_otel_distro.instrumentors.yfinance import YFinanceInstrumentor
from clstock_otel_distro.patches import yfinance_thread_context
from clstock_otel_distro.semconv import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    ERROR_TYPE,
    ERROR_TYPE_NO_DATA,
    HTTP_RESPONSE_STATUS_CODE,
    SERVER_PORT,
    URL_FULL,
    YFINANCE_DOWNLOAD_SPAN,
    YFINANCE_END,
    YFINANCE_FAILED_COUNT,
    YFINANCE_HISTORY_SPAN,
    YFINANCE_INFO_SPAN,
    YFINANCE_INTERVAL,
    YFINANCE_OPERATION_DURATION,
    YFINANCE_OPERATION_NAME,
    YFINANCE_PERIOD,
    YFINANCE_ROWS,
    YFINANCE_START,
    YFINANCE_TICKER,
    YFINANCE_TICKER_COUNT,
    YFINANCE_TICKERS,
)
from clstock_otel_distro.tools.devstack import ServiceProcess
from data.stock_data import StockDataProvider
from tests.support.otel_testing import Telemetry, instrumented, parent_of, without_code
from utils.yahoo_session import YAHOO_URL_ENV, configure_yfinance

_CRUMB = "ClStockRply"  # the replay's crumb: must never appear in a span


@pytest.fixture(scope="module")
def replay(app_dir):
    """One market replay per module; yfinance pointed at it for the module's tests."""
    with ServiceProcess("replay", "app.market_replay:app", app_dir,
                        instrumented=False) as service, pytest.MonkeyPatch.context() as env:
        env.setenv(YAHOO_URL_ENV, service.url)
        yield service


@pytest.fixture
def telemetry(replay):
    pipeline = Telemetry.create()
    yield pipeline
    pipeline.shutdown()


@pytest.fixture
def traced(telemetry):
    with instrumented(YFinanceInstrumentor(), **telemetry.kwargs), \
            instrumented(CurlCffiInstrumentor(), **telemetry.kwargs):
        yield


def _ticker(symbol: str) -> yfinance.Ticker:
    return yfinance.Ticker(symbol, session=configure_yfinance())


def _children(span, spans):
    return [s for s in spans if parent_of(s, spans) is span]


def test_history_span_and_its_http_children(telemetry, traced, replay):
    """history: ticker, period, interval and rows; CLIENT children with the crumb redacted."""
    with telemetry.tracer().start_as_current_span("request") as parent:
        frame = _ticker("7203.T").history(period="1y")

    spans = telemetry.spans()
    span = telemetry.span(YFINANCE_HISTORY_SPAN)
    code = inspect.unwrap(vars(TickerBase)["history"]).__code__
    assert span.kind is SpanKind.INTERNAL
    assert span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {
        CODE_FUNCTION_NAME: "yfinance.base.TickerBase.history",
        CODE_FILE_PATH: code.co_filename, CODE_LINE_NUMBER: code.co_firstlineno,
        YFINANCE_TICKER: "7203.T", YFINANCE_PERIOD: "1y", YFINANCE_INTERVAL: "1d",
        YFINANCE_ROWS: len(frame)}
    assert len(frame) > 200 and span.status.status_code is StatusCode.UNSET

    requests = _children(span, spans)
    assert requests and all(r.kind is SpanKind.CLIENT and r.name == "GET" for r in requests)
    chart = [r for r in requests if "/v8/finance/chart/7203.T?range=1y" in r.attributes[URL_FULL]]
    assert len(chart) == 1
    assert "crumb=REDACTED" in chart[0].attributes[URL_FULL]
    assert chart[0].attributes[HTTP_RESPONSE_STATUS_CODE] == 200
    assert chart[0].attributes[SERVER_PORT] == replay.port
    assert not any(_CRUMB in s.attributes.get(URL_FULL, "") for s in spans)


def test_history_start_and_end(telemetry, traced):
    """start/end are recorded as given (dates as ISO strings); no period then."""
    _ticker("6758.T").history(start="2025-01-06", end=datetime.date(2025, 3, 1))
    span = telemetry.span(YFINANCE_HISTORY_SPAN)
    assert without_code(span.attributes) == {
        YFINANCE_TICKER: "6758.T", YFINANCE_INTERVAL: "1d", YFINANCE_START: "2025-01-06",
        YFINANCE_END: "2025-03-01", YFINANCE_ROWS: span.attributes[YFINANCE_ROWS]}
    assert span.attributes[YFINANCE_ROWS] > 30


def test_history_default_period(telemetry, traced):
    """Without period, start or end, yfinance's default (1mo) is recorded."""
    _ticker("7203.T").history()
    assert telemetry.span(YFINANCE_HISTORY_SPAN).attributes[YFINANCE_PERIOD] == "1mo"


def test_empty_history_is_an_error(telemetry, traced):
    """A delisted ticker: yfinance returns an empty frame, the span says it failed."""
    frame = _ticker("6502.T").history(period="1y")
    assert frame.empty
    span = next(s for s in telemetry.spans(YFINANCE_HISTORY_SPAN)
                if s.attributes[YFINANCE_TICKER] == "6502.T")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description.startswith("No data returned for 6502.T")
    assert span.attributes[ERROR_TYPE] == ERROR_TYPE_NO_DATA
    assert span.attributes[YFINANCE_ROWS] == 0
    assert ({YFINANCE_OPERATION_NAME: YFINANCE_HISTORY_SPAN, ERROR_TYPE: ERROR_TYPE_NO_DATA}, 1
            ) in telemetry.points(YFINANCE_OPERATION_DURATION)


def test_exception_propagates_unchanged(telemetry, traced):
    """With yfinance's exceptions on, the very exception reaches the caller; span ERROR."""
    yfinance.config.debug.hide_exceptions = False
    try:
        with pytest.raises(Exception) as raised:  # whatever yfinance lets through
            _ticker("6502.T").history(period="1y")
    finally:
        yfinance.config.debug.hide_exceptions = True
    span = next(s for s in telemetry.spans(YFINANCE_HISTORY_SPAN)
                if s.attributes[YFINANCE_TICKER] == "6502.T")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == error_type(raised.value)
    assert span.status.description.startswith(type(raised.value).__name__)
    assert [event.name for event in span.events] == ["exception"]
    assert YFINANCE_ROWS not in span.attributes


def test_custom_tracer_provider(telemetry, replay):
    """Spans go to the tracer provider given to instrument(), and only there."""
    other = Telemetry.create()
    with instrumented(YFinanceInstrumentor(), tracer_provider=other.tracer_provider):
        _ticker("7203.T").history(period="5d")
    assert telemetry.spans() == [] and other.names() == [YFINANCE_HISTORY_SPAN]


@pytest.mark.parametrize("with_threading", [False, True], ids=["alone", "with-threading"])
def test_download_histories_are_children_across_worker_threads(
        telemetry, traced, monkeypatch, with_threading):
    """download: its per-ticker histories, run on multitasking threads, are its children."""
    attached = []
    attach = yfinance_instrumentation.attach
    for module in (yfinance_instrumentation, yfinance_thread_context):
        monkeypatch.setattr(module, "attach", lambda ctx: attached.append(ctx) or attach(ctx))
    tasks_before = len(multitasking.get_list_of_tasks())
    with instrumented(ThreadingInstrumentor()) if with_threading else nullcontext():
        data = yfinance.download(["7203.T", "6758.T"], period="1mo", threads=True,
                                 session=configure_yfinance(), progress=False)
    assert len(multitasking.get_list_of_tasks()) == tasks_before + 2  # one thread each
    assert set(data.columns.get_level_values("Ticker")) == {"7203.T", "6758.T"}

    spans = telemetry.spans()
    download = telemetry.span(YFINANCE_DOWNLOAD_SPAN)
    assert without_code(download.attributes) == {
        YFINANCE_TICKERS: ("7203.T", "6758.T"), YFINANCE_TICKER_COUNT: 2,
        YFINANCE_FAILED_COUNT: 0}
    histories = telemetry.spans(YFINANCE_HISTORY_SPAN)
    assert sorted(h.attributes[YFINANCE_TICKER] for h in histories) == ["6758.T", "7203.T"]
    assert all(parent_of(h, spans) is download for h in histories)
    # Our download wrapper attaches once (its failure counter); each worker attaches the
    # download context itself, unless the threading instrumentation already did.
    assert len(attached) == (1 if with_threading else 3)


def test_download_counts_failed_tickers(telemetry, traced):
    """A ticker without data counts in yfinance.failed_count; its history span is an ERROR."""
    yfinance.download("7203.T 6502.T", period="1mo", session=configure_yfinance(),
                      progress=False)
    spans = telemetry.spans()
    download = telemetry.span(YFINANCE_DOWNLOAD_SPAN)
    assert download.attributes[YFINANCE_TICKERS] == ("7203.T", "6502.T")
    assert download.attributes[YFINANCE_FAILED_COUNT] == 1
    failed = [h for h in telemetry.spans(YFINANCE_HISTORY_SPAN)
              if h.status.status_code is StatusCode.ERROR]
    assert [h.attributes[YFINANCE_TICKER] for h in failed] == ["6502.T"]
    assert parent_of(failed[0], spans) is download


def test_info_span(telemetry, traced):
    """Ticker.info: a 'yfinance info' span with the ticker, HTTP requests under it."""
    info = _ticker("7203.T").info
    assert info["longName"] == "Toyota Motor"
    span = telemetry.span(YFINANCE_INFO_SPAN)
    assert without_code(span.attributes) == {YFINANCE_TICKER: "7203.T"}
    assert _children(span, telemetry.spans())


def test_clstock_data_provider_to_http(telemetry, traced):
    """StockDataProvider -> yfinance history -> HTTP GET: one trace, properly nested."""
    with instrumented(ClStockDataProviderInstrumentor(), **telemetry.kwargs):
        StockDataProvider(cache_ttl=0, data_service_url="").get_stock_data("6758", "6mo")
    spans = telemetry.spans()
    provider = telemetry.span("StockDataProvider.get_stock_data")
    history = telemetry.span(YFINANCE_HISTORY_SPAN)
    assert parent_of(history, spans) is provider
    assert any("/v8/finance/chart/6758.T" in s.attributes[URL_FULL]
               for s in _children(history, spans))
    assert {s.context.trace_id for s in spans} == {provider.context.trace_id}


def test_uninstrument_restores_originals(telemetry):
    """Every patched yfinance attribute is the original object again."""
    targets = [(TickerBase, "history"), (TickerBase, "get_info"), (yfinance, "download"),
               (yfinance.multi, "download")]
    # yfinance's private worker functions: the registry's yfinance-thread-context patch.
    private = [(yfinance.multi, "_download_one"), (yfinance.multi, "_download_one_threaded")]
    originals = [vars(owner)[name] for owner, name in targets + private]
    with instrumented(YFinanceInstrumentor(), **telemetry.kwargs):
        assert all(is_traced(vars(owner)[name]) for owner, name in targets)
        assert all(vars(owner)[name] is not original
                   for (owner, name), original in zip(private, originals[len(targets):]))
    assert all(vars(owner)[name] is original
               for (owner, name), original in zip(targets + private, originals))


def test_double_instrument_makes_one_span(telemetry, traced):
    """Instrumenting twice: still one history span."""
    YFinanceInstrumentor().instrument(**telemetry.kwargs)
    _ticker("7203.T").history(period="5d")
    assert len(telemetry.spans(YFINANCE_HISTORY_SPAN)) == 1


def test_suppressed_and_not_recording(telemetry, traced):
    """Suppressed: nothing at all. Sampled out: no spans, but the duration is measured."""
    with suppress_instrumentation():
        _ticker("7203.T").history(period="5d")
    assert telemetry.spans() == []
    assert telemetry.points(YFINANCE_OPERATION_DURATION) == []

    dropped = Telemetry.create(sampler=ALWAYS_OFF)
    YFinanceInstrumentor().uninstrument()
    with instrumented(YFinanceInstrumentor(), **dropped.kwargs):
        _ticker("7203.T").history(period="5d")
    assert dropped.spans() == []
    assert dropped.points(YFINANCE_OPERATION_DURATION) == [
        ({YFINANCE_OPERATION_NAME: YFINANCE_HISTORY_SPAN}, 1)]
