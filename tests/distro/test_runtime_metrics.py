"""The runtime metrics' default set, its exclusions, collection-time cost and forks."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from clstock_otel_distro.patches import registry, system_metrics_fork
from clstock_otel_distro.runtime_metrics import (
    DEFAULT_RUNTIME_METRICS,
    instrument_runtime_metrics,
    runtime_metrics_config,
)


class _CountingProcess:
    """A psutil.Process that counts the calls made on it."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._process, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


@pytest.fixture
def telemetry(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    """A private MeterProvider and its reader; the instrumentation is undone afterwards."""
    # No fork hook in this pytest process: the fork test runs in a subprocess.
    monkeypatch.setattr(system_metrics_fork, "_registered", True)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    SystemMetricsInstrumentor().uninstrument()
    registry.uninstall(system_metrics_fork.PATCH)
    provider.shutdown()


def _metrics(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    return {
        metric.name: metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


def test_default_set_is_process_and_gc_only():
    """The default set covers CPU, memory, threads, fds and GC, and nothing host-wide."""
    config = runtime_metrics_config()
    assert set(config) == set(DEFAULT_RUNTIME_METRICS)
    for name in ("process.cpu.time", "process.memory.usage", "process.thread.count",
                 "process.open_file_descriptor.count", "cpython.gc.collections"):
        assert name in config
    assert not [name for name in config if name.startswith(("system.", "process.runtime."))]


def test_excluded_metrics_variable_still_applies(monkeypatch: pytest.MonkeyPatch):
    """OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS globs remove metrics from our set."""
    monkeypatch.setenv("OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS", "cpython.gc.*, process.cpu.*")
    config = runtime_metrics_config()
    assert "process.memory.usage" in config
    assert not [name for name in config if name.startswith(("cpython.gc.", "process.cpu."))]


def test_exported_names_and_values(telemetry):
    """Each default metric is exported under its semantic-convention name with real values."""
    provider, reader = telemetry
    instrument_runtime_metrics(SystemMetricsInstrumentor, meter_provider=provider)
    metrics = _metrics(reader)
    assert set(metrics) == set(DEFAULT_RUNTIME_METRICS)
    [memory] = metrics["process.memory.usage"].data.data_points
    assert memory.value == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)
    [threads] = metrics["process.thread.count"].data.data_points
    assert threads.value == psutil.Process().num_threads()
    generations = {point.attributes["cpython.gc.generation"]
                   for point in metrics["cpython.gc.collections"].data.data_points}
    assert generations == set(range(len(gc.get_stats())))
    cpu_types = {point.attributes["type"] for point in metrics["process.cpu.time"].data.data_points}
    assert cpu_types == {"user", "system"}


def test_an_explicit_config_wins(telemetry):
    """A ``config`` passed by the caller replaces our default set."""
    provider, reader = telemetry
    instrument_runtime_metrics(SystemMetricsInstrumentor, meter_provider=provider,
                               config={"process.thread.count": None})
    assert set(_metrics(reader)) == {"process.thread.count"}


def test_read_only_when_collected(telemetry, monkeypatch: pytest.MonkeyPatch):
    """Nothing is read between collections: the instruments are observable."""
    provider, reader = telemetry
    instrumentor = instrument_runtime_metrics(SystemMetricsInstrumentor, meter_provider=provider)
    process = _CountingProcess()
    monkeypatch.setattr(instrumentor, "_proc", process)
    gc_reads = []
    real_get_stats = gc.get_stats
    monkeypatch.setattr(gc, "get_stats", lambda: gc_reads.append(1) or real_get_stats())
    for _ in range(200):  # work that allocates and collects, as requests do
        gc.collect(0)
        [object() for _ in range(100)]
    assert (process.calls, len(gc_reads)) == (0, 0)
    _metrics(reader)
    assert process.calls > 0
    assert len(gc_reads) == 3  # one per cpython.gc.* metric


_FORK_CHECK = textwrap.dedent(
    """
    import os
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from clstock_otel_distro.runtime_metrics import instrument_runtime_metrics

    instrumentor = instrument_runtime_metrics(SystemMetricsInstrumentor,
                                              meter_provider=MeterProvider())
    assert instrumentor._proc.pid == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, str(instrumentor._proc.pid).encode())
        os._exit(0)
    os.waitpid(child, 0)
    print(child, os.read(read, 32).decode())
    """
)


def test_forked_worker_reads_its_own_process():
    """After a fork (gunicorn's workers) the metrics read the child, not the parent."""
    result = subprocess.run([sys.executable, "-c", _FORK_CHECK], capture_output=True, text=True,
                            timeout=60, check=True)
    child, observed = result.stdout.split()
    assert observed == child
