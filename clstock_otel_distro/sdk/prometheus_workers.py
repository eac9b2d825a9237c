"""``OTEL_METRICS_EXPORTER=prometheus`` for every process of a multi-worker server.

Upstream's reader (the ``prometheus`` entry point of opentelemetry-exporter-prometheus)
starts one HTTP server on ``OTEL_EXPORTER_PROMETHEUS_PORT`` (9464) when the SDK is
configured. Under a process manager that is not enough:

- ``uvicorn --workers N`` spawns fresh interpreters, and each configures the SDK: the
  supervisor binds 9464 first, then every worker's bind fails ("address in use"),
  which fails its SDK configuration. Nothing serves the workers' metrics.
- gunicorn configures the SDK in the master, then forks: the workers inherit the
  reader but not its server thread, so 9464 answers with the master's metrics only,
  which served no request.

:class:`~clstock_otel_distro.sdk.prometheus_reader.WorkerPrometheusMetricReader`
replaces it (the configurator substitutes it for
``prometheus``, under the entry point name ``clstock_prometheus``). Each process
serves its own metrics on the first free port from ``OTEL_EXPORTER_PROMETHEUS_PORT``
upward (at most :data:`PORT_SPAN` ports; ``0``: a port the system picks), a forked
child closes the server it inherited and binds its own, and with
``OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR`` set each process writes a Prometheus
``file_sd`` target file there, removed when the process shuts its telemetry down (the
file of a killed process, by the next process to start on that host), so Prometheus
scrapes exactly the live processes. The first process to start (a
supervisor or master) takes the base port and serves its own runtime metrics.

Each reader has its own registry: the exposition holds OpenTelemetry's metrics only,
not prometheus_client's default process and GC collectors (the runtime metrics
cover those under their semantic-convention names).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_PROMETHEUS_PORT

from clstock_otel_distro import config as _config

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "PORT_SPAN",
    "READER_NAME",
    "UPSTREAM_NAME",
    "exporter_names_for_sdk",
    "plan_reader",
    "port_range",
]

UPSTREAM_NAME = "prometheus"
READER_NAME = "clstock_prometheus"
# The spec's defaults for the Prometheus exporter.
DEFAULT_PORT = 9464
DEFAULT_HOST = "localhost"
# Ports tried from the base port: more workers than this on one host is a typo.
PORT_SPAN = 64
_MAX_PORT = 65535


def exporter_names_for_sdk(value: str | None) -> str | None:
    """``OTEL_METRICS_EXPORTER`` as the SDK must read it: ``prometheus`` becomes ours.

    Returns None when there is nothing to replace.
    """
    if value is None:
        return None
    names = [name.strip().lower() for name in value.split(",")]
    if UPSTREAM_NAME not in names:
        return None
    return ",".join(READER_NAME if name == UPSTREAM_NAME else name for name in names)


def plan_reader(plan: Any) -> None:
    """Configurator hook: have the SDK build our reader wherever it would build upstream's.

    ``plan`` is the configurator's plan: ``exporters`` per signal and
    ``scoped_environ``, the variables as the SDK call will see them.
    """
    readers = plan.exporters.get("metrics", {})
    if UPSTREAM_NAME not in readers:
        return  # not asked for, or the prometheus extra is not installed
    # Imported only now: it needs the prometheus extra.
    from clstock_otel_distro.sdk.prometheus_reader import WorkerPrometheusMetricReader

    current = plan.scoped_environ.get(OTEL_METRICS_EXPORTER, _config.env_str(OTEL_METRICS_EXPORTER))
    replaced = exporter_names_for_sdk(current)
    if replaced is not None:
        plan.scoped_environ[OTEL_METRICS_EXPORTER] = replaced
        del readers[UPSTREAM_NAME]
        readers[READER_NAME] = WorkerPrometheusMetricReader


def port_range() -> range:
    """The ports a process tries, in order: from OTEL_EXPORTER_PROMETHEUS_PORT upward."""
    base = _config.env_int(OTEL_EXPORTER_PROMETHEUS_PORT, DEFAULT_PORT, minimum=0,
                           maximum=_MAX_PORT)
    base = DEFAULT_PORT if base is None else base
    return range(0, 1) if base == 0 else range(base, min(base + PORT_SPAN, _MAX_PORT + 1))
