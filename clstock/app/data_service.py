"""The ClStock data service: ``cd clstock && uvicorn app.data_service:app``.

It owns the Yahoo access; the API asks it for prices over HTTP when
``CLSTOCK_DATA_SERVICE_URL`` points here.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from fastapi import FastAPI, HTTPException, Query

from config.settings import VALID_PERIODS
from data.stock_data import DataFetchError, StockDataProvider, UnknownSymbolError, rows_from_frame

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = FastAPI(title="ClStock data service", version="1.0.0")


@lru_cache(maxsize=1)
def get_provider() -> StockDataProvider:
    # Always the local yfinance provider: this service is where data comes from.
    return StockDataProvider(data_service_url="")


@app.get("/prices/{symbol}")
def prices(symbol: str, period: str = Query("1y")) -> dict:
    """Daily OHLCV rows of one TSE symbol."""
    provider = get_provider()
    if period not in VALID_PERIODS:
        raise HTTPException(status_code=422, detail=f"Invalid period {period!r}")
    try:
        provider.company_name(symbol)
        data = provider.get_stock_data(symbol, period)
    except UnknownSymbolError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except DataFetchError as exc:
        raise HTTPException(status_code=502, detail=exc.reason) from None
    return {
        "symbol": symbol,
        "ticker": provider.get_ticker(symbol),
        "period": period,
        "rows": rows_from_frame(data),
    }


@app.get("/health")
def health() -> dict:
    return {"status": "healthy", "service": "clstock-data-service"}
