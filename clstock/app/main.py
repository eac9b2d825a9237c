"""The ClStock API: ``cd clstock && uvicorn app.main:app``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.endpoints import router
from data.stock_data import DataFetchError, UnknownSymbolError

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logger = logging.getLogger("clstock")

app = FastAPI(
    title="ClStock API",
    description="Japanese stock recommendations",
    version="1.0.0",
)
app.include_router(router, prefix="/api/v1")


@app.exception_handler(UnknownSymbolError)
async def unknown_symbol_handler(request: Request, exc: UnknownSymbolError) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


@app.exception_handler(DataFetchError)
async def data_fetch_error_handler(request: Request, exc: DataFetchError) -> JSONResponse:
    logger.error("%s", exc)
    return JSONResponse(status_code=502, content={"detail": str(exc)})


@app.get("/health")
def health() -> dict:
    return {"status": "healthy", "service": "clstock-api"}
