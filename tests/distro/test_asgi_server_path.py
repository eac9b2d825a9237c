"""The lean ASGI server path: the same spans, metrics and responses as upstream's middleware.

One matrix of requests goes through a FastAPI app instrumented by the real FastAPI
instrumentation twice, once with upstream's ``OpenTelemetryMiddleware.__call__`` and
once with the patch, each into fresh in-memory providers; everything but timestamps,
ids and durations must be the same.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry.instrumentation import asgi as asgi_module
from opentelemetry.instrumentation import propagators
from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import format_span_id

from clstock_otel_distro.instrumentors._machinery.durations import TracedSlot
from clstock_otel_distro.patches import asgi_server_path, metric_records, registry
from clstock_otel_distro.sdk.pipeline import PipelineSpanProcessor
from clstock_otel_distro.sdk.pipeline import tracer as tracer_module
from clstock_otel_distro.sdk.pipeline.tracer import PipelineTracer
from tests.distro.pipeline_testing import Pipelines
from tests.support.asgi_snippets import HEALTH_REQUEST
from tests.support.otel_testing import Telemetry

ORIGINAL_CALL = vars(asgi_module.OpenTelemetryMiddleware)["__call__"]
REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c"
REMOTE_SPAN = "b7ad6b7169203331"
EXCLUDED = r"/excluded,/items/7$,//internal\.example\.com/,^https://tls\.example\.com/"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    def items(q: str | None = None) -> dict:
        return {"q": q}

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"id": item_id}

    @app.get("/boom")
    def boom() -> dict:
        raise ValueError("boom")

    @app.get("/unavailable")
    def unavailable() -> JSONResponse:
        return JSONResponse({"down": True}, status_code=503)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"bb", b"ccc"]))

    @app.get("/stream-fails")
    def stream_fails() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield b"a"
            raise RuntimeError("midway")

        return StreamingResponse(chunks())

    @app.get("/excluded")
    def excluded() -> dict:
        return {}

    return app


def _scope(path: str, method: str = "GET", query: bytes = b"",
           headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> dict[str, Any]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "root_path": "", "query_string": query,
        "headers": [(b"host", b"testserver"), (b"user-agent", b"pytest-client/1.0")]
        if headers is None else headers,
        "client": ("127.0.0.1", 51000), "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


_UA = (b"user-agent", b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
_BODY = b'{"symbol": "7203"}'

# (id, scope, request body, inside an already-current span)
MATRIX: list[tuple[str, dict[str, Any], bytes, bool]] = [
    ("query", _scope("/items", query=b"q=a%20b&n=1"), b"", False),
    ("path-parameter", _scope("/items/42"), b"", False),
    ("not-found", _scope("/nowhere"), b"", False),
    ("raises", _scope("/boom"), b"", False),
    ("503", _scope("/unavailable"), b"", False),
    ("post-body", _scope("/echo", "POST", headers=[
        (b"host", b"api.example.com:8443"), (b"content-type", b"application/json"),
        (b"content-length", str(len(_BODY)).encode())]), _BODY, False),
    ("post-bad-length", _scope("/echo", "POST", headers=[
        (b"host", b"testserver"), (b"content-length", b"many")]), b"{}", False),
    ("head", _scope("/items/42", "HEAD"), b"", False),
    ("unknown-method", _scope("/items/42", "FOO"), b"", False),
    ("lower-case-method", _scope("/items/42", "get"), b"", False),
    ("traceparent", _scope("/items/42", headers=[
        (b"host", b"testserver"),
        (b"traceparent", f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01".encode()),
        (b"tracestate", b"vendor=value")]), b"", False),
    ("traceparent-mixed-case", _scope("/items/42", headers=[
        (b"Host", b"testserver"),
        (b"TraceParent", f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01".encode())]), b"", False),
    ("inside-a-span", _scope("/items/42"), b"", True),
    ("bot", _scope("/items/42", headers=[(b"host", b"testserver"), _UA]), b"", False),
    ("no-host", _scope("/items/42", headers=[]), b"", False),
    ("http2", _scope("/items/42", http_version="2", scheme="https",
                     server=("10.0.0.1", 443), client=("10.0.0.2", 4431)), b"", False),
    ("port-80-no-client", _scope("/items", server=("10.0.0.1", 80), client=None), b"", False),
    ("streaming", _scope("/stream"), b"", False),
    ("streaming-raises", _scope("/stream-fails"), b"", False),
    ("excluded", _scope("/excluded"), b"", False),
    ("excluded-by-host-url", _scope("/items/7"), b"", False),
    ("not-excluded", _scope("/items/70"), b"", False),
    ("excluded-by-host", _scope("/items/42", headers=[(b"host", b"internal.example.com")]),
     b"", False),
    ("excluded-host-is-the-header", _scope("/items/42", headers=[(b"host", b"testserver")],
                                           server=("internal.example.com", 80)), b"", False),
    ("excluded-by-scheme", _scope("/items/42", headers=[(b"host", b"tls.example.com")],
                                  scheme="https"), b"", False),
    ("not-excluded-scheme", _scope("/items/42", headers=[(b"host", b"tls.example.com")]),
     b"", False),
]


async def _request(app: Any, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
    """Serve one request through raw ASGI; the messages the server was sent."""
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the app finishes first
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append({**message, "headers": list(message.get("headers", []))})

    await app(scope, receive, send)
    return sent


_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line \d+, in \w+', re.MULTILINE)
# The middleware's own frames (upstream's __call__ and use_span, or the patch's).
_MIDDLEWARE_FILES = ("opentelemetry/instrumentation/asgi/__init__.py",
                     "opentelemetry/trace/__init__.py", "patches/asgi_server_path.py")


def _stacktrace(text: str) -> str:
    """A stack trace without the middleware's frames (their file and line differ)."""
    starts = [m.start() for m in _FRAME.finditer(text)] + [len(text)]
    kept = [text[:starts[0]]]
    for start, end in zip(starts, starts[1:]):
        frame = text[start:end]
        path = _FRAME.match(frame)["path"]
        last = end == starts[-1]
        if path.endswith(_MIDDLEWARE_FILES) and not last:
            continue
        if path.endswith(_MIDDLEWARE_FILES):  # the final frame carries the message line
            frame = frame.split("\n", 2)[-1] if frame.count("\n") >= 2 else ""
        kept.append(frame)
    return "".join(kept)


class _Ids:
    """Span and trace ids replaced by what they are: span #n, the remote parent."""

    def __init__(self, spans: list[ReadableSpan]) -> None:
        self.spans = {span.context.span_id: f"span#{i}" for i, span in enumerate(spans)}
        self.traces: dict[int, str] = {}

    def span(self, span_id: int) -> str:
        if format_span_id(span_id) == REMOTE_SPAN:
            return "remote"
        return self.spans.get(span_id, "unknown")

    def trace(self, trace_id: int) -> str:
        if f"{trace_id:032x}" == REMOTE_TRACE:
            return "remote-trace"
        return self.traces.setdefault(trace_id, f"trace#{len(self.traces)}")

    def text(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for span_id, name in self.spans.items():
            value = value.replace(format_span_id(span_id), name)
        return re.sub(r"\b[0-9a-f]{32}\b",
                      lambda m: self.trace(int(m.group(), 16)), value)


def _span_view(span: ReadableSpan, ids: _Ids) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
        "attributes": list(span.attributes.items()),
        "dropped_attributes": span.dropped_attributes,
        "status": (span.status.status_code, span.status.description),
        "events": [
            (event.name, [(key, _stacktrace(value) if key == "exception.stacktrace" else value)
                          for key, value in event.attributes.items()])
            for event in span.events
        ],
        "parent": None if span.parent is None else ids.span(span.parent.span_id),
        "remote_parent": span.parent.is_remote if span.parent is not None else None,
        "trace": ids.trace(span.context.trace_id),
        "ended": span.end_time is not None and span.end_time >= span.start_time,
    }


# Histograms whose recorded values do not depend on timing.
_EXACT = ("http.server.request.body.size", "http.server.response.body.size")


def _metric_view(telemetry: Telemetry, ids: _Ids) -> list[Any]:
    data = telemetry.reader.get_metrics_data()
    view = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = []
                for point in metric.data.data_points:
                    attributes = sorted(point.attributes.items())
                    if isinstance(point, HistogramDataPoint):
                        exact = metric.name in _EXACT
                        points.append((attributes, point.count,
                                       point.bucket_counts if exact else None,
                                       point.sum if exact else None,
                                       sorted(ids.span(e.span_id) for e in point.exemplars)
                                       if exact else bool(point.exemplars)))
                    else:
                        assert isinstance(point, NumberDataPoint)
                        points.append((attributes, point.value, sorted(
                            (ids.span(e.span_id), e.value, sorted(e.filtered_attributes.items()))
                            for e in point.exemplars)))
                view.append((scope_metrics.scope.name, metric.name, metric.unit,
                             metric.description, sorted(points, key=repr)))
    return sorted(view, key=repr)


def _serve_matrix(matrix: list[tuple[str, dict[str, Any], bytes, bool]],
                  telemetry: Telemetry, **instrument: Any) -> tuple[dict[str, Any], Any]:
    """Serve ``matrix`` through a freshly instrumented app; what each request produced."""
    app = _app()
    FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED, **telemetry.kwargs,
                                       **instrument)
    tracer = telemetry.tracer_provider.get_tracer("tests")
    outcomes = []
    try:
        for name, scope, body, inside in matrix:
            try:
                if inside:
                    with tracer.start_as_current_span("outer"):
                        sent = asyncio.run(_request(app, dict(scope), body))
                else:
                    sent = asyncio.run(_request(app, dict(scope), body))
            except Exception as exc:
                outcomes.append((name, "raised", type(exc).__name__, str(exc)))
            else:
                outcomes.append((name, "sent", sent))
        middleware = app.middleware_stack.app
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    spans = list(telemetry.exporter.get_finished_spans())
    ids = _Ids(spans)
    result = {
        "outcomes": [tuple(ids.text(repr(part)) for part in outcome) for outcome in outcomes],
        "spans": [_span_view(span, ids) for span in spans],
        "metrics": _metric_view(telemetry, ids),
    }
    return result, middleware


class _QueuedSpans:
    """The spans a pipeline provider's processor has queued (a test's never exports), as
    span objects: the processor keeps them encoded, so they are kept here as they end."""

    def __init__(self, processor: PipelineSpanProcessor, provider: Any) -> None:
        self.spans: list[Any] = []
        queue = processor._enqueue

        def enqueue(span: Any) -> None:
            if span._flags & 1:  # what the processor queues
                self.spans.append(span)
            queue(span)

        processor._enqueue = enqueue  # type: ignore[method-assign]
        provider._update_tracers()  # the tracers call the processor's _enqueue directly

    def get_finished_spans(self) -> list[Any]:
        return list(self.spans)


def _pipeline_telemetry() -> Telemetry:
    """In-memory telemetry whose tracer provider is the distro's span pipeline."""
    pipelines = Pipelines.create()
    pipelines.sdk.shutdown()
    sdk = Telemetry.create()
    sdk.tracer_provider.shutdown()
    return Telemetry(_QueuedSpans(pipelines.processor, pipelines.pipeline),  # type: ignore[arg-type]
                     pipelines.pipeline,
                     sdk.reader, sdk.meter_provider)


@pytest.fixture
def http_semconv(monkeypatch: pytest.MonkeyPatch) -> Callable[[_StabilityMode], None]:
    """Sets the HTTP semantic-convention mode middlewares built in the test see (restored)."""
    _OpenTelemetrySemanticConventionStability._initialize()

    def set_mode(mode: _StabilityMode) -> None:
        monkeypatch.setitem(
            _OpenTelemetrySemanticConventionStability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING,
            _OpenTelemetryStabilitySignalType.HTTP, mode)

    set_mode(_StabilityMode.HTTP)  # the distro's default (OTEL_SEMCONV_STABILITY_OPT_IN=http)
    return set_mode


@pytest.fixture
def compare(http_semconv: Any) -> Callable[..., tuple[dict[str, Any], dict[str, Any], Any]]:
    """Serve a matrix without the patch, then with it: (upstream's, the patch's, middleware)."""

    def run(matrix: list = MATRIX, processor: SpanProcessor | None = None,
            record_cache: bool = False, pipeline: bool = False,
            **instrument: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
        instrument.setdefault("exclude_spans", ["receive", "send"])
        results = []
        middleware = None
        if record_cache:  # as the configurator installs it, for both runs
            registry.install(metric_records.PATCH)
        for patched in (False, True):
            # The patch's run through the distro's span pipeline when asked: compared
            # with upstream's through the SDK's.
            telemetry = _pipeline_telemetry() if patched and pipeline else Telemetry.create()
            if processor is not None:
                telemetry.tracer_provider.add_span_processor(processor)
            undo = asgi_server_path.patch(asgi_module) if patched else None
            random.seed(12)  # the sums' exemplar reservoirs draw from it
            try:
                result, middleware = _serve_matrix(matrix, telemetry, **instrument)
            finally:
                if undo is not None:
                    undo()
                telemetry.shutdown()
            results.append(result)
        registry.uninstall(metric_records.PATCH)
        assert vars(asgi_module.OpenTelemetryMiddleware)["__call__"] is ORIGINAL_CALL
        return results[0], results[1], middleware

    return run


def _assert_same(upstream: dict[str, Any], patched: dict[str, Any]) -> None:
    assert patched["outcomes"] == upstream["outcomes"]
    assert len(patched["spans"]) == len(upstream["spans"])
    for index, (mine, theirs) in enumerate(zip(patched["spans"], upstream["spans"])):
        assert mine == theirs, f"span #{index} ({theirs['name']})"
    for mine, theirs in zip(patched["metrics"], upstream["metrics"]):
        assert mine[:4] == theirs[:4]
        for point, expected in zip(mine[4], theirs[4]):
            assert point == expected, f"{theirs[1]} point"
    assert patched["metrics"] == upstream["metrics"]


def test_the_matrix_gives_upstreams_spans_metrics_and_responses(compare):
    """Every request of the matrix: the same spans, metric streams and messages as upstream."""
    upstream, patched, middleware = compare()
    assert middleware.__dict__[asgi_server_path._DECIDED] is True  # the lean path served
    _assert_same(upstream, patched)
    # The matrix exercises what it claims (guards against a matrix that tests nothing).
    spans = {span["name"]: span for span in upstream["spans"]}
    kinds = {span["kind"].name for span in upstream["spans"]}
    assert {"SERVER", "INTERNAL"} <= kinds
    assert any(span["parent"] == "remote" for span in upstream["spans"])
    assert spans["GET /boom"]["status"][0].name == "ERROR"
    assert any(dict(span["attributes"]).get("user_agent.synthetic.type") == "bot"
               for span in upstream["spans"])
    assert any(dict(span["attributes"]).get("http.request.method_original") == "FOO"
               for span in upstream["spans"])
    assert not any("/excluded" in span["name"] for span in upstream["spans"])
    assert len(spans["GET /stream-fails"]["events"]) == 2  # the middleware's own record too
    points = {name: found for _, name, _, _, found in upstream["metrics"]}
    assert all(value == 0 for _, value, _ in points["http.server.active_requests"])
    # The requests in a sampled span's context (a sampled traceparent, inside a span)
    # offer their +1 and -1 as exemplars.
    assert any(exemplars for _, _, exemplars in points["http.server.active_requests"])
    assert points["http.server.request.body.size"]
    assert points["http.server.response.body.size"]


def test_with_the_metric_record_cache_durations_and_sizes_wait_for_the_collection(compare):
    """With the cache, the duration and response size of a request wait for the
    collection; what is collected (exemplars included) is still upstream's."""
    upstream, patched, middleware = compare(record_cache=True)
    _assert_same(upstream, patched)
    durations, sizes, _ = middleware.__dict__[asgi_server_path._LATER]
    # Attribute sets seen a second time waited (a TracedSlot), the first went the
    # SDK's way; the collection took what waited.
    waited = [slot for later in (durations, sizes) for slot in later.slots.values()
              if isinstance(slot, TracedSlot)]
    assert {id(slot) for slot in durations.slots.values()} & {id(slot) for slot in waited}
    assert {id(slot) for slot in sizes.slots.values()} & {id(slot) for slot in waited}
    assert all(len(slot) == 0 for slot in waited)


    # The active requests' +1 and -1 with no sampled span in their context were counted
    # live (a set's first add went the SDK's way) and all added at the collection.
    live = middleware.__dict__[asgi_server_path._LATER][2]
    assert live is not None and live._every
    assert all(slot.applied_ups == slot.applied_downs for slot in live._every)
    assert sum(slot.applied_ups for slot in live._every) >= 10


@pytest.mark.parametrize("record_cache", [False, True], ids=["sdk-records", "record-cache"])
def test_through_the_span_pipeline_the_matrix_gives_upstreams(compare, monkeypatch,
                                                               record_cache):
    """The patch's requests through the distro's span pipeline: the spans, metrics and
    messages of upstream's through the SDK; the server spans' attributes are handed to
    the pipeline tracer (start_span_adopting), except under a remote parent."""
    adopted = []
    checked = []
    adopting = PipelineTracer.start_span_adopting
    initial = tracer_module._set_initial_attributes

    def counting(tracer: Any, name: str, *args: Any) -> Any:
        adopted.append(name)
        return adopting(tracer, name, *args)

    def noting(span: Any, attributes: Any) -> None:
        checked.append(span.name)
        initial(span, attributes)

    monkeypatch.setattr(PipelineTracer, "start_span_adopting", counting)
    monkeypatch.setattr(tracer_module, "_set_initial_attributes", noting)
    upstream, patched, middleware = compare(record_cache=record_cache, pipeline=True)
    assert middleware.__dict__[asgi_server_path._DECIDED] is True
    _assert_same(upstream, patched)
    served = [span for span in upstream["spans"] if span["name"] != "outer"]
    assert len(adopted) == len(served)
    # The remote parents' spans take start_span (their attributes checked one by one).
    remote = [span["name"] for span in served if span["parent"] == "remote"]
    assert checked == remote and len(remote) == 2


def _active_requests(reader: Any) -> list[Any]:
    """The points of http.server.active_requests: attributes, value, exemplars' values."""
    data = reader.get_metrics_data()
    found = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "http.server.active_requests":
                    found += [(sorted(p.attributes.items()), p.value,
                               sorted(e.value for e in p.exemplars))
                              for p in metric.data.data_points]
    return sorted(found, key=repr)


def _active_requests_story(patched: bool, temporality: AggregationTemporality,
                           exemplar_filter: Any) -> tuple[list[Any], Any]:
    """Requests, collections in and between them, a reader added half-way: what each
    collection of the active requests gave (both readers), and the patch's live count."""
    preferred = {UpDownCounter: temporality}
    reader = InMemoryMetricReader(preferred_temporality=preferred)
    late_reader = InMemoryMetricReader(preferred_temporality=preferred)
    meter_provider = MeterProvider(metric_readers=[reader], exemplar_filter=exemplar_filter)
    tracer_provider = TracerProvider()
    app = FastAPI()
    story: list[Any] = []

    @app.get("/plain")
    def plain() -> dict:
        return {}

    @app.get("/collects")
    async def collects() -> dict:
        story.append(("in flight", _active_requests(reader)))
        return {}

    traceparent = (b"traceparent", f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01".encode())
    steps: list[Any] = ["/plain", "/plain", "/collects", "collect", "collect", "/plain",
                        ("/plain", traceparent), "/collects", "collect", "add a reader",
                        "/plain", "/plain", ("/collects", traceparent), "collect", "collect"]
    undo = asgi_server_path.patch(asgi_module) if patched else None
    registry.install(metric_records.PATCH)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider,
                                       meter_provider=meter_provider,
                                       exclude_spans=["receive", "send"])
    random.seed(5)  # the sums' exemplar reservoirs draw from it
    added = False
    try:
        for step in steps:
            if step == "collect":
                story.append(("collected", _active_requests(reader),
                              _active_requests(late_reader) if added else []))
            elif step == "add a reader":
                meter_provider.add_metric_reader(late_reader)
                added = True
            else:
                path, *extra = step if isinstance(step, tuple) else (step,)
                headers = [(b"host", b"testserver"), *extra]
                asyncio.run(_request(app, _scope(path, headers=headers), b""))
        middleware = app.middleware_stack.app
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
        registry.uninstall(metric_records.PATCH)
        if undo is not None:
            undo()
        meter_provider.shutdown()
        tracer_provider.shutdown()
    later = middleware.__dict__.get(asgi_server_path._LATER)
    return story, later[2] if later else None


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE,
                                         AggregationTemporality.DELTA],
                         ids=["cumulative", "delta"])
@pytest.mark.parametrize("exemplar_filter", [TraceBasedExemplarFilter(),
                                             AlwaysOnExemplarFilter(),
                                             AlwaysOffExemplarFilter()],
                         ids=["trace-based", "always-on", "always-off"])
def test_active_requests_counted_live_collect_as_upstreams(http_semconv, temporality,
                                                          exemplar_filter):
    """The active requests counted live: every collection (in a request, between
    requests, of a reader added later, in cumulative or delta temporality, under each
    exemplar filter) gives upstream's points and exemplars."""
    upstream, _ = _active_requests_story(False, temporality, exemplar_filter)
    patched, live = _active_requests_story(True, temporality, exemplar_filter)
    assert patched == upstream
    # The story shows what it claims: a request in flight counts 1; a collection with
    # no request since the last gives no point in delta temporality (0 in cumulative);
    # the reader added later sees the requests made after; exemplars as filtered.
    in_flight = [entry[1] for entry in upstream if entry[0] == "in flight"]
    collected = [entry[1:] for entry in upstream if entry[0] == "collected"]
    assert [value for _, value, _ in in_flight[0]] == [1]
    idle = [value for _, value, _ in collected[1][0]]
    assert idle == ([] if temporality is AggregationTemporality.DELTA else [0])
    assert collected[0][1] == [] and collected[-2][1]
    exemplars = [e for entry in collected for points in entry for _, _, e in points if e]
    assert bool(exemplars) is not isinstance(exemplar_filter, AlwaysOffExemplarFilter)
    counted = sum(slot.applied_ups + slot.applied_downs for slot in live._every)
    if isinstance(exemplar_filter, AlwaysOnExemplarFilter):
        assert counted == 0  # every add offers an exemplar: the SDK's way
    else:
        assert counted > 0


def test_with_a_response_propagator(compare):
    """A global response propagator: the same traceresponse header, naming the server span."""
    previous = propagators.get_global_response_propagator()
    propagators.set_global_response_propagator(propagators.TraceResponsePropagator())
    try:
        upstream, patched, _ = compare(MATRIX[:3])
    finally:
        propagators.set_global_response_propagator(previous)
    _assert_same(upstream, patched)
    assert "traceresponse" in upstream["outcomes"][0][2]


def test_attributes_changed_at_start_are_set_again_as_upstream_does(compare):
    """A span processor that adds an attribute at start: upstream's second setting is kept."""

    class Adds(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            span.set_attribute("added.at.start", 1)

    upstream, patched, _ = compare(MATRIX[:2], processor=Adds())
    _assert_same(upstream, patched)
    assert upstream["spans"][0]["attributes"][0] == ("added.at.start", 1)


def test_a_diverging_attribute_is_noticed(compare, monkeypatch):
    """The comparison fails when the lean path writes one attribute differently."""
    monkeypatch.setattr(asgi_server_path, "USER_AGENT_ORIGINAL", "user_agent.bogus")
    upstream, patched, _ = compare(MATRIX[:1])
    with pytest.raises(AssertionError):
        _assert_same(upstream, patched)


@pytest.mark.parametrize("setting", ["hook", "internal-spans", "old-semconv", "dup-semconv"])
def test_configurations_it_cannot_reproduce_are_upstreams(compare, http_semconv, setting):
    """Hooks, receive/send spans, other semantic conventions: upstream's __call__ serves."""
    instrument: dict[str, Any] = {}
    if setting == "hook":
        instrument["server_request_hook"] = lambda span, scope: span.set_attribute("hooked", 1)
    elif setting == "internal-spans":
        instrument["exclude_spans"] = []
    elif setting == "old-semconv":
        http_semconv(_StabilityMode.DEFAULT)
    else:
        http_semconv(_StabilityMode.HTTP_DUP)
    upstream, patched, middleware = compare(MATRIX[:4], **instrument)
    assert middleware.__dict__[asgi_server_path._DECIDED] is False
    _assert_same(upstream, patched)


def test_websocket_and_lifespan_scopes_are_served_as_upstream_serves_them(http_semconv):
    """Scopes other than HTTP go to upstream's __call__: the same spans with the patch."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hi"})

    async def send(message: Any) -> None:
        pass

    views = []
    for patched in (False, True):
        telemetry = Telemetry.create()
        undo = asgi_server_path.patch(asgi_module) if patched else None
        try:
            middleware = asgi_module.OpenTelemetryMiddleware(
                app, exclude_spans=["receive", "send"], **telemetry.kwargs)
            for kind in ("lifespan", "websocket"):
                asyncio.run(middleware(_scope("/ws", type=kind), None, send))
        finally:
            if undo is not None:
                undo()
            telemetry.shutdown()
        spans = list(telemetry.exporter.get_finished_spans())
        views.append([_span_view(span, _Ids(spans)) for span in spans])
        if patched:
            assert middleware.__dict__[asgi_server_path._DECIDED] is True
    assert views[1] == views[0]
    assert [span["name"] for span in views[0]] == ["GET /ws"]


@pytest.mark.parametrize(("value", "lean"), [(None, True), ("false", False)])
def test_under_opentelemetry_instrument(run_instrumented, value, lean):
    """The distro serves FastAPI requests the lean way by default; the switch turns it off."""
    code = (
        "import asyncio, fastapi\n"
        "from opentelemetry.instrumentation import asgi\n"
        "app = fastapi.FastAPI()\n"
        "app.get('/health')(lambda: {})\n"
        + HEALTH_REQUEST +
        "asyncio.run(app(scope, receive, send))\n"
        "middleware = app.middleware_stack.app\n"
        "print(type(middleware).__name__, middleware.__dict__.get('_clstock_asgi_fast_path'))\n"
    )
    env = {"OTEL_TRACES_EXPORTER": "none"}
    if value is not None:
        env["OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH"] = value
    done = run_instrumented(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["OpenTelemetryMiddleware", str(True if lean else None)]
