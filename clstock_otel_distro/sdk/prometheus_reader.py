"""The Prometheus reader that serves each worker process on its own port.

See :mod:`clstock_otel_distro.sdk.prometheus_workers` for why and how; this module
needs the ``prometheus`` extra (opentelemetry-exporter-prometheus).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_PROMETHEUS_HOST,
    OTEL_EXPORTER_PROMETHEUS_PORT,
)
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric

from clstock_otel_distro import config as _config
from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR
from clstock_otel_distro.sdk.prometheus_workers import DEFAULT_HOST, port_range

__all__ = ["WorkerPrometheusMetricReader", "target_file_name"]

_logger = logging.getLogger(__name__)

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
# multiprocessing's helper processes (uvicorn --workers starts a resource tracker)
# inherit the instrumented environment but serve no request: no port for them.
_HELPER_MODULES = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
_TARGET_FILE_PREFIX = "clstock"
# A listening port on this host accepts at once; a dead one refuses at once.
_PROBE_TIMEOUT_S = 0.5
# How long a fork waits for a scrape in progress (the SDK's own collect timeout is 10 s).
_FORK_WAIT_S = 10.0


def _is_helper_process() -> bool:
    command = " ".join(getattr(sys, "orig_argv", ()))
    return any(module in command for module in _HELPER_MODULES)


def target_file_name(port: int | str) -> str:
    """The name of this host's file_sd target file for ``port`` (``"*"``: a glob of all)."""
    return f"{_TARGET_FILE_PREFIX}-{socket.gethostname()}-{port}.json"


class _ForkSafeRegistry(CollectorRegistry):
    """A registry whose collections never overlap a fork of the process."""

    # A collection holds the SDK's locks (the measurement consumer's among them); a
    # child forked while a scrape thread holds one inherits it held, by a thread the
    # child does not have, and every scrape of the child then waits on it for ever
    # (and so would any observable instrument it creates). The SDK (1.45) renews only
    # the MeterProvider's own locks after a fork (opentelemetry-python issue 4345).
    # So the reader holds ``collecting`` across each fork, and a collection holds it
    # while it gathers (not while the page is written out).

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self.collecting = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.collecting:
            metrics = list(super().collect())
        return iter(metrics)

    def restricted_registry(self, names: Iterable[str]) -> Any:
        # ?name[]=... scrapes collect through a view that bypasses collect() above.
        return _Guarded(super().restricted_registry(names), self.collecting)


class _Guarded:
    """A restricted view of a :class:`_ForkSafeRegistry`, collected under its lock."""

    def __init__(self, view: Any, lock: threading.Lock) -> None:
        self._view, self._lock = view, lock

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            metrics = list(self._view.collect())
        return iter(metrics)


class WorkerPrometheusMetricReader(PrometheusMetricReader):
    """A Prometheus reader that serves each process, worker or forked child, on its own port."""

    def __init__(self) -> None:
        # A registry of its own (not the process-wide default): the page holds only
        # OpenTelemetry's metrics. Kept here, not read back from upstream's private field.
        self._metrics_registry = _ForkSafeRegistry()
        super().__init__(registry=self._metrics_registry)
        self._lock = threading.Lock()
        self._server: Any = None
        self._server_pid: int | None = None
        self._target_file: Path | None = None
        self._held_for_fork = False
        self.port: int | None = None
        self._serve()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._hold_collections,
                                after_in_parent=self._release_collections,
                                after_in_child=self._serve_in_child)

    # ------------------------------------------------------------------ serving

    def _serve(self) -> None:
        if _is_helper_process():
            return
        host = _config.env_str(OTEL_EXPORTER_PROMETHEUS_HOST, DEFAULT_HOST) or DEFAULT_HOST
        ports = port_range()
        for port in ports:
            try:
                server, _thread = start_http_server(port, addr=host,
                                                    registry=self._metrics_registry)
            except OSError:
                continue  # taken: by another worker, the supervisor, or anything else
            self._server, self._server_pid = server, os.getpid()
            self.port = server.server_address[1]
            self._write_target(host)
            return
        self.port = None
        _logger.warning(
            "No free port for the Prometheus metrics of process %d among %s=%d to %d on %s; "
            "its metrics are not served",
            os.getpid(), OTEL_EXPORTER_PROMETHEUS_PORT, ports.start, ports.stop - 1, host,
        )

    def _hold_collections(self) -> None:
        # Before a fork, in the parent: wait for a scrape in progress to finish, and
        # start no other until the fork is done (see _ForkSafeRegistry).
        self._held_for_fork = self._metrics_registry.collecting.acquire(timeout=_FORK_WAIT_S)
        if not self._held_for_fork:
            _logger.warning("Process %d forks during a Prometheus scrape that has run "
                            "for %.0f s; the child's metrics page may not answer",
                            os.getpid(), _FORK_WAIT_S)

    def _release_collections(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._metrics_registry.collecting.release()

    def _serve_in_child(self) -> None:
        # The server thread did not survive the fork; the listening socket did, and
        # still belongs to the parent's server.
        try:
            self._metrics_registry.collecting = threading.Lock()
            self._held_for_fork = False
            if self._server is not None:
                with contextlib.suppress(OSError):
                    self._server.socket.close()
                self._server = None
            self._target_file = None
            self._lock = threading.Lock()
            self._serve()
        except Exception as exc:  # a fork must never fail because of metrics
            _logger.warning("Prometheus metrics not served in process %d (%s: %s)",
                            os.getpid(), type(exc).__name__, exc)

    # ------------------------------------------------------------ exposition

    def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000,
                         **kwargs: Any) -> None:
        # Upstream builds target_info once, from the resource of the first scrape,
        # and keeps it for the reader's life; a forked child inherits it with the rest
        # of the reader. A master scraped before it forks (under gunicorn --preload the
        # master imports the app, and is scraped, before it forks; any master is
        # scraped before it replaces a worker) would have every worker it forks after
        # that answer with the master's process.pid, for good. So target_info is built
        # again at every scrape, from that scrape's resource: the MeterProvider's,
        # which follows the fork (process.pid is re-detected in the child). The reset
        # is of upstream's private cache; tests/distro/test_prometheus_workers.py
        # fails if it stops taking effect.
        self._collector._target_info = None
        super()._receive_metrics(metrics_data, timeout_millis=timeout_millis, **kwargs)

    # ------------------------------------------------------------- discovery

    def _write_target(self, host: str) -> None:
        directory = _config.env_str(OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR)
        if directory is None or self.port is None:
            return
        target_host = socket.gethostname() if host in _WILDCARD_HOSTS else host
        if ":" in target_host:  # an IPv6 address
            target_host = f"[{target_host}]"
        target = f"{target_host}:{self.port}"
        path = Path(directory) / target_file_name(self.port)
        content = json.dumps([{"targets": [target], "labels": {}}])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written whole, then renamed: Prometheus may read the directory at any time.
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(handle, "w") as file:
                file.write(content)
            os.replace(temporary, path)
        except OSError as exc:
            _logger.warning("%s=%r: cannot write the Prometheus target file %s (%s)",
                            OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR, directory, path, exc)
            return
        self._target_file = path
        self._remove_stale_targets(path.parent)

    def _remove_stale_targets(self, directory: Path) -> None:
        """Remove this host's target files whose port no longer answers.

        A process killed without a chance to clean up (SIGKILL, the OOM killer,
        uvicorn's supervisor killing a worker that missed its health check) leaves
        its file behind; the next process to start on this host removes it. Files of
        other hosts sharing the directory are left alone.
        """
        for path in directory.glob(target_file_name("*")):
            if path == self._target_file:
                continue
            try:
                [group] = json.loads(path.read_text())
                [target] = group["targets"]
                host, _, port = target.rpartition(":")
                host = host.strip("[]")
                with socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT_S):
                    continue  # alive
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    path.unlink()
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable, or unreachable right now: not ours to judge

    def _remove_target(self) -> None:
        if self._target_file is not None:
            with contextlib.suppress(OSError):
                self._target_file.unlink()
            self._target_file = None

    # -------------------------------------------------------------- shutdown

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with self._lock:
            # The file goes first: once the port is free another process may take it
            # and write its own file of the same name.
            self._remove_target()
            server, self._server = self._server, None
            if server is not None and self._server_pid == os.getpid():
                server.shutdown()
                server.server_close()
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
