"""ClStock-like classes for the per-call benchmark: the real signatures, cheap bodies.

``StockPredictor.calculate_score(symbol)`` and the async
``AsyncStockDataProvider.get_stock_data(symbol, period="1y")`` have the signatures of
ClStock's own (so the instrumentors bind the same argument slots and run the same
extractors), but return at once: what is timed is the tracing around the call, not
pandas. Each class also has the hand-written equivalent the tracing plan describes
(``start_as_current_span`` with the same attributes), given a tracer and the static
attributes by the benchmark.
"""

from __future__ import annotations

from time import perf_counter as _perf_counter
from typing import Any, ClassVar

from opentelemetry.trace import SpanKind

from clstock_otel_distro.semconv import (
    CLSTOCK_DATA_POINTS,
    CLSTOCK_OPERATION_NAME,
    CLSTOCK_PERIOD,
    CLSTOCK_SCORE,
    CLSTOCK_SYMBOL,
    CLSTOCK_TICKER,
    EVENT_NO_DATA_RETURNED,
)

__all__ = ["AsyncStockDataProvider", "StockPredictor"]

_PRICES = [2840.0, 2855.5, 2861.0, 2849.5, 2870.0]
_CODES = {"7203": "Toyota Motor", "6758": "Sony Group"}


class StockPredictor:
    """The shape of ClStock's StockPredictor, with a score computed in no time."""

    # Set by the benchmark: a tracer, the span's static (code.*) attributes, and the
    # duration histogram for the hand-written variant that also records a metric.
    tracer: Any = None
    static_attributes: ClassVar[dict[str, Any]] = {}
    histogram: Any = None

    def calculate_score(self, symbol: str) -> float:
        return 61.25

    def calculate_score_manual(self, symbol: str) -> float:
        """The tracing plan's manual span, with the attributes our wrapper records."""
        with self.tracer.start_as_current_span(
            "StockPredictor.calculate_score", kind=SpanKind.INTERNAL,
            attributes=self.static_attributes,
        ) as span:
            span.set_attribute(CLSTOCK_SYMBOL, symbol)
            score = 61.25
            span.set_attribute(CLSTOCK_SCORE, score)
            return score

    def calculate_score_manual_metric(self, symbol: str) -> float:
        """The manual span plus the duration histogram our wrapper also records."""
        started = _perf_counter()
        with self.tracer.start_as_current_span(
            "StockPredictor.calculate_score", kind=SpanKind.INTERNAL,
            attributes=self.static_attributes,
        ) as span:
            span.set_attribute(CLSTOCK_SYMBOL, symbol)
            score = 61.25
            span.set_attribute(CLSTOCK_SCORE, score)
        self.histogram.record(_perf_counter() - started, _OPERATION)
        return score


class AsyncStockDataProvider:
    """The shape of ClStock's AsyncStockDataProvider, answering from memory."""

    tracer: Any = None
    static_attributes: ClassVar[dict[str, Any]] = {}
    histogram: Any = None
    jp_stock_codes = _CODES

    async def get_stock_data(self, symbol: str, period: str = "1y") -> list[float]:
        return _PRICES

    async def get_stock_data_manual(self, symbol: str, period: str = "1y") -> list[float]:
        """The tracing plan's manual async span, with the attributes our wrapper records."""
        with self.tracer.start_as_current_span(
            "AsyncStockDataProvider.get_stock_data", kind=SpanKind.INTERNAL,
            attributes=self.static_attributes,
        ) as span:
            span.set_attribute(CLSTOCK_SYMBOL, symbol)
            span.set_attribute(CLSTOCK_PERIOD, period)
            span.set_attribute(CLSTOCK_TICKER, f"{symbol}.T" if symbol in _CODES else symbol)
            data = _PRICES
            span.set_attribute(CLSTOCK_DATA_POINTS, len(data))
            if not data:
                span.add_event(EVENT_NO_DATA_RETURNED)
            return data

    async def get_stock_data_manual_metric(self, symbol: str, period: str = "1y") -> list[float]:
        """The manual async span plus the duration histogram."""
        started = _perf_counter()
        with self.tracer.start_as_current_span(
            "AsyncStockDataProvider.get_stock_data", kind=SpanKind.INTERNAL,
            attributes=self.static_attributes,
        ) as span:
            span.set_attribute(CLSTOCK_SYMBOL, symbol)
            span.set_attribute(CLSTOCK_PERIOD, period)
            span.set_attribute(CLSTOCK_TICKER, f"{symbol}.T" if symbol in _CODES else symbol)
            data = _PRICES
            span.set_attribute(CLSTOCK_DATA_POINTS, len(data))
            if not data:
                span.add_event(EVENT_NO_DATA_RETURNED)
        self.histogram.record(_perf_counter() - started, _FETCH_OPERATION)
        return data


_OPERATION = {CLSTOCK_OPERATION_NAME: "StockPredictor.calculate_score"}
_FETCH_OPERATION = {CLSTOCK_OPERATION_NAME: "AsyncStockDataProvider.get_stock_data"}
