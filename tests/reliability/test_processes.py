"""Every worker process exports, as itself: uvicorn workers and reload, gunicorn with --preload.

ClStock is deployed under process managers that spawn or fork workers from a parent
that ``opentelemetry-instrument`` already configured. In each case every worker must
export its own spans (a live batch thread of its own) under a resource of its own
(``service.instance.id`` and ``process.pid``), and on SIGTERM each worker's last
spans must be delivered. gunicorn's UvicornWorker resets SIGTERM to its default
action before uvicorn runs, which upstream lets kill the worker with its queue.
With ``--preload`` the SDK is configured in the master before the fork: the SDK's
fork hooks give each child a new batch thread and re-detect the process resource
(service.instance.id included).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import requests

from clstock_otel_distro.tools.devstack import ServiceProcess
from tests.conftest import APP_DIR
from tests.integration.conftest import otlp_env
from tests.reliability.conftest import spans_of, traceparent, wait_for_traces
from tests.support.processes import GRACEFUL_EXIT_CODES, GunicornProcess


def _server_spans(receiver, service: str):
    return [s for s in receiver.spans() if s.service_name == service and s.kind == "SERVER"]


def _get_concurrently(url: str, count: int, threads: int = 8) -> list[str]:
    """``count`` GETs of /health on fresh connections from ``threads`` threads; trace ids."""
    trace_ids: list[str] = []
    lock = threading.Lock()
    failures: list[object] = []

    def client(share: int) -> None:
        for _ in range(share):
            trace_id, headers = traceparent()
            try:
                answer = requests.get(url + "/health", timeout=30,
                                      headers={**headers, "Connection": "close"})
            except requests.RequestException as error:
                failures.append(error)
                continue
            if answer.status_code != 200:
                failures.append(answer.status_code)
            with lock:
                trace_ids.append(trace_id)

    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    workers = [threading.Thread(target=client, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert failures == []
    return trace_ids


def _workers_seen(receiver, service: str) -> dict[int, set[str]]:
    """process.pid -> the service.instance.ids seen with it, among SERVER spans."""
    seen: dict[int, set[str]] = {}
    for span in _server_spans(receiver, service):
        seen.setdefault(span.resource["process.pid"], set()).add(
            span.resource["service.instance.id"])
    return seen


def assert_each_worker_exports(receiver, service: ServiceProcess, name: str, workers: int
                               ) -> dict[int, set[str]]:
    """Traffic until ``workers`` worker processes exported live; each has its own instance id."""
    deadline = time.monotonic() + 30
    seen: dict[int, set[str]] = {}
    while len(seen) < workers and time.monotonic() < deadline:  # bounded: ~30 s at most
        _get_concurrently(service.url, 16)
        time.sleep(0.3)
        seen = _workers_seen(receiver, name)
    assert len(seen) == workers, f"spans from worker pids {sorted(seen)}"
    assert service.process.pid not in seen, "spans under the parent's pid"
    assert all(len(ids) == 1 for ids in seen.values()), seen
    instance_ids = set().union(*seen.values())
    assert len(instance_ids) == workers, "workers share a service.instance.id"
    return seen


def assert_last_spans_delivered_on_sigterm(receiver, service: ServiceProcess) -> None:
    """Requests sent right before SIGTERM: every one's spans arrive (each worker flushed)."""
    last = _get_concurrently(service.url, 24)
    assert service.stop() in GRACEFUL_EXIT_CODES, service.log_tail()
    spans = wait_for_traces(receiver, last, timeout=5)
    assert {s.trace_id for s in spans if s.kind == "SERVER"} == set(last)


def _env(receiver, name: str) -> dict[str, str]:
    # The distro's 1 s batch delay: spans of the final requests are still queued at SIGTERM.
    env = {**otlp_env(receiver), "OTEL_SERVICE_NAME": name}
    env.pop("OTEL_BSP_SCHEDULE_DELAY")
    return env


def test_uvicorn_workers(receiver, start):
    """uvicorn --workers 2: both spawned workers export, each its own instance, and flush."""
    name = "clstock-uvicorn-workers"
    api = start(ServiceProcess("uvicorn-workers", "app.main:app", APP_DIR,
                               env=_env(receiver, name), server_args=["--workers", "2"]))
    assert_each_worker_exports(receiver, api, name, 2)
    assert_last_spans_delivered_on_sigterm(receiver, api)


def test_uvicorn_reload(receiver, start, tmp_path: Path):
    """uvicorn --reload: the worker exports; after a reload the new worker is a new instance."""
    name = "clstock-uvicorn-reload"
    watched = tmp_path / "watched"
    watched.mkdir()
    trigger = watched / "trigger.py"
    trigger.write_text("VERSION = 1\n")
    api = start(ServiceProcess("uvicorn-reload", "app.main:app", APP_DIR,
                               env=_env(receiver, name),
                               server_args=["--reload", "--reload-dir", str(watched)]))
    (first_pid, first_ids), = assert_each_worker_exports(receiver, api, name, 1).items()

    before = _get_concurrently(api.url, 8)
    time.sleep(0.5)  # past the reloader's first scan (it polls every 0.25 s)
    trigger.write_text("VERSION = 2\n")
    deadline = time.monotonic() + 30
    while len(_workers_seen(receiver, name)) < 2 and time.monotonic() < deadline:
        _get_concurrently(api.url, 4)
        time.sleep(0.3)
    seen = _workers_seen(receiver, name)
    assert len(seen) == 2, f"no new worker after the reload: {seen}"
    (second_pid, second_ids), = ((p, i) for p, i in seen.items() if p != first_pid)
    assert second_ids.isdisjoint(first_ids)
    # The replaced worker was SIGTERMed by the reloader and flushed on its way out.
    assert {s.trace_id for s in spans_of(receiver, before) if s.kind == "SERVER"} == set(before)
    assert second_pid != api.process.pid
    assert_last_spans_delivered_on_sigterm(receiver, api)


def test_gunicorn_uvicorn_workers(receiver, start):
    """gunicorn -k UvicornWorker -w 2: both forked workers export and flush on SIGTERM."""
    name = "clstock-gunicorn"
    api = start(GunicornProcess("gunicorn", "app.main:app", APP_DIR, env=_env(receiver, name)))
    assert_each_worker_exports(receiver, api, name, 2)
    assert_last_spans_delivered_on_sigterm(receiver, api)


def test_gunicorn_preload(receiver, start):
    """gunicorn --preload: the SDK configured before the fork is renewed in each worker."""
    name = "clstock-gunicorn-preload"
    api = start(GunicornProcess("gunicorn-preload", "app.main:app", APP_DIR,
                                env=_env(receiver, name), server_args=["--preload"]))
    assert_each_worker_exports(receiver, api, name, 2)
    assert_last_spans_delivered_on_sigterm(receiver, api)
