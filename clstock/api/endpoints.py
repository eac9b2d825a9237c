"""ClStock's public API, mounted under ``/api/v1``."""

from __future__ import annotations

import logging
from functools import lru_cache

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from config.settings import VALID_PERIODS
from data.async_stock_data import AsyncStockDataProvider
from data.stock_data import StockDataProvider, UnknownSymbolError
from models.predictor import MLStockPredictor, StockPredictor, create_predictor

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter()

MAX_SYMBOLS_PER_REQUEST = 50
SymbolPath = Path(..., min_length=1, max_length=10, pattern=r"^[0-9A-Za-z.\-]+$")
PeriodQuery = Query("1y", description="History period, as Yahoo's chart API names it")


@lru_cache(maxsize=1)
def get_data_provider() -> StockDataProvider:
    return StockDataProvider()


@lru_cache(maxsize=1)
def get_predictor() -> StockPredictor:
    return create_predictor(data_provider=get_data_provider())


@lru_cache(maxsize=1)
def get_ml_predictor() -> MLStockPredictor:
    predictor = get_predictor()
    if isinstance(predictor, MLStockPredictor):
        return predictor
    return MLStockPredictor(data_provider=get_data_provider())


@lru_cache(maxsize=1)
def get_async_provider() -> AsyncStockDataProvider:
    return AsyncStockDataProvider(get_data_provider())


class SymbolsRequest(BaseModel):
    symbols: list[str] = Field(..., min_length=1, max_length=MAX_SYMBOLS_PER_REQUEST)


class TrainRequest(BaseModel):
    symbols: list[str] | None = Field(None, min_length=1, max_length=MAX_SYMBOLS_PER_REQUEST)
    period: str = "2y"


def _require_known(symbol: str) -> str:
    """The company name of ``symbol``; 404 naming it when ClStock does not cover it."""
    try:
        return get_data_provider().company_name(symbol)
    except UnknownSymbolError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def _require_period(period: str) -> str:
    if period not in VALID_PERIODS:
        raise HTTPException(
            status_code=422,
            detail=f"Invalid period {period!r}; expected one of {', '.join(sorted(VALID_PERIODS))}",
        )
    return period


@router.get("/recommendations")
def get_recommendations(top_n: int = Query(5, ge=1, le=10)) -> dict:
    """The ``top_n`` best-scored stocks of the universe."""
    recommendations = get_predictor().get_top_recommendations(top_n)
    return {
        "count": len(recommendations),
        "recommendations": [
            {"rank": r.rank, "symbol": r.symbol, "name": r.name, "score": r.score}
            for r in recommendations
        ],
    }


@router.get("/predict/{symbol}")
def predict(symbol: str = SymbolPath) -> dict:
    """The score and expected 20-day return of one stock."""
    name = _require_known(symbol)
    prediction = get_predictor().predict(symbol)
    return {
        "symbol": symbol,
        "name": name,
        "score": prediction.score,
        "predicted_return": prediction.predicted_return,
    }


@router.get("/stock/{symbol}/data")
def stock_data(symbol: str = SymbolPath, period: str = PeriodQuery) -> dict:
    """A summary of one stock's price history."""
    name = _require_known(symbol)
    data = get_data_provider().get_stock_data(symbol, _require_period(period))
    return {"symbol": symbol, "name": name, "period": period, **_summary(data)}


@router.get("/stocks")
async def multiple_stocks(
    symbols: str = Query(..., description="Comma-separated TSE codes, e.g. 7203,6758"),
    period: str = Query("1mo"),
) -> dict:
    """Several stocks fetched concurrently; a failed fetch is reported, not fatal."""
    wanted = [s.strip() for s in symbols.split(",") if s.strip()]
    if not wanted or len(wanted) > MAX_SYMBOLS_PER_REQUEST:
        raise HTTPException(
            status_code=422,
            detail=f"symbols must list 1 to {MAX_SYMBOLS_PER_REQUEST} comma-separated codes",
        )
    for symbol in wanted:
        _require_known(symbol)
    results = await get_async_provider().get_multiple_stocks(wanted, _require_period(period))
    stocks, errors = {}, {}
    for symbol, result in results.items():
        if isinstance(result, BaseException):
            errors[symbol] = str(result)
        else:
            stocks[symbol] = _summary(result)
    return {"period": period, "stocks": stocks, "errors": errors}


@router.post("/batch/predict")
def batch_predict(request: SymbolsRequest) -> dict:
    """Scores for many symbols at once, computed on a thread pool."""
    batch = get_predictor().predict_batch(request.symbols)
    return {
        "results": [{"symbol": p.symbol, "score": p.score} for p in batch.results],
        "failed": [{"symbol": s, "error": e} for s, e in batch.failed.items()],
    }


@router.post("/train")
def train(request: TrainRequest) -> dict:
    """Train the ML predictor and report its validation metrics."""
    for symbol in request.symbols or ():
        _require_known(symbol)
    period = _require_period(request.period)
    try:
        metrics = get_ml_predictor().train(request.symbols, period)
    except ValueError as exc:  # too little history for the features
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return {
        "samples": metrics.samples,
        "features": metrics.features,
        "symbols": list(metrics.symbols),
        "validation_rmse": metrics.validation_rmse,
        "validation_samples": metrics.validation_samples,
    }


def _summary(data) -> dict:
    return {
        "rows": len(data),
        "first_date": data.index[0].date().isoformat(),
        "last_date": data.index[-1].date().isoformat(),
        "last_close": round(float(data["Close"].iloc[-1]), 2),
    }
