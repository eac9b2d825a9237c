"""Asynchronous access to market data, for endpoints that fetch several symbols at once.

yfinance is synchronous, so each fetch runs the sync provider on an executor thread
(``loop.run_in_executor``), and several symbols are fetched concurrently with
``asyncio.gather``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import Executor

import pandas as pd

from data.stock_data import StockDataProvider

__all__ = ["AsyncStockDataProvider"]


class AsyncStockDataProvider:
    """Async facade over StockDataProvider."""

    def __init__(
        self,
        provider: StockDataProvider | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.provider = provider or StockDataProvider()
        self._executor = executor  # None: the loop's default thread pool

    async def get_stock_data(self, symbol: str, period: str = "1y") -> pd.DataFrame:
        """Fetch one symbol's history without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.provider.get_stock_data, symbol, period
        )

    async def get_multiple_stocks(
        self, symbols: Iterable[str], period: str = "1y"
    ) -> dict[str, pd.DataFrame | BaseException]:
        """Fetch several symbols concurrently; a failed symbol maps to its exception."""
        symbols = list(dict.fromkeys(symbols))
        results = await asyncio.gather(
            *(self.get_stock_data(symbol, period) for symbol in symbols),
            return_exceptions=True,
        )
        return dict(zip(symbols, results))
