"""Traces yfinance: price history, bulk downloads and ticker info.

Spans (INTERNAL), durations in the ``yfinance.operation.duration`` histogram:

- ``yfinance history`` (``TickerBase.history``): ``yfinance.ticker``, ``.period``
  (yfinance's default applied), ``.interval``, ``.start`` / ``.end`` when given,
  ``.rows``. yfinance hides most failures (delisted symbol, HTTP error) behind an
  empty frame and a log line: an empty frame makes the span an ERROR
  (``error.type=no_data``, description "No data returned for 6502.T: <yfinance's
  reason>").
- ``yfinance download`` (``yfinance.download`` and ``yfinance.multi.download``):
  ``yfinance.tickers``, ``.ticker_count``, ``.failed_count`` (tickers whose history
  raised or came back empty; yfinance 1.x keeps its own failure list per call, no
  longer in ``yfinance.shared._ERRORS``). The per-ticker
  ``yfinance history`` spans, run on yfinance's ``multitasking`` worker threads, are
  its children, with or without ``opentelemetry-instrumentation-threading``.
- ``yfinance info`` (``TickerBase.get_info``, hence ``Ticker.info``): ``yfinance.ticker``.

The HTTP requests underneath are traced by the curl_cffi instrumentation. Usage::

    YFinanceInstrumentor().instrument(tracer_provider=provider)
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Collection
from typing import Any

from opentelemetry.context import attach, create_key, detach, get_value, set_value

from clstock_otel_distro.instrumentors._machinery import (
    ArgumentSlot,
    AttributePatch,
    CallExtractor,
    InstrumentationTelemetry,
    PatchingInstrumentor,
    RegisteredPatch,
    ResultExtractor,
    Target,
    TraceSpec,
    Wrapper,
    WrapperFactory,
    arg,
    install_all,
    result,
    sized_len,
    traced,
)
from clstock_otel_distro.patches import yfinance_thread_context
from clstock_otel_distro.semconv import (
    ERROR_TYPE_NO_DATA,
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

__all__ = ["YFinanceInstrumentor"]

_instruments = ("yfinance >= 0.2.40",)

# yfinance's ``period`` default is this sentinel string: "1mo" unless start/end given.
_PERIOD_DEFAULT = "1mo if start & end None"


# -- history / info ----------------------------------------------------------------------


def _history_slot(target: Target, name: str) -> ArgumentSlot:
    # TickerBase.history(self, *args, **kwargs) forwards to PriceHistory.history, whose
    # signature says where each argument sits. yfinance.base has imported it by the
    # time its import hook builds this; an older layout falls back to keywords only.
    try:
        from yfinance.scrapers.history import PriceHistory

        return target.arg(name, signature_of=PriceHistory.history)
    except (ImportError, AttributeError):
        return target.arg(name)


def _date(value: Any) -> Any:
    """A start/end value as an attribute: dates as ISO strings, strings and epochs as is."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def _history_arg(name: str, transform: Any = None) -> Any:
    def build(target: Target) -> CallExtractor:
        get = _history_slot(target, name).get
        if transform is None:
            return lambda instance, args, kwargs: get(args, kwargs)
        return lambda instance, args, kwargs: transform(get(args, kwargs))

    return build


def _history_period(target: Target) -> CallExtractor:
    period, start, end = (_history_slot(target, n).get for n in ("period", "start", "end"))

    def extract(instance: Any, args: tuple, kwargs: dict) -> Any:
        value = period(args, kwargs)
        if value is None or value == _PERIOD_DEFAULT:
            # What yfinance then uses: 1mo, or no period at all when start/end are given.
            given = start(args, kwargs) is not None or end(args, kwargs) is not None
            return None if given else "1mo"
        return value

    return extract


def _ticker(target: Target) -> CallExtractor:
    return lambda instance, args, kwargs: getattr(instance, "ticker", None)


def _no_data(target: Target) -> ResultExtractor:
    def describe(frame: Any, instance: Any, args: tuple, kwargs: dict) -> str | None:
        if frame is not None and getattr(frame, "empty", True) is not True:
            return None
        ticker = getattr(instance, "ticker", "?")
        # yfinance keeps the reason it logged (private; absent in some versions).
        reason = getattr(getattr(instance, "_price_history", None), "_last_error", None)
        return f"No data returned for {ticker}" + (f": {reason}" if reason else "")

    return describe


class _DownloadFailures:
    """Counts the tickers of one download call that came back without data."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self._lock:
            self.count += 1


_FAILURES_KEY = create_key("clstock-otel-yfinance-download-failures")


def _count_failed_ticker() -> None:
    # A history call failed (exception, or empty frame): if it ran for a download,
    # that download's counter is in the context (the workers run in the download's
    # context, see _run_in_download_context). Counted here, inside the worker's
    # history call, because yfinance's download returns as soon as every ticker has
    # stored its frame, which the worker does right after history returns.
    failures = get_value(_FAILURES_KEY)
    if failures is not None:
        failures.add()


def _failed_count(value: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    failures = get_value(_FAILURES_KEY)
    return failures.count if failures is not None else None


_HISTORY = TraceSpec(
    name=YFINANCE_HISTORY_SPAN,
    attributes={
        YFINANCE_TICKER: _ticker,
        YFINANCE_PERIOD: _history_period,
        YFINANCE_INTERVAL: _history_arg("interval"),
        YFINANCE_START: _history_arg("start", _date),
        YFINANCE_END: _history_arg("end", _date),
    },
    result_attributes={YFINANCE_ROWS: result(sized_len)},
    result_error=_no_data,
    result_error_type=ERROR_TYPE_NO_DATA,
    on_failure=_count_failed_ticker,
)
_INFO = TraceSpec(name=YFINANCE_INFO_SPAN, attributes={YFINANCE_TICKER: _ticker})


# -- download ---------------------------------------------------------------------------


def _normalise_tickers(tickers: Any) -> list[str] | None:
    """The tickers as yfinance reads them: a list, or a space/comma separated string."""
    if isinstance(tickers, str):
        tickers = tickers.replace(",", " ").split()
    if not isinstance(tickers, (list, tuple, set)):
        return None
    unique = dict.fromkeys(str(t).upper() for t in tickers)
    return list(unique)


_DOWNLOAD = TraceSpec(
    name=YFINANCE_DOWNLOAD_SPAN,
    attributes={
        YFINANCE_TICKERS: arg("tickers", _normalise_tickers),
        YFINANCE_TICKER_COUNT: arg("tickers", lambda t: sized_len(_normalise_tickers(t))),
    },
    result_attributes={YFINANCE_FAILED_COUNT: lambda target: _failed_count},
)


def _download(telemetry: InstrumentationTelemetry) -> WrapperFactory:
    traced_download = traced(telemetry, _DOWNLOAD)

    def build(target: Target) -> Wrapper:
        trace_call = traced_download(target)

        def download(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
            # A failure counter for this call, in the context its per-ticker history
            # calls run in (the workers inherit it, see _run_in_download_context):
            # they count their failures there, the download span reads the total.
            token = attach(set_value(_FAILURES_KEY, _DownloadFailures()))
            try:
                return trace_call(wrapped, instance, args, kwargs)
            finally:
                detach(token)

        return download

    return build


class YFinanceInstrumentor(PatchingInstrumentor):
    """Traces yfinance history, download and info calls."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _install(self, **kwargs: Any) -> list[Any]:
        telemetry = InstrumentationTelemetry(
            __name__, kwargs, histogram=YFINANCE_OPERATION_DURATION,
            description="Duration of yfinance operations.", operation_key=YFINANCE_OPERATION_NAME)
        history, info, download = (
            traced(telemetry, _HISTORY), traced(telemetry, _INFO), _download(telemetry))
        return install_all([
            AttributePatch("yfinance.base", "TickerBase.history", history, group=telemetry),
            AttributePatch("yfinance.base", "TickerBase.get_info", info, group=telemetry),
            AttributePatch("yfinance.multi", "download", download, group=telemetry),
            AttributePatch("yfinance", "download", download, group=telemetry),
            # The download's context carried to yfinance's worker threads (private
            # functions of yfinance: a registry entry, verified per version).
            RegisteredPatch(yfinance_thread_context.PATCH),
        ])
