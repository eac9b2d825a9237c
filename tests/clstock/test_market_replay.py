"""The offline Yahoo replay, driven through the real yfinance code."""

from __future__ import annotations

import csv
import importlib.util
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import pytest
import uvicorn
import yfinance as yf
from curl_cffi import requests as curl_requests

from app import market_replay
from utils import yahoo_session
from utils.yahoo_session import YahooReplaySession, configure_yfinance

APP_DIR = Path(__file__).resolve().parents[2] / "clstock"
SAMPLE_DIR = APP_DIR / "data" / "sample_prices"
LAST_DAY = date(2026, 10, 30)
# Reserved for test_history_requests: no other test here touches it, so yfinance's
# per-process timezone cache has not seen it yet.
FRESH_TICKER = "4502.T"


class _RequestLog:
    """ASGI middleware recording the path and query of every HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, dict[str, list[str]]]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["path"], parse_qs(scope["query_string"].decode())))
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def replay() -> Iterator[tuple[str, _RequestLog]]:
    """The replay app served by uvicorn on a free 127.0.0.1 port, in a thread."""
    log = _RequestLog(market_replay.app)
    # proto=IPPROTO_TCP, or asyncio leaves Nagle on for accepted connections and each
    # response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(log, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "replay did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", log
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def session(replay: tuple[str, _RequestLog], monkeypatch: pytest.MonkeyPatch
            ) -> curl_requests.Session:
    """The session ClStock passes to yfinance when CLSTOCK_YAHOO_URL points at the replay."""
    monkeypatch.setenv("CLSTOCK_YAHOO_URL", replay[0])
    result = configure_yfinance()
    assert isinstance(result, YahooReplaySession)
    return result


def _csv(ticker: str) -> pd.DataFrame:
    return pd.read_csv(SAMPLE_DIR / f"{ticker}.csv", index_col="Date", parse_dates=True)


def _dates(frame: pd.DataFrame) -> list[date]:
    return [ts.date() for ts in frame.index]


def test_history_1y_matches_csv(session: curl_requests.Session) -> None:
    """history(period="1y") returns the year before the last bar, with the CSV's prices."""
    frame = yf.Ticker("7203.T", session=session).history(period="1y")
    expected = _csv("7203.T").loc["2025-10-31":]
    assert len(frame) == len(expected) == 261
    assert _dates(frame)[0] == date(2025, 10, 31)
    assert _dates(frame)[-1] == LAST_DAY
    assert str(frame.index.tz) == "Asia/Tokyo"
    assert list(frame["Close"]) == list(expected["Close"])
    assert list(frame["Volume"]) == list(expected["Volume"])


def test_history_1mo(session: curl_requests.Session) -> None:
    """history(period="1mo") returns the weekdays after 2026-09-30."""
    frame = yf.Ticker("6758.T", session=session).history(period="1mo")
    assert len(frame) == 22
    assert _dates(frame)[0] == date(2026, 10, 1)
    assert _dates(frame)[-1] == LAST_DAY
    assert frame["Open"].iloc[0] == _csv("6758.T").loc["2026-10-01", "Open"]


@pytest.mark.parametrize(
    ("period", "first_day", "rows"),
    [("1d", LAST_DAY, 1), ("5d", date(2026, 10, 26), 5), ("ytd", date(2026, 1, 1), 217),
     ("2y", date(2024, 10, 31), 522), ("max", date(2024, 1, 1), 740)],
)
def test_history_ranges(session: curl_requests.Session, period: str, first_day: date,
                        rows: int) -> None:
    """Every range is measured back from the last bar of the replay."""
    frame = yf.Ticker("9984.T", session=session).history(period=period)
    assert (_dates(frame)[0], _dates(frame)[-1], len(frame)) == (first_day, LAST_DAY, rows)


def test_history_start_end(session: curl_requests.Session) -> None:
    """history(start, end) returns the bars from start to the day before end."""
    frame = yf.Ticker("6861.T", session=session).history(start="2026-01-05", end="2026-02-02")
    expected = _csv("6861.T").loc["2026-01-05":"2026-01-30"]
    assert _dates(frame) == [ts.date() for ts in expected.index]
    for column in ("Open", "High", "Low", "Close", "Volume"):
        assert list(frame[column]) == list(expected[column])


@pytest.mark.parametrize("ticker", ["6502.T", "NOSUCH.T"])
def test_unknown_ticker_gives_empty_frame(
    session: curl_requests.Session, caplog: pytest.LogCaptureFixture, ticker: str
) -> None:
    """Toshiba and unknown symbols give an empty frame and yfinance's delisted error."""
    with caplog.at_level(logging.ERROR, logger="yfinance"):
        frame = yf.Ticker(ticker, session=session).history(period="1mo")
    assert frame.empty
    assert f"{ticker}: No data found, symbol may be delisted" in caplog.text


def test_unknown_chart_is_yahoos_delisted_answer(session: curl_requests.Session) -> None:
    """The chart of an unknown symbol is Yahoo's 404 answer for a delisted symbol."""
    response = session.get("https://query2.finance.yahoo.com/v8/finance/chart/6502.T",
                           params={"range": "1mo", "interval": "1d"})
    assert response.status_code == 404
    assert response.json() == {"chart": {"result": None, "error": {
        "code": "Not Found", "description": "No data found, symbol may be delisted"}}}


def test_info(session: curl_requests.Session) -> None:
    """Ticker.info carries the company's name, currency, exchange and latest price."""
    info = yf.Ticker("7974.T", session=session).info
    last_close = _csv("7974.T")["Close"].iloc[-1]
    assert info["longName"] == "Nintendo"
    assert info["currency"] == "JPY"
    assert info["exchange"] == "JPX"
    assert info["exchangeTimezoneName"] == "Asia/Tokyo"
    assert info["sector"] == "Communication Services"
    assert info["regularMarketPrice"] == last_close
    assert info["marketCap"] == round(1_160_000_000 * last_close)


def test_download_two_tickers(session: curl_requests.Session) -> None:
    """yf.download of two tickers returns both, aligned on the same 22 days."""
    frame = yf.download(["7203.T", "6758.T"], period="1mo", session=session, progress=False)
    assert len(frame) == 22
    for ticker in ("7203.T", "6758.T"):
        assert list(frame["Close", ticker]) == list(_csv(ticker).loc["2026-10-01":, "Close"])


def test_history_requests(session: curl_requests.Session, replay: tuple[str, _RequestLog]
                          ) -> None:
    """A new ticker costs a timezone probe and the chart; cookie and crumb are reused."""
    yf.Ticker("7203.T", session=session).history(period="5d")  # cookie and crumb, if new
    # Another test module of this process may have fetched it (and cached its timezone).
    fresh = yf.cache.get_tz_cache().lookup(FRESH_TICKER) is None
    log = replay[1]
    log.requests.clear()
    yf.Ticker(FRESH_TICKER, session=session).history(period="6mo")
    yf.Ticker(FRESH_TICKER, session=session).history(period="6mo")
    chart = f"/v8/finance/chart/{FRESH_TICKER}"
    assert [(path, query.get("range")) for path, query in log.requests] == [
        *([(chart, ["1d"])] if fresh else []),  # the timezone, then cached on disk
        (chart, ["6mo"]),
        (chart, ["6mo"]),
    ]
    assert all(query["crumb"] == ["ClStockRply"] for _, query in log.requests)
    assert yahoo_session._cache_dir is not None
    assert (Path(yahoo_session._cache_dir) / "tkr-tz.db").exists()


def test_concurrent_history(session: curl_requests.Session) -> None:
    """Threads sharing the session each get their own ticker's prices."""
    tickers = [p.name.removesuffix(".csv") for p in sorted(SAMPLE_DIR.glob("*.T.csv"))]
    tickers = [t for t in tickers if t != FRESH_TICKER] * 2

    def last_close(ticker: str) -> float:
        history = yf.Ticker(ticker, session=configure_yfinance()).history(period="3mo")
        return history["Close"].iloc[-1]

    with ThreadPoolExecutor(max_workers=8) as pool:
        closes = list(pool.map(last_close, tickers))
    assert closes == [_csv(t)["Close"].iloc[-1] for t in tickers]


def test_latency(session: curl_requests.Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """MARKET_REPLAY_LATENCY_MS delays data responses by at least that long."""
    monkeypatch.setenv("MARKET_REPLAY_LATENCY_MS", "150")
    started = time.monotonic()
    response = session.get("https://query1.finance.yahoo.com/v7/finance/quote",
                           params={"symbols": "8306.T"})
    assert time.monotonic() - started >= 0.14
    assert response.json()["quoteResponse"]["result"][0]["longName"] == (
        "Mitsubishi UFJ Financial Group")


def test_health(session: curl_requests.Session, replay: tuple[str, _RequestLog]) -> None:
    """GET /health answers ok."""
    assert session.get(f"{replay[0]}/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://query1.finance.yahoo.com/v8/finance/chart/7203.T?range=1y",
         "http://replay:8001/v8/finance/chart/7203.T?range=1y"),
        ("https://fc.yahoo.com", "http://replay:8001/"),
        ("https://guce.yahoo.com/consent?x=1", "http://replay:8001/consent?x=1"),
        ("https://YAHOO.com/v1/test/getcrumb", "http://replay:8001/v1/test/getcrumb"),
        ("https://example.com/yahoo.com", "https://example.com/yahoo.com"),
        ("https://notyahoo.com/a", "https://notyahoo.com/a"),
        ("https://yahoo.com.example.org/a", "https://yahoo.com.example.org/a"),
        ("http://127.0.0.1:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"),
    ],
)
def test_rewrite_url(url: str, expected: str) -> None:
    """Only yahoo.com and its subdomains are sent to the replay, path and query kept."""
    assert YahooReplaySession("http://replay:8001").rewrite_url(url) == expected


def test_rewrite_url_keeps_base_path() -> None:
    """A base URL with a path prefixes Yahoo's path."""
    session = YahooReplaySession("https://gateway.internal/yahoo/")
    assert session.rewrite_url("https://query2.finance.yahoo.com/v1/test/getcrumb") == (
        "https://gateway.internal/yahoo/v1/test/getcrumb")


def test_request_goes_through_curl_cffi_session_request(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """get() reaches curl_cffi's Session.request (what a tracer wraps) with the new URL."""
    calls = []

    def fake_request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((method, url, kwargs.get("params")))
        return curl_requests.Response()

    monkeypatch.setattr(curl_requests.Session, "request", fake_request)
    session = YahooReplaySession("http://replay:8001")
    session.get("https://query2.finance.yahoo.com/v8/finance/chart/7203.T", params={"a": 1})
    session.post("https://example.com/x")
    assert calls == [("GET", "http://replay:8001/v8/finance/chart/7203.T", {"a": 1}),
                     ("POST", "https://example.com/x", None)]


def test_configure_yfinance_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CLSTOCK_YAHOO_URL yfinance keeps its own session (None)."""
    monkeypatch.delenv("CLSTOCK_YAHOO_URL", raising=False)
    assert configure_yfinance() is None
    monkeypatch.setenv("CLSTOCK_YAHOO_URL", "  ")
    assert configure_yfinance() is None


def test_configure_yfinance_shares_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """All threads get the same session for a base URL; a bad URL is refused."""
    monkeypatch.setenv("CLSTOCK_YAHOO_URL", "http://127.0.0.1:9/")
    with ThreadPoolExecutor(max_workers=8) as pool:
        sessions = list(pool.map(lambda _: configure_yfinance(), range(32)))
    assert all(s is sessions[0] for s in sessions)
    assert sessions[0].replay_url == "http://127.0.0.1:9/"
    monkeypatch.setenv("CLSTOCK_YAHOO_URL", "replay:8001")
    with pytest.raises(ValueError, match="replay:8001"):
        configure_yfinance()


def test_generator_reproduces_committed_csvs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """Regenerating the sample prices gives the committed files, byte for byte."""
    path = APP_DIR / "scripts" / "generate_sample_prices.py"
    spec = importlib.util.spec_from_file_location("generate_sample_prices", path)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    # Registered while it runs: dataclasses resolve annotations through sys.modules.
    monkeypatch.setitem(sys.modules, spec.name, generator)
    spec.loader.exec_module(generator)
    written = generator.generate(tmp_path)
    committed = sorted(p.name for p in SAMPLE_DIR.glob("*.csv"))
    assert sorted(p.name for p in written) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), name


def test_sample_prices_are_plausible() -> None:
    """Weekday bars from 2024 to 2026-10-30, consistent OHLC, distinct momentum, small."""
    momentum = set()
    for path in SAMPLE_DIR.glob("*.T.csv"):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        days = [date.fromisoformat(r["Date"]) for r in rows]
        assert days[0] == date(2024, 1, 1) and days[-1] == LAST_DAY
        assert all(d.weekday() < 5 for d in days)
        for r in rows:
            o, h, lo, c = (float(r[k]) for k in ("Open", "High", "Low", "Close"))
            assert lo <= min(o, c) and h >= max(o, c) and lo > 0
            assert r["Adj Close"] == r["Close"] and int(r["Volume"]) > 0
        momentum.add(round(float(rows[-1]["Close"]) / float(rows[-64]["Close"]), 3))
    assert len(momentum) == 12
    assert sum(p.stat().st_size for p in SAMPLE_DIR.iterdir()) < 1_000_000
