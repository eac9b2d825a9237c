"""The per-process Prometheus reader: chosen for ``prometheus``, its ports, files and fork."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from clstock_otel_distro.configurator import _plan
from clstock_otel_distro.sdk.prometheus_reader import WorkerPrometheusMetricReader, target_file_name
from clstock_otel_distro.sdk.prometheus_workers import (
    DEFAULT_PORT,
    PORT_SPAN,
    READER_NAME,
    exporter_names_for_sdk,
    port_range,
)
from clstock_otel_distro.tools.devstack import free_port


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


@pytest.mark.parametrize(("value", "expected"), [
    ("prometheus", READER_NAME),
    ("otlp, Prometheus", f"otlp,{READER_NAME}"),
    ("otlp", None),
    (None, None),
])
def test_exporter_names_for_sdk(value, expected):
    """Only ``prometheus`` is replaced, wherever it is in the list."""
    assert exporter_names_for_sdk(value) == expected


def test_configurator_builds_our_reader(monkeypatch: pytest.MonkeyPatch):
    """OTEL_METRICS_EXPORTER=prometheus reaches the SDK as our reader's entry point."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    plan = _plan({})
    assert plan.scoped_environ["OTEL_METRICS_EXPORTER"] == READER_NAME
    assert plan.exporters["metrics"] == {READER_NAME: WorkerPrometheusMetricReader}


def test_configurator_leaves_otlp_alone(monkeypatch: pytest.MonkeyPatch):
    """Without prometheus the metrics exporters are untouched."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    assert "OTEL_METRICS_EXPORTER" not in _plan({}).scoped_environ


def test_port_range(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """From the base port upward; 0 is one system-picked port; a bad value warns, default."""
    assert port_range() == range(DEFAULT_PORT, DEFAULT_PORT + PORT_SPAN)
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "0")
    assert port_range() == range(0, 1)
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "nine")
    with caplog.at_level(logging.WARNING):
        assert port_range() == range(DEFAULT_PORT, DEFAULT_PORT + PORT_SPAN)
    assert "OTEL_EXPORTER_PROMETHEUS_PORT='nine' is invalid" in caplog.text


def test_taken_port_is_skipped_and_target_file_kept(monkeypatch, tmp_path):
    """A taken base port moves the reader to the next; its file_sd file lives until shutdown."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    base = taken.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(base))
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR", str(tmp_path))
    reader = WorkerPrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        assert reader.port is not None and base < reader.port < base + PORT_SPAN
        provider.get_meter("test").create_counter("clstock.test.requests").add(3)
        assert "clstock_test_requests_total" in _metrics_text(reader.port)
        # Only OpenTelemetry's metrics: not prometheus_client's own collectors.
        assert "python_gc_objects_collected_total" not in _metrics_text(reader.port)
        path = tmp_path / target_file_name(reader.port)
        assert json.loads(path.read_text()) == [
            {"targets": [f"127.0.0.1:{reader.port}"], "labels": {}}]
    finally:
        provider.shutdown()
        taken.close()
    assert not path.exists()
    with pytest.raises(OSError):
        _metrics_text(reader.port)


_FORK_CHECK = textwrap.dedent(
    """
    import os, sys, urllib.request
    from opentelemetry.sdk.metrics import MeterProvider
    from clstock_otel_distro.sdk.prometheus_reader import WorkerPrometheusMetricReader

    reader = WorkerPrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    parent_port = reader.port
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        provider.get_meter("t").create_counter("child.only").add(1)
        os.write(write, str(reader.port).encode())
        os.read(os.open(sys.argv[1], os.O_RDONLY), 1)  # wait for the parent's scrape
        os._exit(0)
    child_port = int(os.read(read, 16))
    text = urllib.request.urlopen(f"http://127.0.0.1:{child_port}/metrics").read().decode()
    parent = urllib.request.urlopen(f"http://127.0.0.1:{parent_port}/metrics").read().decode()
    with open(sys.argv[1], "w") as fifo:
        fifo.write("x")
    os.waitpid(child, 0)
    print(parent_port, child_port, "child_only_total" in text, "child_only_total" in parent)
    """
)


def test_forked_child_serves_its_own_metrics(tmp_path):
    """After a fork (gunicorn) the child serves its own metrics on its own port."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()),
           "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-c", _FORK_CHECK, str(fifo)], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    parent_port, child_port, child_has, parent_has = result.stdout.split()
    assert parent_port != child_port
    assert (child_has, parent_has) == ("True", "False")


_FORK_PID_CHECK = textwrap.dedent(
    """
    import json, os, sys, urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from clstock_otel_distro.sdk.prometheus_reader import WorkerPrometheusMetricReader

    def pid_on(port):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        return [int(sample.labels["process_pid"])
                for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == "target_info"]

    reader = WorkerPrometheusMetricReader()
    in_window = []
    if sys.argv[1] == "window":
        # Runs after the reader's fork hook (the child's server is up) and before
        # the MeterProvider's (process.pid not yet re-detected): a scrape right then.
        os.register_at_fork(after_in_child=lambda: in_window.extend(pid_on(reader.port)))
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create())
    provider.get_meter("t").create_counter("requests").add(1)
    before_fork = pid_on(reader.port)  # the master scraped before it forks
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, json.dumps([os.getpid(), in_window, pid_on(reader.port)]).encode())
        os._exit(0)
    child_pid, window, child_answer = json.loads(os.read(read, 4096))
    os.waitpid(child, 0)
    print(json.dumps({"parent": os.getpid(), "child": child_pid, "before_fork": before_fork,
                      "window": window, "child_answer": child_answer,
                      "parent_answer": pid_on(reader.port)}))
    """
)


@pytest.mark.parametrize("scraped", ["before-fork", "window"])
def test_forked_child_answers_with_its_own_pid(scraped):
    """A child's target_info names its own process.pid, however early it is scraped."""
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()),
           "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
           "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process"}
    result = subprocess.run([sys.executable, "-c", _FORK_PID_CHECK, scraped],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["before_fork"] == seen["parent_answer"] == [seen["parent"]], seen
    assert seen["child_answer"] == [seen["child"]], seen


_FORK_MID_SCRAPE = textwrap.dedent(
    """
    import os, threading, time, urllib.request
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from clstock_otel_distro.sdk.prometheus_reader import WorkerPrometheusMetricReader

    reader = WorkerPrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    in_scrape = threading.Event()

    def slow(options):
        in_scrape.set()
        time.sleep(0.5)  # the parent's scrape holds the SDK's collect lock meanwhile
        return [Observation(1)]

    provider.get_meter("t").create_observable_gauge("slow", callbacks=[slow])
    scrape = threading.Thread(target=lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{reader.port}/metrics").read())
    scrape.start()
    in_scrape.wait()
    child = os.fork()
    if child == 0:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{reader.port}/metrics", timeout=5).read()
            os._exit(0)
        except Exception:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    scrape.join()
    print(os.waitstatus_to_exitcode(status))
    """
)


def test_fork_during_a_scrape_leaves_the_child_scrapable():
    """A fork while the parent is being scraped: the child's own page still answers."""
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()),
           "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-c", _FORK_MID_SCRAPE], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"], "the child's scrape hung on a lock held at fork"


def test_stale_target_files_of_this_host_are_removed(monkeypatch, tmp_path):
    """A starting process removes this host's files whose port refuses; live ones stay."""
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    live.listen()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    files = {}
    for name, port in (("live", live.getsockname()[1]), ("dead", dead_port)):
        files[name] = tmp_path / target_file_name(port)
        files[name].write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {}}]))
    other_host = tmp_path / "clstock-elsewhere-9464.json"
    other_host.write_text(json.dumps([{"targets": [f"127.0.0.1:{dead_port}"], "labels": {}}]))
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "0")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR", str(tmp_path))
    reader = WorkerPrometheusMetricReader()
    try:
        assert sorted(tmp_path.glob("*.json")) == sorted(
            [files["live"], other_host, tmp_path / target_file_name(reader.port)])
    finally:
        reader.shutdown()
        live.close()
