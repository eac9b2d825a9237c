"""The FastAPI instrumentation's route lookup, remembered per path: same names, fewer lookups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from opentelemetry.instrumentation import fastapi as fastapi_instrumentation
from starlette.applications import Starlette
from starlette.routing import Host

from clstock_otel_distro.patches import fastapi_route_cache as _route_cache

ORIGINAL = fastapi_instrumentation._get_route_details


def _scope(app: Any, path: str, method: str = "GET", kind: str = "http",
           root_path: str = "") -> dict[str, Any]:
    return {"type": kind, "method": method, "path": path, "root_path": root_path,
            "app": app, "headers": [], "query_string": b""}


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The module's lookup counted, then cached; the paths upstream's lookup really ran for."""
    seen: list[str] = []

    def counting(scope: dict[str, Any]) -> str | None:
        seen.append(scope["path"])
        return ORIGINAL(scope)

    monkeypatch.setattr(fastapi_instrumentation, "_get_route_details", counting)
    _route_cache.patch(fastapi_instrumentation)
    yield seen
    _route_cache._apps.clear()


def _lookup(scope: dict[str, Any]) -> str | None:
    return fastapi_instrumentation._get_route_details(scope)


def _clstock_like_app() -> FastAPI:
    app = FastAPI()
    api = APIRouter(prefix="/api/v1")

    @app.get("/health")
    def health() -> dict:
        return {}

    @api.get("/predict/{symbol}")
    def predict(symbol: str) -> dict:
        return {}

    @api.post("/train")
    def train() -> dict:
        return {}

    app.include_router(api)
    app.mount("/static", Starlette())
    return app


SCOPES = [
    ("/health", "GET"), ("/api/v1/predict/7203", "GET"), ("/api/v1/predict/6758", "GET"),
    ("/api/v1/train", "POST"), ("/api/v1/train", "GET"),  # method mismatch: partial
    ("/static/app.js", "GET"), ("/nowhere", "GET"), ("/docs", "GET"), ("/health", "HEAD"),
]


def test_names_are_upstreams_own(lookups):
    """Every answer, first or remembered, is what upstream's lookup answers."""
    app = _clstock_like_app()
    for path, method in SCOPES * 2:
        assert _lookup(_scope(app, path, method)) == ORIGINAL(_scope(app, path, method)), path
    assert ORIGINAL(_scope(app, "/api/v1/predict/7203")) == "/api/v1/predict/{symbol}"


def test_each_path_is_looked_up_once(lookups):
    app = _clstock_like_app()
    for _ in range(5):
        _lookup(_scope(app, "/api/v1/predict/7203"))
        _lookup(_scope(app, "/health"))
    _lookup(_scope(app, "/health", "POST"))  # another method: another answer
    _lookup(_scope(app, "/health", kind="websocket"))
    _lookup(_scope(app, "/health", root_path="/prefix"))
    assert lookups == ["/api/v1/predict/7203", "/health", "/health", "/health", "/health"]


def test_apps_are_remembered_apart(lookups):
    one, other = FastAPI(), FastAPI()
    one.get("/a")(lambda: None)
    other.get("/b")(lambda: None)
    assert _lookup(_scope(one, "/a")) == "/a"
    assert _lookup(_scope(other, "/a")) is None


def test_a_route_added_later_is_found(lookups):
    app = _clstock_like_app()
    assert _lookup(_scope(app, "/late")) is None
    app.get("/late")(lambda: None)
    assert _lookup(_scope(app, "/late")) == "/late"


def test_a_route_added_to_an_included_router_later_is_found(lookups):
    app = FastAPI()
    api = APIRouter(prefix="/api")
    app.include_router(api)
    assert _lookup(_scope(app, "/api/late")) is None
    api.get("/late")(lambda: None)
    assert _lookup(_scope(app, "/api/late")) == ORIGINAL(_scope(app, "/api/late"))


def test_routers_and_routes_added_deeper_later_are_found(lookups):
    """A router included in an included router after requests were served, then a
    route added to it: each found as upstream finds it (every router's version watched)."""
    app = FastAPI()
    api = APIRouter(prefix="/api")
    app.include_router(api)
    v2 = APIRouter(prefix="/v2")
    v2.get("/first")(lambda: None)
    assert _lookup(_scope(app, "/api/v2/first")) is None
    api.include_router(v2)
    assert _lookup(_scope(app, "/api/v2/first")) == "/api/v2/first"
    assert _lookup(_scope(app, "/api/v2/late")) is None
    v2.get("/late")(lambda: None)
    assert _lookup(_scope(app, "/api/v2/late")) == "/api/v2/late"
    assert ORIGINAL(_scope(app, "/api/v2/late")) == "/api/v2/late"
    assert lookups.count("/api/v2/late") == 2  # looked up again once the route came


def test_host_routes_are_always_looked_up(lookups):
    """A Host route matches on the Host header, which the cache key leaves out."""
    app = _clstock_like_app()
    app.router.routes.append(Host("api.example.com", app=Starlette()))
    for _ in range(3):
        assert _lookup(_scope(app, "/health")) == "/health"
    assert lookups == ["/health"] * 3


def test_route_classes_of_the_app_are_always_looked_up(lookups):
    class TenantRoute(APIRoute):
        """May match on anything (a header, a tenant...)."""

    app = FastAPI()
    router = APIRouter(route_class=TenantRoute)
    router.get("/t")(lambda: None)
    app.include_router(router)
    for _ in range(3):
        assert _lookup(_scope(app, "/t")) == "/t"
    assert lookups == ["/t"] * 3


def test_paths_remembered_are_bounded(lookups, monkeypatch):
    monkeypatch.setattr(_route_cache, "MAX_PATHS", 3)
    app = _clstock_like_app()
    for code in range(10):
        path = f"/api/v1/predict/{code}"
        assert _lookup(_scope(app, path)) == "/api/v1/predict/{symbol}"
    assert len(_route_cache._apps[app].names) <= 3
    assert len(lookups) == 10


def test_a_scope_it_does_not_understand_goes_to_upstream(lookups):
    """No app in the scope: upstream's own behaviour (here, its KeyError), unchanged."""
    with pytest.raises(KeyError):
        _lookup({"type": "http", "path": "/health"})
    assert lookups == ["/health"]


@pytest.mark.parametrize(("value", "cached"), [(None, True), ("false", False)])
def test_under_opentelemetry_instrument(run_instrumented, value, cached):
    """The distro caches by default; OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE=false does not."""
    code = ("import fastapi\n"
            "from opentelemetry.instrumentation import fastapi as f\n"
            "print(type(f._get_route_details).__name__)")
    env = {"OTEL_TRACES_EXPORTER": "none"}
    if value is not None:
        env["OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE"] = value
    done = run_instrumented(code, env)
    assert done.returncode == 0, done.stderr
    assert (done.stdout.split()[0] == "FunctionWrapper") is cached, done.stdout
