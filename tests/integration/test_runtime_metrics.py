"""Runtime metrics from the real traced API: exported by OTLP, and switched off by name.

The API runs under ``opentelemetry-instrument`` with nothing but OTEL_* variables; the
metrics reach the test's OTLP receiver every 500 ms (``FAST_EXPORT``).
"""

from __future__ import annotations

import time

import requests

from clstock_otel_distro.runtime_metrics import DEFAULT_RUNTIME_METRICS
from clstock_otel_distro.tools.otlp_data import ReceivedMetric
from tests.integration.conftest import otlp_env

HTTP_SERVER_DURATION = "http.server.request.duration"
RUNTIME_PREFIXES = ("process.", "cpython.", "system.")


def _of_service(metrics: list[ReceivedMetric], service: str) -> dict[str, ReceivedMetric]:
    """The latest export of each metric of ``service``."""
    return {metric.name: metric for metric in metrics if metric.service_name == service}


def _serve_some(url: str) -> None:
    for _ in range(5):
        assert requests.get(url + "/health", timeout=10).status_code == 200


def test_runtime_metrics_exported_by_default(launch, receiver):
    """Process CPU, memory, threads, fds and CPython GC arrive under their semconv names."""
    service = "clstock-runtime-metrics"
    api = launch("runtime-metrics", env={**otlp_env(receiver), "OTEL_SERVICE_NAME": service})
    _serve_some(api.url)
    receiver.wait_for_metrics(
        lambda metrics: set(DEFAULT_RUNTIME_METRICS) <= set(_of_service(metrics, service)),
        timeout=20,
    )
    metrics = _of_service(receiver.metrics(), service)
    # Our low-cost set only: nothing host-wide, none of upstream's deprecated names.
    runtime = {name for name in metrics if name.startswith(RUNTIME_PREFIXES)}
    assert runtime == set(DEFAULT_RUNTIME_METRICS)

    def values(name: str) -> list[dict]:
        return list(metrics[name].data_points)

    assert metrics["process.memory.usage"].unit == "By"
    [rss] = values("process.memory.usage")
    assert 20 * 2**20 < rss["value"] < 4 * 2**30  # a uvicorn + pandas process
    [threads] = values("process.thread.count")
    assert threads["value"] >= 2  # the main thread and at least the span exporter's
    [fds] = values("process.open_file_descriptor.count")
    assert fds["value"] >= 4  # stdio and the listening socket at least
    cpu = {point["attributes"]["type"]: point["value"] for point in values("process.cpu.time")}
    assert set(cpu) == {"user", "system"} and cpu["user"] > 0
    collections = {point["attributes"]["cpython.gc.generation"]: point["value"]
                   for point in values("cpython.gc.collections")}
    assert set(collections) == {0, 1, 2} and collections[0] > 0
    # The metrics describe the process that served the requests.
    assert metrics["process.memory.usage"].resource["process.pid"] == api.process.pid


def test_runtime_metrics_switched_off_by_name(launch, receiver):
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=system_metrics leaves request metrics only."""
    service = "clstock-no-runtime-metrics"
    api = launch("no-runtime-metrics", env={
        **otlp_env(receiver), "OTEL_SERVICE_NAME": service,
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "system_metrics",
    })
    _serve_some(api.url)
    receiver.wait_for_metrics(
        lambda metrics: HTTP_SERVER_DURATION in _of_service(metrics, service), timeout=20
    )
    time.sleep(1.2)  # two more export intervals, for anything else to arrive
    names = set(_of_service(receiver.metrics(), service))
    assert HTTP_SERVER_DURATION in names
    assert not [name for name in names if name.startswith(RUNTIME_PREFIXES)]
