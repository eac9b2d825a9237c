"""Traces ClStock's market-data providers, sync and async, and their subclasses.

INTERNAL spans named after the defining class, durations in the
``clstock.operation.duration`` histogram:

- ``StockDataProvider.get_stock_data`` / ``AsyncStockDataProvider.get_stock_data``:
  ``clstock.symbol``, ``clstock.period`` (default applied), ``clstock.ticker`` (the
  Yahoo ticker: ``7203.T`` for a TSE code), ``clstock.data_points``; an empty frame adds
  the event ``No data returned``.
- ``AsyncStockDataProvider.get_multiple_stocks``: ``clstock.symbol_count`` (sized
  arguments only; an iterator is never consumed to count it).

The classes come from ``OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS`` (``module:Class,...``,
default ``data.stock_data:StockDataProvider,data.async_stock_data:AsyncStockDataProvider``).
Usage::

    ClStockDataProviderInstrumentor().instrument(tracer_provider=provider)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from clstock_otel_distro.environment_variables import (
    DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS,
    OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS,
)
from clstock_otel_distro.instrumentors._machinery import (
    APPLICATION_CODE,
    CallExtractor,
    PatchingInstrumentor,
    Target,
    TraceSpec,
    arg,
    result,
    sized_len,
    trace_classes,
)
from clstock_otel_distro.semconv import (
    CLSTOCK_DATA_POINTS,
    CLSTOCK_PERIOD,
    CLSTOCK_SYMBOL,
    CLSTOCK_SYMBOL_COUNT,
    CLSTOCK_TICKER,
    EVENT_NO_DATA_RETURNED,
)

__all__ = ["ClStockDataProviderInstrumentor"]

_instruments = APPLICATION_CODE


def _ticker(target: Target) -> CallExtractor:
    symbol_of = target.arg("symbol").get

    def extract(instance: Any, args: tuple, kwargs: dict) -> Any:
        # What StockDataProvider.get_ticker computes, read from the instance's data
        # (its own table, or the wrapped provider's for the async facade) instead of
        # calling another method of the application.
        symbol = symbol_of(args, kwargs)
        codes = getattr(instance, "jp_stock_codes", None)
        if codes is None:
            codes = getattr(getattr(instance, "provider", None), "jp_stock_codes", None)
        if isinstance(symbol, str) and codes is not None and symbol in codes:
            return f"{symbol}.T"
        return symbol

    return extract


# Which result types are pandas DataFrames, by type (pandas is never imported here).
_DATAFRAME_TYPES: dict[type, bool] = {}


def _is_dataframe(value: Any) -> bool:
    kind = value.__class__
    known = _DATAFRAME_TYPES.get(kind)
    if known is None:
        # pandas 3 presents its public classes as module "pandas", pandas 2 as
        # "pandas.core.frame".
        known = any(base.__name__ == "DataFrame" and (base.__module__ == "pandas"
                                                      or base.__module__.startswith("pandas."))
                    for base in kind.__mro__)
        if len(_DATAFRAME_TYPES) < 64:
            _DATAFRAME_TYPES[kind] = known
    return known


def _rows(frame: Any) -> int | None:
    """The rows of the returned frame: ``len(frame)``, read from a DataFrame's index
    directly (what ``DataFrame.__len__`` does, one call less)."""
    if _is_dataframe(frame):
        return len(frame.index)
    return sized_len(frame)


def _is_empty(frame: Any) -> bool:
    # DataFrame.empty is "an axis has length 0", computed by pandas through several
    # generic calls per request: the same test on the two axes here.
    if _is_dataframe(frame):
        return len(frame.index) == 0 or len(frame.columns) == 0
    empty = getattr(frame, "empty", None)
    return empty is True or (empty is None and sized_len(frame) == 0)


_METHODS: dict[str, TraceSpec] = {
    "get_stock_data": TraceSpec(
        attributes={
            CLSTOCK_SYMBOL: arg("symbol"),
            CLSTOCK_PERIOD: arg("period"),
            CLSTOCK_TICKER: _ticker,
        },
        result_attributes={CLSTOCK_DATA_POINTS: result(_rows)},
        result_events={EVENT_NO_DATA_RETURNED: result(_is_empty)}),
    "get_multiple_stocks": TraceSpec(
        attributes={CLSTOCK_SYMBOL_COUNT: arg("symbols", sized_len)}),
}


class ClStockDataProviderInstrumentor(PatchingInstrumentor):
    """Traces ClStock's sync and async market-data providers."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _install(self, **kwargs: Any) -> list[Any]:
        return trace_classes(__name__, kwargs, _METHODS,
                             OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS,
                             DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS)
