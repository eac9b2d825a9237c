"""ClStock's endpoints, served by uvicorn, fetching replayed market data through yfinance.

Each test runs in both provider modes: the API calling yfinance itself, and the API
fetching through the data service over HTTP. In the second mode the API process has
no ``CLSTOCK_YAHOO_URL``, so any direct Yahoo access would fail: a success proves the
data came through the data service.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import requests

from clstock_otel_distro.tools.devstack import ServiceProcess
from tests.conftest import APP_DIR

DEFAULT_SYMBOLS = {"7203", "6758", "9984", "6861", "8306", "9432", "4063", "6098", "8035",
                   "9983"}


@pytest.fixture(scope="module")
def replay():
    """The Yahoo-compatible market replay service."""
    with ServiceProcess("replay", "app.market_replay:app", APP_DIR, instrumented=False) as svc:
        yield svc


@pytest.fixture(scope="module", params=["local", "data_service"])
def api(request, replay):
    """The ClStock API in one of its two provider modes."""
    services = []
    try:
        if request.param == "local":
            env = {"CLSTOCK_YAHOO_URL": replay.url}
        else:
            data_service = ServiceProcess(
                "data-service", "app.data_service:app", APP_DIR, instrumented=False,
                env={"CLSTOCK_YAHOO_URL": replay.url},
            ).start()
            services.append(data_service)
            env = {"CLSTOCK_DATA_SERVICE_URL": data_service.url, "CLSTOCK_YAHOO_URL": ""}
        services.append(
            ServiceProcess("api", "app.main:app", APP_DIR, instrumented=False, env=env).start()
        )
        yield services[-1]
    finally:
        for service in reversed(services):
            service.stop()


def _get(api, path, **params):
    return requests.get(api.url + path, params=params, timeout=30)


def _post(api, path, **kwargs):
    return requests.post(api.url + path, timeout=60, **kwargs)


def _csv_last_close(code: str) -> float:
    frame = pd.read_csv(APP_DIR / "data" / "sample_prices" / f"{code}.T.csv")
    return round(float(frame["Close"].iloc[-1]), 2)


def test_health(api):
    """/health answers 200."""
    answer = _get(api, "/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "healthy"


def test_recommendations_are_ranked(api):
    """/recommendations ranks top_n symbols of the universe by descending score."""
    answer = _get(api, "/api/v1/recommendations", top_n=5)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    recs = body["recommendations"]
    assert body["count"] == 5
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
    assert {r["symbol"] for r in recs} <= DEFAULT_SYMBOLS
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 100 for s in scores)
    assert len(set(scores)) > 1, "synthetic prices should give different scores"
    assert all(r["name"] for r in recs)


@pytest.mark.parametrize("top_n", ["0", "11", "abc", "-3"])
def test_recommendations_reject_bad_top_n(api, top_n):
    """top_n outside 1..10 or not a number is a 422 naming the parameter."""
    answer = _get(api, "/api/v1/recommendations", top_n=top_n)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "top_n"]


def test_predict_one_symbol(api):
    """/predict/{symbol} gives the score and expected return of a known stock."""
    answer = _get(api, "/api/v1/predict/7203")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["symbol"] == "7203"
    assert body["name"] == "Toyota Motor"
    assert 0 <= body["score"] <= 100
    assert math.isfinite(body["predicted_return"])


def test_predict_unknown_symbol_is_404(api):
    """An unknown symbol is a 404 that names it."""
    answer = _get(api, "/api/v1/predict/9999")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "Unknown symbol: 9999"}


def test_predict_without_market_data_is_502(api):
    """A known but delisted symbol (Toshiba) is a 502 with the reason."""
    answer = _get(api, "/api/v1/predict/6502")
    assert answer.status_code == 502
    assert answer.json() == {"detail": "Market data unavailable for 6502: no data returned"}


def test_stock_data_summary(api):
    """/stock/{symbol}/data summarises one year of replayed daily bars."""
    answer = _get(api, "/api/v1/stock/6758/data", period="1y")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert 240 <= body["rows"] <= 265
    assert body["last_date"] == "2026-10-30"
    assert body["first_date"].startswith("2025-1")
    assert body["last_close"] == _csv_last_close("6758")


def test_stock_data_rejects_bad_period(api):
    """An unknown period is a 422 that lists the valid ones."""
    answer = _get(api, "/api/v1/stock/7203/data", period="7y")
    assert answer.status_code == 422
    assert "Invalid period '7y'" in answer.json()["detail"]


def test_multiple_stocks_concurrently(api):
    """/stocks fetches several symbols; a symbol without data is reported, not fatal."""
    answer = _get(api, "/api/v1/stocks", symbols="7203,6758,6502", period="1mo")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["stocks"]) == {"7203", "6758"}
    assert all(15 <= s["rows"] <= 24 for s in body["stocks"].values())
    assert body["errors"] == {"6502": "Market data unavailable for 6502: no data returned"}


@pytest.mark.parametrize(("symbols", "status", "needle"), [
    ("", 422, "symbols must list"),
    (",,", 422, "symbols must list"),
    ("7203,ZZZZ", 404, "Unknown symbol: ZZZZ"),
])
def test_multiple_stocks_bad_input(api, symbols, status, needle):
    """/stocks rejects an empty list (422) and unknown symbols (404 naming them)."""
    answer = _get(api, "/api/v1/stocks", symbols=symbols)
    assert answer.status_code == status
    assert needle in answer.json()["detail"]


def test_batch_predict_reports_failures(api):
    """A batch scores what it can; unknown and data-less symbols are listed as failed."""
    answer = _post(api, "/api/v1/batch/predict",
                   json={"symbols": ["7203", "6758", "9984", "6502", "NOPE"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {r["symbol"] for r in body["results"]} == {"7203", "6758", "9984"}
    failed = {f["symbol"]: f["error"] for f in body["failed"]}
    assert failed == {
        "6502": "Market data unavailable for 6502: no data returned",
        "NOPE": "Unknown symbol: NOPE",
    }


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, "json_invalid"),
    ({"json": {"symbols": []}}, "too_short"),
    ({"json": {"tickers": ["7203"]}}, "missing"),
])
def test_batch_predict_bad_body_is_422(api, kwargs, needle):
    """Malformed JSON, an empty list or a missing field is a 422 saying which."""
    answer = _post(api, "/api/v1/batch/predict", **kwargs)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == needle


def test_train_returns_metrics(api):
    """/train fits the ML model on two years of data and reports its validation error."""
    answer = _post(api, "/api/v1/train", json={"symbols": ["7203", "6758"], "period": "2y"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["symbols"] == ["7203", "6758"]
    assert body["features"] == 8
    assert body["samples"] > 500
    assert body["validation_samples"] > 100
    assert 0 < body["validation_rmse"] < 1


def test_train_with_too_little_history_is_422(api):
    """Training on one month cannot build 60-day features: a 422 saying so."""
    answer = _post(api, "/api/v1/train", json={"symbols": ["7203"], "period": "1mo"})
    assert answer.status_code == 422
    assert "Not enough history" in answer.json()["detail"]


def test_train_unknown_symbol_is_404(api):
    """Training on an unknown symbol is a 404 naming it."""
    answer = _post(api, "/api/v1/train", json={"symbols": ["7203", "0000"]})
    assert answer.status_code == 404
    assert answer.json()["detail"] == "Unknown symbol: 0000"
