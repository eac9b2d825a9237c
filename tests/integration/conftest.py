"""The end-to-end harness: real ClStock services under ``opentelemetry-instrument``,
exporting real OTLP to a receiver started by the tests on 127.0.0.1.

``receiver`` is one RecordingReceiver per module; ``launch`` starts a ClStock service
traced into it and stops it (SIGTERM) at the end of the module. Services export fast
(a short batch delay) so tests wait milliseconds, not the SDK's default 5 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import pytest

from clstock_otel_distro.tools.devstack import ServiceProcess
from clstock_otel_distro.tools.otlp_data import ReceivedSpan
from tests.conftest import APP_DIR
from tests.support.receiver import RecordingReceiver

FAST_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "100",
    "OTEL_METRIC_EXPORT_INTERVAL": "500",
    "OTEL_PYTHON_LOG_LEVEL": "info",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[RecordingReceiver]:
    """An OTLP/HTTP + OTLP/gRPC receiver on 127.0.0.1, shared by a module's tests."""
    with RecordingReceiver() as rcv:
        yield rcv


def otlp_env(receiver: RecordingReceiver, protocol: str = "http/protobuf") -> dict[str, str]:
    """The OTEL_* variables that point a service at ``receiver``."""
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    return {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}


Launcher = Callable[..., ServiceProcess]


@pytest.fixture(scope="module")
def launch(tmp_path_factory) -> Iterator[Launcher]:
    """Start ClStock services for a module; all are stopped when it ends."""
    started: list[ServiceProcess] = []
    logs = tmp_path_factory.mktemp("service-logs")

    def _launch(name: str, app: str = "app.main:app", *, env: Mapping[str, str] | None = None,
                instrumented: bool = True, server_args: Sequence[str] = ()) -> ServiceProcess:
        service = ServiceProcess(
            name, app, APP_DIR, env=env, instrumented=instrumented, server_args=server_args,
            log_path=logs / f"{name}-{len(started)}.log",
        )
        started.append(service)
        return service.start()

    yield _launch
    for service in reversed(started):
        service.stop()


@pytest.fixture(scope="module")
def replay(launch) -> ServiceProcess:
    """The market replay service, untraced: it stands in for Yahoo."""
    return launch("replay", "app.market_replay:app", instrumented=False)


def server_span(spans: Sequence[ReceivedSpan], route: str, service: str | None = None
                ) -> ReceivedSpan:
    """The one SERVER span of ``route`` (of ``service`` when given)."""
    matches = [s for s in spans if s.kind == "SERVER" and s.attributes.get("http.route") == route
               and (service is None or s.service_name == service)]
    assert len(matches) == 1, f"expected one SERVER span for {route}, got {matches}"
    return matches[0]


def wait_for_route(receiver: RecordingReceiver, route: str, *, service: str | None = None,
                   count: int = 1, timeout: float = 15.0) -> list[ReceivedSpan]:
    """Block until ``count`` SERVER spans of ``route`` arrived; returns all spans then."""

    def arrived(spans: Sequence[ReceivedSpan]) -> bool:
        return sum(1 for s in spans if s.kind == "SERVER"
                   and s.attributes.get("http.route") == route
                   and (service is None or s.service_name == service)) >= count

    return receiver.wait_for_spans(arrived, timeout=timeout)


def trace_of(spans: Sequence[ReceivedSpan], span: ReceivedSpan) -> list[ReceivedSpan]:
    """Every received span of ``span``'s trace."""
    return [s for s in spans if s.trace_id == span.trace_id]


def ancestors(span: ReceivedSpan, spans: Sequence[ReceivedSpan]) -> list[ReceivedSpan]:
    """The chain of parents of ``span`` within ``spans``, nearest first."""
    by_id = {s.span_id: s for s in spans}
    chain = []
    parent = by_id.get(span.parent_span_id or "")
    while parent is not None:
        chain.append(parent)
        parent = by_id.get(parent.parent_span_id or "")
    return chain
