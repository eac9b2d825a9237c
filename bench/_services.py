"""What the served benchmarks share: an OTLP sink, the variants, the ClStock stack.

The variants, each ClStock's API served by uvicorn from this checkout:

- plain     ``uvicorn app.main:app``
- ours      ``opentelemetry-instrument uvicorn app.main:app`` with this distro
- upstream  the same launch line with the upstream opentelemetry-distro and
            configurator selected (``tests.support.upstream.upstream_distro_path()`` first on
            PYTHONPATH), OTLP export and only the upstream FastAPI / requests /
            threading / logging instrumentations (ours disabled)

Both traced variants export OTLP over HTTP/protobuf to :class:`Sink`, a live
receiver that parses each request (counting spans) and answers 200 without
decoding further, so that the receiving end costs the 2-CPU machine as little as
possible: the served process is what is measured.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import _common  # noqa: F401 - first: puts the repository root on sys.path for tests.support
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from clstock_otel_distro.tools.devstack import ServiceProcess, find_app_dir
from tests.support.upstream import upstream_distro_path

__all__ = [
    "OTHER_VARIANTS",
    "OUR_INSTRUMENTORS",
    "VARIANTS",
    "Sink",
    "Stack",
    "Variant",
    "cpu_seconds",
    "stack",
    "variant",
    "variant_env",
]

HERE = Path(__file__).resolve().parent
VARIANTS = ("plain", "ours", "upstream")
OUR_INSTRUMENTORS = "clstock_predictor,clstock_data_provider,yfinance,curl_cffi,clstock_methods"
WARM_PATHS = ("/api/v1/recommendations?top_n=5", "/api/v1/predict/7203", "/health")


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SinkServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.sink.received(self.path, body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


class _SinkServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: Sink) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.sink = sink


class Sink:
    """A minimal OTLP/HTTP receiver: counts requests, bytes and spans, keeps nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes = 0
        self.spans = 0
        self.spans_by_service: dict[str, int] = {}
        self._server = _SinkServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def received(self, path: str, body: bytes) -> None:
        by_service: dict[str, int] = {}
        if path.endswith("/v1/traces"):
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                service = next((kv.value.string_value for kv in resource.resource.attributes
                                if kv.key == "service.name"), "")
                by_service[service] = by_service.get(service, 0) + sum(
                    len(scope.spans) for scope in resource.scope_spans)
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.bytes += len(body)
            for service, count in by_service.items():
                self.spans += count
                self.spans_by_service[service] = self.spans_by_service.get(service, 0) + count

    def spans_of(self, variant: str) -> int:
        """Spans received so far from one variant's API (its service name)."""
        with self._lock:
            return self.spans_by_service.get(f"bench-{variant}", 0)

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def variant_env(variant: str, sink: Sink | None, name: str | None = None) -> dict[str, str]:
    """The environment of one variant's API process (service name ``bench-NAME``)."""
    if variant == "plain":
        return {}
    env = {"OTEL_SERVICE_NAME": f"bench-{name or variant}",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    if sink is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
    if variant == "upstream":
        env.update({"PYTHONPATH": str(upstream_distro_path()),
                    "OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator",
                    "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
                    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": OUR_INSTRUMENTORS})
    return env


PROBE = HERE / "_gc_probe.py"


class Variant:
    """One API process to run: a name, the base variant, extra environment.

    A variant whose environment sets any ``BENCH_*`` variable is launched through
    ``bench/_gc_probe.py`` (uvicorn's command line, run by the probe).
    """

    def __init__(self, name: str, base: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.base = base or name
        self.env = dict(env or {})
        if self.base not in VARIANTS:
            raise ValueError(f"unknown variant {self.base!r}")

    @property
    def probed(self) -> bool:
        return any(name.startswith("BENCH_") for name in self.env)


# Other settings, side by side with the defaults. Those with a BENCH_* variable are
# not distro settings: they are applied by the probe launcher.
_NO_SEND = json.dumps({"exclude_spans": ["receive", "send"]})
_NO_METRICS = {"OTEL_METRICS_EXPORTER": "none"}
OTHER_VARIANTS: dict[str, Variant] = {
    # Upstream's FastAPI instrumentation without the ASGI receive/send spans, as ours
    # has them by default: the same spans per request.
    "upstream-nosend": Variant("upstream-nosend", "upstream",
                               {"BENCH_FASTAPI_KWARGS": _NO_SEND}),
    # Ours without gc.freeze() at start-up.
    "ours-nofreeze": Variant("ours-nofreeze", "ours", {"OTEL_PYTHON_CLSTOCK_GC_FREEZE": "false"}),
    # Ours with code.function.name only (no code.file.path / code.line.number).
    "ours-slim": Variant("ours-slim", "ours", {"OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES": "function"}),
    # Ours sampling 10% of the traces (durations are still all measured).
    "ours-sampled": Variant("ours-sampled", "ours", {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
    # Ours exporting no metrics (no HTTP server or ClStock duration metrics recorded).
    "ours-nometrics": Variant("ours-nometrics", "ours", _NO_METRICS),
    # ...and without the logging and threading instrumentations.
    "ours-lean": Variant("ours-lean", "ours", {
        **_NO_METRICS, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "logging,threading"}),
}


def variant(name: str) -> Variant:
    """A variant by name: plain, ours, upstream, or one of OTHER_VARIANTS."""
    return OTHER_VARIANTS[name] if name in OTHER_VARIANTS else Variant(name)


class _Launched(ServiceProcess):
    """A ServiceProcess run through the probe launcher when asked."""

    def __init__(self, *args: Any, probed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probed = probed

    def command(self) -> list[str]:
        command = super().command()
        if not self.probed:
            return command
        # Replace ``python -m uvicorn`` by the launcher, keeping uvicorn's arguments.
        at = command.index("-m")
        return [*command[:at], str(PROBE), *command[at + 2:]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    """The market replay plus one API process per variant, warmed up, stopped on exit."""

    def __init__(self, variants: Sequence[str | Variant], sink: Sink | None, *,
                 extra_env: Mapping[str, str] | None = None, warm: bool = True) -> None:
        self.app_dir = find_app_dir(HERE.parent / "clstock")
        self.variants = [v if isinstance(v, Variant) else variant(v) for v in variants]
        self.sink = sink
        self.extra_env = dict(extra_env or {})
        self.warm = warm
        self.apis: dict[str, ServiceProcess] = {}
        self.replay: ServiceProcess | None = None
        self._services: list[ServiceProcess] = []

    def start_replay(self) -> ServiceProcess:
        self.replay = ServiceProcess("replay", "app.market_replay:app", self.app_dir,
                                     instrumented=False).start()
        self._services.append(self.replay)
        return self.replay

    def api(self, spec: Variant, name: str | None = None) -> _Launched:
        """An API process for ``spec`` (not started)."""
        assert self.replay is not None
        env = {**variant_env(spec.base, self.sink, spec.name),
               "CLSTOCK_YAHOO_URL": self.replay.url,
               **self.extra_env, **spec.env}
        if "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
        return _Launched(f"api-{name or spec.name}", "app.main:app", self.app_dir,
                         instrumented=spec.base != "plain", env=env, probed=spec.probed)

    def __enter__(self) -> Stack:
        try:
            self.start_replay()
            for spec in self.variants:
                api = self.api(spec)
                self._services.append(api)
                self.apis[spec.name] = api.start(timeout=60)
            if self.warm:
                for api in self.apis.values():
                    for path in WARM_PATHS:
                        requests.get(api.url + path, timeout=60).raise_for_status()
        except BaseException:
            self.close()
            raise
        return self

    def pid(self, name: str) -> int:
        process = self.apis[name].process
        assert process is not None
        return process.pid

    def close(self) -> None:
        for service in reversed(self._services):
            with contextlib.suppress(Exception):
                service.stop()
        self._services.clear()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def stack(variants: Sequence[str | Variant], **kwargs: Any) -> Iterator[tuple[Stack, Sink]]:
    """A sink and a warmed :class:`Stack` for ``variants``."""
    with Sink() as sink, Stack(variants, sink, **kwargs) as services:
        yield services, sink
