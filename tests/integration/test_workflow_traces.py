"""Each ClStock workflow gives ONE connected trace of the expected shape.

The whole stack runs traced: the market replay (standing in for Yahoo), the data
service and two APIs (one calling yfinance itself, one fetching through the data
service). Assertions are on the tree: span names from the root down, one trace, every
span reachable from the request's server span.

Symbols and periods differ between tests so that each one fetches cold (the providers
cache per symbol and period).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import pytest
import requests

from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from tests.integration.conftest import ancestors, otlp_env

REPLAY, DATA, API_LOCAL, API_REMOTE = (
    "clstock-market-replay", "clstock-data-service", "clstock-api-local", "clstock-api")


@pytest.fixture(scope="module")
def stack(launch, receiver):
    """Replay, data service and the two APIs, all traced into the receiver."""
    replay = launch("replay-traced", "app.market_replay:app",
                    env={**otlp_env(receiver), "OTEL_SERVICE_NAME": REPLAY})
    data = launch("data-service", "app.data_service:app", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": DATA, "CLSTOCK_YAHOO_URL": replay.url})
    local = launch("api-local", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": API_LOCAL, "CLSTOCK_YAHOO_URL": replay.url})
    remote = launch("api-remote", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": API_REMOTE,
        "CLSTOCK_DATA_SERVICE_URL": data.url})
    return {API_LOCAL: local, API_REMOTE: remote}


def run_workflow(stack, receiver, service, method, path, *, settle, expected_status=200,
                 **kwargs) -> list[ReceivedSpan]:
    """Send one request in a fresh trace; return the trace once ``settle`` holds for it
    and it is complete (every span's parent has arrived: services export separately)."""
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{caller_span}-01"}
    answer = requests.request(method, stack[service].url + path, headers=headers, timeout=60,
                              **kwargs)
    assert answer.status_code == expected_status, answer.text

    def ready(all_spans: Sequence[ReceivedSpan]) -> bool:
        trace = [s for s in all_spans if s.trace_id == trace_id]
        known = {s.span_id for s in trace} | {caller_span}
        return bool(settle(trace)) and all(s.parent_span_id in known for s in trace)

    spans = receiver.wait_for_spans(ready, timeout=20)
    return [s for s in spans if s.trace_id == trace_id]


def named(spans: Sequence[ReceivedSpan], name: str, service: str | None = None):
    return [s for s in spans if s.name == name and (service is None or s.service_name == service)]


def children(spans, parent, name=None):
    return [s for s in spans if s.parent_span_id == parent.span_id
            and (name is None or s.name == name)]


def root_of(spans, service):
    (root,) = [s for s in spans if s.kind == "SERVER" and s.service_name == service
               and s.attributes.get("http.route", "").startswith("/api/v1")]
    return root


def assert_connected(spans, root):
    """Every span of the trace descends from ``root`` (nothing orphaned, one trace)."""
    orphans = [s.name for s in spans if s is not root and root not in ancestors(s, spans)]
    assert orphans == [], f"spans not under {root.name}: {orphans}"


def descend(spans, start, *names):
    """Follow a chain of child span names from ``start``; returns the last span's list."""
    level = [start]
    for name in names:
        level = [child for parent in level for child in children(spans, parent, name)]
        assert level, f"no {name!r} under {[p.name for p in [start]]}"
    return level


def test_recommendations_local_tree(stack, receiver):
    """server -> get_top_recommendations -> calculate_score per symbol -> get_stock_data ->
    yfinance history -> curl_cffi GET."""
    spans = run_workflow(
        stack, receiver, API_LOCAL, "GET", "/api/v1/recommendations?top_n=3",
        settle=lambda s: len(named(s, "yfinance history")) == 10 and named(
            s, "GET /api/v1/recommendations"))
    root = root_of(spans, API_LOCAL)
    assert_connected(spans, root)
    (top,) = children(spans, root, "StockPredictor.get_top_recommendations")
    assert top.attributes["clstock.top_n"] == 3
    assert top.attributes["clstock.recommendation_count"] == 3
    assert top.attributes["clstock.runtime_class"] == "MomentumPredictor"
    scores = children(spans, top, "MomentumPredictor.calculate_score")
    assert len({s.attributes["clstock.symbol"] for s in scores}) == 10
    for score in scores:
        (fetch,) = children(spans, score, "StockDataProvider.get_stock_data")
        assert fetch.attributes["clstock.ticker"] == score.attributes["clstock.symbol"] + ".T"
        assert fetch.attributes["clstock.period"] == "1y"
        (history,) = children(spans, fetch, "yfinance history")
        assert history.attributes["yfinance.ticker"] == fetch.attributes["clstock.ticker"]
        gets = children(spans, history)
        assert gets and all(g.kind == "CLIENT" and g.name == "GET" for g in gets)
        assert any("/v8/finance/chart/" in g.attributes["url.full"] for g in gets)


def test_recommendations_through_data_service(stack, receiver):
    """The same workflow crossing API -> data service -> replay, in one trace."""

    def settled(s):
        # Every replay request of every history call has its server span: the
        # replay exports separately, and a history makes more than the chart request.
        histories = named(s, "yfinance history", DATA)
        gets = [g for h in histories for g in children(s, h)]
        return (len(named(s, "GET /prices/{symbol}", DATA)) == 10 and len(histories) == 10
                and gets and all(children(s, g) for g in gets)
                and named(s, "GET /api/v1/recommendations", API_REMOTE))

    spans = run_workflow(stack, receiver, API_REMOTE, "GET",
                         "/api/v1/recommendations?top_n=5", settle=settled)
    root = root_of(spans, API_REMOTE)
    assert_connected(spans, root)
    assert {s.service_name for s in spans} == {API_REMOTE, DATA, REPLAY}
    fetches = descend(spans, root, "StockPredictor.get_top_recommendations",
                      "MomentumPredictor.calculate_score", "StockDataProvider.get_stock_data")
    assert len(fetches) == 10
    for fetch in fetches:
        (client,) = [c for c in children(spans, fetch) if c.kind == "CLIENT"]
        (server,) = children(spans, client)
        assert server.service_name == DATA and server.kind == "SERVER"
        (remote_fetch,) = children(spans, server, "StockDataProvider.get_stock_data")
        (history,) = children(spans, remote_fetch, "yfinance history")
        replay_servers = [s for g in children(spans, history) for s in children(spans, g)]
        assert replay_servers and {s.service_name for s in replay_servers} == {REPLAY}


def test_batch_children_on_pool_threads(stack, receiver):
    """predict_batch's per-symbol scores, computed on a thread pool, stay its children."""
    symbols = ["7974", "4502"]
    spans = run_workflow(
        stack, receiver, API_LOCAL, "POST", "/api/v1/batch/predict", json={"symbols": symbols},
        settle=lambda s: len(named(s, "yfinance history")) == 2 and named(
            s, "POST /api/v1/batch/predict"))
    root = root_of(spans, API_LOCAL)
    assert_connected(spans, root)
    (batch,) = children(spans, root, "StockPredictor.predict_batch")
    assert batch.attributes["clstock.batch.size"] == 2
    assert batch.attributes["clstock.batch.failed"] == 0
    scores = children(spans, batch, "MomentumPredictor.calculate_score")
    assert sorted(s.attributes["clstock.symbol"] for s in scores) == sorted(symbols)
    for score in scores:
        descend(spans, score, "StockDataProvider.get_stock_data", "yfinance history")


def test_async_multi_fetch(stack, receiver):
    """get_multiple_stocks -> async get_stock_data per symbol -> executor fetch -> yfinance."""
    spans = run_workflow(
        stack, receiver, API_LOCAL, "GET", "/api/v1/stocks?symbols=7974,4502&period=6mo",
        settle=lambda s: len(named(s, "yfinance history")) == 2 and named(s, "GET /api/v1/stocks"))
    root = root_of(spans, API_LOCAL)
    assert_connected(spans, root)
    (multi,) = children(spans, root, "AsyncStockDataProvider.get_multiple_stocks")
    assert multi.attributes["clstock.symbol_count"] == 2
    per_symbol = children(spans, multi, "AsyncStockDataProvider.get_stock_data")
    assert sorted(s.attributes["clstock.symbol"] for s in per_symbol) == ["4502", "7974"]
    for span in per_symbol:
        (sync_fetch,) = children(spans, span, "StockDataProvider.get_stock_data")
        assert sync_fetch.attributes["clstock.data_points"] > 100
        descend(spans, sync_fetch, "yfinance history")


def test_train(stack, receiver):
    """train -> get_stock_data per symbol, with the training size on the span."""
    spans = run_workflow(
        stack, receiver, API_LOCAL, "POST", "/api/v1/train",
        json={"symbols": ["7974", "4502"], "period": "2y"},
        settle=lambda s: len(named(s, "yfinance history")) == 2 and named(s, "POST /api/v1/train"))
    root = root_of(spans, API_LOCAL)
    assert_connected(spans, root)
    (train,) = children(spans, root, "StockPredictor.train")
    assert train.attributes["clstock.runtime_class"] == "MLStockPredictor"
    assert train.attributes["clstock.training.samples"] > 500
    assert train.attributes["clstock.training.symbol_count"] == 2
    fetches = children(spans, train, "StockDataProvider.get_stock_data")
    assert sorted(f.attributes["clstock.symbol"] for f in fetches) == ["4502", "7974"]


def test_failing_fetch_marks_the_path_as_error(stack, receiver):
    """A delisted symbol: ERROR from the yfinance fetch up to the server span, with the
    exception event on every span the exception passed through."""
    spans = run_workflow(
        stack, receiver, API_LOCAL, "GET", "/api/v1/predict/6502", expected_status=502,
        settle=lambda s: named(s, "yfinance history") and named(s, "GET /api/v1/predict/{symbol}"))
    root = root_of(spans, API_LOCAL)
    assert_connected(spans, root)
    (history,) = named(spans, "yfinance history")
    path = [history, *ancestors(history, spans)]
    assert [s.name for s in path] == [
        "yfinance history", "StockDataProvider.get_stock_data",
        "MomentumPredictor.calculate_score", "StockPredictor.predict",
        "GET /api/v1/predict/{symbol}",
    ]
    assert all(s.status_code == "ERROR" for s in path), [(s.name, s.status_code) for s in path]
    assert root.attributes["http.response.status_code"] == 502
    for span in path[1:4]:  # the ClStock spans DataFetchError propagated through
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes["exception.type"].endswith("DataFetchError")
        assert span.attributes["error.type"].endswith("DataFetchError")
