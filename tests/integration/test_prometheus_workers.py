"""OTEL_METRICS_EXPORTER=prometheus under uvicorn --workers and gunicorn: each worker scraped.

Every process serves its own metrics on its own port (from OTEL_EXPORTER_PROMETHEUS_PORT
upward, or one the system picks), so the series of two workers never clash and every
request is counted exactly once across the targets; with
OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR each process announces its port in a
file_sd target file, removed at exit.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clstock_otel_distro.sdk.prometheus_workers import PORT_SPAN
from clstock_otel_distro.tools.devstack import ServiceProcess, free_port
from tests.conftest import APP_DIR
from tests.support.processes import GRACEFUL_EXIT_CODES, GunicornProcess

REQUESTS = 12
HEALTH_COUNT = "http_server_request_duration_seconds_count"


def _env(**extra: str) -> dict[str, str]:
    return {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_TRACES_EXPORTER": "none",
            "OTEL_PYTHON_LOG_LEVEL": "info", **extra}


def scrape(port: int) -> dict[str, list]:
    """Samples per metric family name from one target."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    families: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def pid_of(families: dict[str, list]) -> int:
    [info] = [s for samples in families.values() for s in samples if s.name == "target_info"]
    return int(info.labels["process_pid"])


def health_count(families: dict[str, list]) -> float:
    return sum(sample.value for samples in families.values() for sample in samples
               if sample.name == HEALTH_COUNT and sample.labels.get("http_route") == "/health")


def listening_ports(base: int) -> list[int]:
    """The ports from ``base`` upward that serve Prometheus metrics now."""
    ports = []
    for port in range(base, base + PORT_SPAN):
        try:
            scrape(port)
        except OSError:
            continue
        ports.append(port)
    return ports


def served_by_each(ports: list[int], api: ServiceProcess) -> dict[int, int]:
    """Send REQUESTS /health requests; the /health count they add on each port, by pid."""
    before = {port: health_count(scrape(port)) for port in ports}
    for _ in range(REQUESTS):
        assert requests.get(api.url + "/health", timeout=10).status_code == 200
    return {pid_of(scrape(port)): health_count(scrape(port)) - before[port] for port in ports}


def wait_for_files(directory: Path, count: int, timeout: float = 20.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(directory.glob("*.json"))
        if len(files) >= count:
            return files
        time.sleep(0.1)
    return sorted(directory.glob("*.json"))


@pytest.fixture
def started() -> Iterator[list[ServiceProcess]]:
    """Services a test starts; stopped at its end, whatever happened."""
    services: list[ServiceProcess] = []
    yield services
    for service in services:
        service.stop()


def test_uvicorn_workers_each_announced_and_scraped(started, tmp_path):
    """uvicorn --workers 2: a target file per serving process, each scraped as itself."""
    targets = tmp_path / "targets"
    # A generous health-check timeout: on a loaded machine uvicorn's supervisor would
    # otherwise kill and replace a worker still importing ClStock (the replacement
    # removes the killed one's stale file, but the test wants a steady set of targets).
    api = ServiceProcess("prom-uvicorn", "app.main:app", APP_DIR,
                         server_args=["--workers", "2", "--timeout-worker-healthcheck", "60"],
                         env=_env(OTEL_EXPORTER_PROMETHEUS_PORT="0",
                                  OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR=str(targets)),
                         log_path=tmp_path / "api.log")
    started.append(api.start())
    # The supervisor and its two workers (not multiprocessing's resource tracker).
    files = wait_for_files(targets, 3)
    time.sleep(0.5)
    assert len(list(targets.glob("*.json"))) == 3, api.log_tail()
    ports = []
    for file in files:
        [group] = json.loads(file.read_text())
        [target] = group["targets"]
        host, port = target.rsplit(":", 1)
        assert host == "localhost" and file.name.endswith(f"-{port}.json")
        ports.append(int(port))
    counted = served_by_each(ports, api)
    assert len(counted) == 3, "two targets answered as the same process"
    assert api.process.pid in counted  # the supervisor serves its own runtime metrics
    assert counted.pop(api.process.pid) == 0
    assert sum(counted.values()) == REQUESTS, counted
    for port in ports:
        assert "process_cpu_time_seconds_total" in {
            sample.name for samples in scrape(port).values() for sample in samples}
    assert api.stop() in GRACEFUL_EXIT_CODES
    assert list(targets.glob("*.json")) == [], "target files left after a clean exit"


# With --preload the master imports the app, and can be scraped, before it forks its
# workers: a worker forked after (or during) a scrape of its master still answers as
# itself (issue 14).
@pytest.mark.parametrize("preload", [False, True], ids=["fork", "preload"])
def test_gunicorn_workers_from_the_base_port(started, tmp_path, preload):
    """gunicorn -w 2: the master takes the base port, each forked worker the next free one."""
    base = free_port()
    api = GunicornProcess("prom-gunicorn", "app.main:app", APP_DIR,
                          env=_env(OTEL_EXPORTER_PROMETHEUS_PORT=str(base)),
                          server_args=["--preload"] if preload else [],
                          log_path=tmp_path / "api.log")
    started.append(api.start())
    deadline = time.monotonic() + 20
    ports = listening_ports(base)
    while len(ports) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        ports = listening_ports(base)
    assert len(ports) == 3 and ports[0] == base, (ports, api.log_tail())
    pids = {port: pid_of(scrape(port)) for port in ports}
    assert len(set(pids.values())) == 3, ("two ports answered as the same process",
                                          pids, api.process.pid)
    counted = served_by_each(ports, api)
    assert len(counted) == 3, "a worker answered with its master's metrics"
    assert pids[base] == api.process.pid
    assert counted.pop(api.process.pid) == 0  # the master serves no request
    assert sum(counted.values()) == REQUESTS, counted
    assert api.stop() in GRACEFUL_EXIT_CODES
