"""Market data for Japanese stocks: yfinance, or the ClStock data service.

``StockDataProvider.get_stock_data`` returns a daily OHLCV ``DataFrame``. It asks
Yahoo Finance through yfinance by default; when ``CLSTOCK_DATA_SERVICE_URL`` is set it
asks the ClStock data service instead (``app/data_service.py``), which owns the Yahoo
access. Results are kept in a small in-memory TTL cache.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pandas as pd
import yfinance as yf

from config.settings import VALID_PERIODS, get_settings
from utils.network_manager import NetworkError, NetworkManager
from utils.yahoo_session import configure_yfinance

__all__ = ["DataFetchError", "StockDataProvider", "UnknownSymbolError", "jp_stock_codes"]

logger = logging.getLogger(__name__)

# TSE codes ClStock knows, with company names. Toshiba was delisted in December 2023:
# it stays known (old portfolios reference it) but Yahoo has no data for it any more.
jp_stock_codes: dict[str, str] = {
    "7203": "Toyota Motor",
    "6758": "Sony Group",
    "9984": "SoftBank Group",
    "6861": "Keyence",
    "8306": "Mitsubishi UFJ Financial Group",
    "9432": "Nippon Telegraph and Telephone",
    "4063": "Shin-Etsu Chemical",
    "6098": "Recruit Holdings",
    "8035": "Tokyo Electron",
    "9983": "Fast Retailing",
    "7974": "Nintendo",
    "4502": "Takeda Pharmaceutical",
    "6502": "Toshiba",
}

PRICE_COLUMNS = ["Open", "High", "Low", "Close", "Volume"]


class UnknownSymbolError(LookupError):
    """The symbol is not one ClStock covers."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"Unknown symbol: {symbol}")
        self.symbol = symbol


class DataFetchError(RuntimeError):
    """Market data for a symbol could not be obtained."""

    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"Market data unavailable for {symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason


class _TTLCache:
    """A small thread-safe cache whose entries expire after ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, value = entry
            if time.monotonic() - stored_at > self._ttl:
                del self._entries[key]
                return None
            return value

    def put(self, key: Any, value: Any) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class StockDataProvider:
    """Fetches daily price history for TSE symbols."""

    jp_stock_codes = jp_stock_codes

    def __init__(
        self,
        cache_ttl: float | None = None,
        data_service_url: str | None = None,
    ) -> None:
        settings = get_settings()
        self._cache = _TTLCache(settings.cache_ttl_seconds if cache_ttl is None else cache_ttl)
        url = data_service_url if data_service_url is not None else settings.data_service_url
        self._data_service = NetworkManager(url) if url else None

    def get_stock_data(self, symbol: str, period: str = "1y") -> pd.DataFrame:
        """Daily OHLCV history of ``symbol`` over ``period``; raises DataFetchError if empty."""
        if period not in VALID_PERIODS:
            raise ValueError(f"Invalid period: {period}")
        cached = self._cache.get((symbol, period))
        if cached is not None:
            return cached

        ticker = self.get_ticker(symbol)
        logger.info("Fetching data for %s (period: %s)", symbol, period)
        if self._data_service is not None:
            data = self._fetch_from_data_service(symbol, period)
        else:
            data = yf.Ticker(ticker, session=configure_yfinance()).history(period=period)
        if data is None or data.empty:
            logger.warning("No data returned for %s (%s)", symbol, ticker)
            raise DataFetchError(symbol, "no data returned")
        self._cache.put((symbol, period), data)
        return data

    def get_ticker(self, symbol: str) -> str:
        """The Yahoo ticker for a symbol: TSE codes take the ``.T`` suffix."""
        return f"{symbol}.T" if symbol in self.jp_stock_codes else symbol

    def company_name(self, symbol: str) -> str:
        """The company name of a known symbol; raises UnknownSymbolError otherwise."""
        try:
            return self.jp_stock_codes[symbol]
        except KeyError:
            raise UnknownSymbolError(symbol) from None

    def clear_cache(self) -> None:
        """Forget every cached history."""
        self._cache.clear()

    def _fetch_from_data_service(self, symbol: str, period: str) -> pd.DataFrame:
        assert self._data_service is not None
        try:
            payload = self._data_service.get_json(f"/prices/{symbol}", params={"period": period})
        except NetworkError as exc:
            raise DataFetchError(symbol, exc.reason) from exc
        return frame_from_rows(payload.get("rows", []))


def frame_from_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rebuild a price frame from the data service's JSON rows."""
    if not rows:
        return pd.DataFrame(columns=PRICE_COLUMNS)
    frame = pd.DataFrame(rows)
    frame.index = pd.to_datetime(frame.pop("date"))
    frame.index.name = "Date"
    return frame.rename(columns=str.capitalize)[PRICE_COLUMNS]


def rows_from_frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The JSON rows the data service sends for a price frame."""
    prices = frame[PRICE_COLUMNS]
    return [
        {
            "date": timestamp.isoformat(),
            "open": float(open_),
            "high": float(high),
            "low": float(low),
            "close": float(close),
            "volume": int(volume),
        }
        for timestamp, open_, high, low, close, volume in prices.itertuples(name=None)
    ]
