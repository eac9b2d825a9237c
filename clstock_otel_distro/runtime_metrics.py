"""Runtime metrics: the process's CPU, memory, threads, file descriptors and CPython GC.

They come from ``opentelemetry-instrumentation-system-metrics`` (entry point
``system_metrics``), which the distro loads like any other instrumentation, with a
default set of its own: upstream's default also reports the whole host (CPU, memory,
swap, disks, network, every socket on the machine), which is the collector's or a
node exporter's job and costs a walk of every connection at each collection.

Every one of these instruments is observable: its callback reads ``/proc`` or
``gc.get_stats()`` when the metric reader collects (every
``OTEL_METRIC_EXPORT_INTERVAL`` ms, or at each Prometheus scrape), never while a
request is served. ``OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS`` (the
instrumentation's own glob patterns) still removes metrics from our set, and
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=system_metrics`` turns them all off.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from typing import Any

from clstock_otel_distro import config as _config
from clstock_otel_distro.patches import registry, system_metrics_fork

__all__ = [
    "DEFAULT_RUNTIME_METRICS",
    "ENTRY_POINT_NAME",
    "instrument_runtime_metrics",
    "runtime_metrics_config",
]

_logger = logging.getLogger(__name__)

ENTRY_POINT_NAME = "system_metrics"
# The instrumentation's own variable (upstream keeps the name in its package too).
OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS = "OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS"

# Metric name -> the attribute values reported (None: one series), in the
# instrumentation's config format. Each is one cheap read per collection; the
# process.runtime.* names are upstream's deprecated duplicates of these.
DEFAULT_RUNTIME_METRICS: Mapping[str, tuple[str, ...] | None] = {
    "process.cpu.time": ("user", "system"),
    "process.cpu.utilization": None,
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.thread.count": None,
    "process.open_file_descriptor.count": None,
    "cpython.gc.collections": None,
    "cpython.gc.collected_objects": None,
    "cpython.gc.uncollectable_objects": None,
}

def runtime_metrics_config() -> dict[str, list[str] | None]:
    """Our default set, less what ``OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS`` excludes."""
    excluded = _config.env_list(OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS)
    return {
        name: None if labels is None else list(labels)
        for name, labels in DEFAULT_RUNTIME_METRICS.items()
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in excluded)
    }


def instrument_runtime_metrics(instrumentor_class: type, **kwargs: Any) -> Any:
    """Instrument with our default set unless the caller passed a ``config`` of its own.

    Returns the instrumentor. ``kwargs`` are ``instrument()``'s (``meter_provider``...).
    """
    config = kwargs.pop("config", None)
    instrumentor = instrumentor_class(config=runtime_metrics_config() if config is None else config)
    # A forked worker's metrics must read the worker's own process.
    registry.install(system_metrics_fork.PATCH)
    instrumentor.instrument(**kwargs)
    return instrumentor
