"""FastAPI's own telemetry skipped where it stands down: the same spans, metrics, log
records, responses and exceptions as FastAPI's own ``__call__``.

Each story is a sequence of requests served through a FastAPI app (with its native
telemetry on, into in-memory providers), once with FastAPI's ``__call__`` and once
with the patch, each into fresh providers; everything but timestamps, ids and
durations must be the same.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request, WebSocket, applications
from fastapi.telemetry import get_telemetry_data
from fastapi.telemetry._api import _REQUEST_TELEMETRY_KEY
from fastapi.telemetry._asgi import NativeTelemetry, _legacy_otel
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from clstock_otel_distro.patches import fastapi_native_telemetry as native_bypass
from tests.distro.test_asgi_server_path import _Ids, _metric_view, _scope, _span_view
from tests.support.asgi_snippets import HEALTH_REQUEST
from tests.support.otel_testing import Telemetry

ORIGINAL_CALL = vars(applications.FastAPI)["__call__"]
NATIVE_CODES = {NativeTelemetry.__call__.__code__, _legacy_otel.__code__,
                NativeTelemetry.enabled.__code__}
NATIVE_NAMES = {code.co_qualname for code in NATIVE_CODES}

Step = Callable[[FastAPI], Any]


def _app(**settings: Any) -> FastAPI:
    app = FastAPI(**settings)

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> dict:
        raise ValueError("boom")

    @app.get("/teapot")
    def teapot() -> dict:
        raise HTTPException(status_code=418, detail="short and stout")

    @app.get("/excluded")
    def excluded() -> dict:
        return {}

    @app.get("/probe")
    def probe(request: Request) -> dict:
        # What FastAPI's telemetry leaves for the request to see.
        return {"scope_key": "fastapi.telemetry" in request.scope,
                "scope_value": repr(request.scope.get("fastapi.telemetry"))[:20],
                "data": get_telemetry_data() is not None,
                "context": repr(otel_context.get_value(_REQUEST_TELEMETRY_KEY))[:20],
                "root_path": request.scope.get("root_path")}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    return app


async def _serve(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = ([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
                if scope["type"] == "websocket"
                else [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append({**message, "headers": list(message.get("headers", []))})

    await app(scope, receive, send)
    return sent


REQUESTS = {
    "ok": _scope("/items/42"),
    "validation-error": _scope("/items/forty-two"),
    "not-found": _scope("/nowhere"),
    "raises": _scope("/boom"),
    "http-exception": _scope("/teapot"),
    "contrib-excluded": _scope("/excluded"),
    "probe": _scope("/probe"),
    "websocket": _scope("/ws", type="websocket", scheme="ws"),
}


def request(name: str) -> Step:
    def step(app: FastAPI) -> Any:
        try:
            return ("sent", asyncio.run(_serve(app, dict(REQUESTS[name]))))
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))

    step.__name__ = name
    return step


EVERY_REQUEST = [request(name) for name in REQUESTS]


@contextmanager
def _native_code_watch() -> Iterator[list[Any]]:
    """The FastAPI telemetry functions (enabled, _legacy_otel, NativeTelemetry.__call__)
    that ran on this thread (where FastAPI's __call__ runs) inside the block."""
    ran: list[Any] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in NATIVE_CODES:
            ran.append(frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        yield ran
    finally:
        sys.setprofile(None)


def _story(steps: list[Step], *, patched: bool, contrib: bool = True,
           settings: dict[str, Any] | None = None, app_settings: dict[str, Any] | None = None,
           ) -> dict[str, Any]:
    """Serve ``steps`` through a fresh app; what they produced and which native code ran."""
    telemetry = Telemetry.create()
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    undo = native_bypass.patch(applications) if patched else None
    random.seed(12)  # the sums' exemplar reservoirs draw from it
    native_ran = []
    try:
        app = _app(telemetry={**telemetry.kwargs, "logger_provider": logger_provider,
                              **(settings or {})}, **(app_settings or {}))
        if contrib:
            FastAPIInstrumentor.instrument_app(app, excluded_urls="/excluded",
                                               exclude_spans=["receive", "send"],
                                               **telemetry.kwargs)
        outcomes = []
        for step in steps:
            with _native_code_watch() as ran:
                outcomes.append((step.__name__, step(app)))
            native_ran.append((step.__name__, sorted(set(ran))))
        if getattr(app, "_is_instrumented_by_opentelemetry", False):
            FastAPIInstrumentor.uninstrument_app(app)
    finally:
        if undo is not None:
            undo()
        telemetry.shutdown()
        logger_provider.shutdown()
    assert vars(applications.FastAPI)["__call__"] is ORIGINAL_CALL
    spans = list(telemetry.exporter.get_finished_spans())
    ids = _Ids(spans)
    return {
        "outcomes": [ids.text(repr(outcome)) for outcome in outcomes],
        "spans": [_span_view(span, ids) for span in spans],
        "metrics": _metric_view(telemetry, ids),
        "logs": sorted(ids.text(repr((
            record.log_record.event_name, record.log_record.body,
            record.log_record.severity_text, dict(record.log_record.attributes or {}),
            record.instrumentation_scope.name))) for record in logs.get_finished_logs()),
        "native_ran": native_ran,
        "verdict": getattr(app, native_bypass._VERDICT, None),
    }


def _compare(steps: list[Step], **story: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    upstream = _story(steps, patched=False, **story)
    patched = _story(steps, patched=True, **story)
    for key in ("outcomes", "spans", "metrics", "logs"):
        assert patched[key] == upstream[key], key
    return upstream, patched


def _scopes(result: dict[str, Any]) -> set[str]:
    return {span["scope"] for span in result["spans"] if span["kind"].name == "SERVER"}


def test_with_the_contrib_middleware_the_native_steps_are_skipped():
    """Every kind of request (ok, 422, 404, 500, HTTPException, excluded by the contrib
    instrumentation, websocket): FastAPI's results, without FastAPI's per-request checks."""
    upstream, patched = _compare(EVERY_REQUEST)
    assert _scopes(upstream) == {"opentelemetry.instrumentation.fastapi"}
    outcomes = dict(zip(REQUESTS, upstream["outcomes"]))
    assert "raised" in outcomes["raises"] and "ValueError" in outcomes["raises"]
    assert "'status': 404" in outcomes["not-found"] and "'status': 418" in outcomes[
        "http-exception"]
    assert '"scope_key":false' in outcomes["probe"] and '"data":false' in outcomes["probe"]
    assert not any("/excluded" in span["name"] for span in upstream["spans"])
    assert upstream["logs"] == []  # FastAPI stands down: no log records either
    # Upstream's checks ran for each request; with the patch, the first request's (it
    # builds the stack), the second's judgement of the stack, then none.
    assert all(ran for _, ran in upstream["native_ran"])
    assert patched["native_ran"][0][1] == sorted(NATIVE_NAMES)
    assert patched["native_ran"][1][1] == ["_legacy_otel"]
    assert all(ran == [] for _, ran in patched["native_ran"][2:])
    assert patched["verdict"].steps_aside is True


def test_without_the_contrib_middleware_fastapis_own_spans_and_logs_stay():
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi: FastAPI's native spans, metrics and
    log records, exactly, with the patch."""
    upstream, patched = _compare(EVERY_REQUEST, contrib=False)
    assert _scopes(upstream) == {"fastapi"}
    assert any("http.server.request.exception" in line for line in upstream["logs"])
    assert any("fastapi.validation.failed" in line for line in upstream["logs"])
    assert any(name == "http.server.request.duration" for _, name, *_ in upstream["metrics"])
    assert '"scope_key":true' in dict(zip(REQUESTS, upstream["outcomes"]))["probe"]
    assert all(ran for _, ran in patched["native_ran"])
    assert patched["verdict"].steps_aside is False


def test_requests_excluded_by_fastapis_settings_keep_fastapis_bookkeeping():
    """An ``exclude`` in FastAPI's telemetry settings: the excluded request still gets
    ``scope["fastapi.telemetry"] = None`` and its context value, as without the patch."""

    def exclude(scope: Any) -> bool:
        return scope["path"] == "/probe"

    upstream, patched = _compare(EVERY_REQUEST, settings={"exclude": exclude})
    probe = dict(zip(REQUESTS, upstream["outcomes"]))["probe"]
    assert '"scope_key":true' in probe and '"scope_value":"None"' in probe
    assert all(ran for _, ran in patched["native_ran"])
    assert patched["verdict"].steps_aside is False


@pytest.mark.filterwarnings("ignore:The `root_path` parameter is deprecated")
def test_an_app_with_a_root_path():
    """FastAPI's first step, the app's root path into the scope, is kept."""
    upstream, patched = _compare([request("probe")] * 3, app_settings={"root_path": "/api"})
    assert '"root_path":"/api"' in upstream["outcomes"][-1]
    assert patched["native_ran"][-1][1] == []


def _rebuilt(app: FastAPI) -> str:
    FastAPIInstrumentor.uninstrument_app(app)  # rebuilds the stack without the middleware
    return "uninstrumented"


def _instrumented_again(app: FastAPI) -> str:
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"],
                                       tracer_provider=app._telemetry["tracer_provider"],
                                       meter_provider=app._telemetry["meter_provider"])
    app.middleware_stack = None  # built again by the next request, with the middleware
    return "instrumented"


def _unlinked(app: FastAPI) -> str:
    """The contrib middleware taken out of the built chain, without a rebuild."""
    app.middleware_stack.app = app.middleware_stack.app.app
    return "unlinked"


def _excluding(app: FastAPI) -> str:
    app._telemetry["exclude"] = lambda scope: scope["path"] == "/probe"
    return "excluding"


def test_a_rebuilt_stack_is_judged_again():
    """Uninstrumented (stack rebuilt): FastAPI's own spans again; instrumented again:
    skipped again; same results as FastAPI's own __call__ all along."""
    steps = [request("ok"), request("ok"), _rebuilt, request("ok"), request("raises"),
             _instrumented_again, request("ok"), request("ok"), request("probe")]
    upstream, patched = _compare(steps)
    scopes = [span["scope"] for span in upstream["spans"] if span["kind"].name == "SERVER"]
    assert scopes == ["opentelemetry.instrumentation.fastapi"] * 2 + ["fastapi"] * 2 + [
        "opentelemetry.instrumentation.fastapi"] * 3
    ran = dict(patched["native_ran"][3:6])
    assert ran["ok"] and ran["raises"]  # FastAPI's own path while the middleware is away
    assert patched["native_ran"][-2][1] == ["_legacy_otel"]  # judged again
    assert patched["native_ran"][-1][1] == []


def test_a_chain_changed_in_place_or_new_settings_are_judged_again():
    """The contrib middleware unlinked from the built stack, or an ``exclude`` set on the
    app's settings later: noticed on the next request."""
    for change in (_unlinked, _excluding):
        steps = [request("ok"), request("ok"), request("probe"), change, request("ok"),
                 request("probe")]
        upstream, patched = _compare(steps)
        assert patched["native_ran"][2][1] == []
        assert patched["native_ran"][-1][1] != []
        assert patched["verdict"].steps_aside is False
    assert _scopes(upstream) == {"opentelemetry.instrumentation.fastapi"}


def test_lifespan_goes_to_fastapis_own_call():
    """Lifespan scopes are FastAPI's (its automatic configuration hooks in there)."""
    seen = []

    async def lifespan_story(app: FastAPI) -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            seen.append(message["type"])

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    def lifespan(app: FastAPI) -> str:
        asyncio.run(lifespan_story(app))
        return "lifespan"

    _compare([request("ok"), request("ok"), lifespan])
    assert seen == ["lifespan.startup.complete", "lifespan.shutdown.complete"] * 2


def test_a_tracer_provider_not_configured_yet_keeps_fastapis_path():
    """No provider in FastAPI's settings and the global one still the API's proxy:
    FastAPI's enabled() may load one from the environment, so its path is kept (in a
    process of its own: the global provider is set once)."""
    code = (
        "import asyncio, fastapi\n"
        "from fastapi import applications\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from clstock_otel_distro.patches import fastapi_native_telemetry as p\n"
        "p.patch(applications)\n"
        "app = fastapi.FastAPI()\n"
        "app.get('/health')(lambda: {})\n"
        "FastAPIInstrumentor.instrument_app(app, tracer_provider=TracerProvider())\n"
        + HEALTH_REQUEST +
        "def serve():\n"
        "    asyncio.run(app(dict(scope), receive, send))\n"
        "    asyncio.run(app(dict(scope), receive, send))\n"
        "    return app._clstock_native_verdict.steps_aside\n"
        "print(serve())\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "app.middleware_stack = app.build_middleware_stack()\n"
        "print(serve())\n"
    )
    # A plain interpreter: no opentelemetry-instrument, no global provider.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"], done.stderr


@pytest.mark.parametrize(("value", "bypassed"), [(None, True), ("false", False)])
def test_under_opentelemetry_instrument(run_instrumented, value, bypassed):
    """The distro skips FastAPI's native steps by default; the switch turns it off."""
    code = (
        "import asyncio, fastapi\n"
        "app = fastapi.FastAPI()\n"
        "app.get('/health')(lambda: {})\n"
        + HEALTH_REQUEST +
        "for _ in range(2):\n"
        "    asyncio.run(app(dict(scope), receive, send))\n"
        "verdict = getattr(app, '_clstock_native_verdict', None)\n"
        "print(type(vars(fastapi.applications.FastAPI)['__call__']).__name__,\n"
        "      verdict is not None and verdict.steps_aside)\n"
    )
    env = {"OTEL_TRACES_EXPORTER": "none"}
    if value is not None:
        env["OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS"] = value
    done = run_instrumented(code, env)
    assert done.returncode == 0, done.stderr
    expected = ["FunctionWrapper", "True"] if bypassed else ["function", "False"]
    assert done.stdout.split() == expected, done.stdout
