"""Every patch of another package's private code, in one registry.

Each module here is one patch and defines ``PATCH``, an
:class:`~clstock_otel_distro.patches.registry.UpstreamPatch` (the distribution and
symbol it touches, the verified version range, its switch, shape check and undo);
:func:`~clstock_otel_distro.patches.registry.install` applies it when its module is
imported, and only when the installed upstream is the one it was written for.

The entries (``clstock-otel doctor`` lists them with their state):

- ``asgi_server_path``: the ASGI middleware's ``OpenTelemetryMiddleware.__call__``
- ``fastapi_route_cache``: the FastAPI instrumentation's ``_get_route_details``
- ``fastapi_native_telemetry``: FastAPI's own ``FastAPI.__call__`` (its native telemetry)
- ``otlp_attribute_cache``: the OTLP span encoder's ``_encode_attributes``
- ``otlp_http_durable``: the OTLP/HTTP client's ``export`` and ``shutdown``
- ``otlp_http_urllib3``: the OTLP/HTTP client's ``__init__`` (its transport), during the
  configurator's SDK call
- ``metric_records``: the SDK's ``Histogram.record``, ``Counter.add`` and ``UpDownCounter.add``
- ``resource_hash``: the SDK's ``Resource.__hash__``
- ``uvicorn_gc_freeze``: uvicorn's ``Server.startup``
- ``uvicorn_unresolved_targets``: uvicorn's ``Server.startup`` (the same wrapper as
  ``uvicorn_gc_freeze``: ``_uvicorn_startup``)
- ``uvicorn_signal_capture``: uvicorn's ``Server.capture_signals``
- ``system_metrics_fork``: the system-metrics instrumentor's ``_proc`` after a fork
- ``yfinance_thread_context``: yfinance's ``_download_one_threaded`` and ``_download_one``
- ``sdk_pipeline_provider``: the ``TracerProvider`` the SDK's configuration builds
"""

from __future__ import annotations

from clstock_otel_distro.patches import (
    asgi_server_path,
    fastapi_native_telemetry,
    fastapi_route_cache,
    metric_records,
    otlp_attribute_cache,
    otlp_http_durable,
    otlp_http_urllib3,
    resource_hash,
    sdk_pipeline_provider,
    system_metrics_fork,
    uvicorn_gc_freeze,
    uvicorn_signal_capture,
    uvicorn_unresolved_targets,
    yfinance_thread_context,
)
from clstock_otel_distro.patches.registry import UpstreamPatch

__all__ = ["ALL_PATCHES"]

ALL_PATCHES: tuple[UpstreamPatch, ...] = (
    fastapi_route_cache.PATCH,
    fastapi_native_telemetry.PATCH,
    asgi_server_path.PATCH,
    otlp_attribute_cache.PATCH,
    otlp_http_durable.PATCH,
    otlp_http_urllib3.PATCH,
    resource_hash.PATCH,
    metric_records.PATCH,
    uvicorn_gc_freeze.PATCH,
    uvicorn_unresolved_targets.PATCH,
    uvicorn_signal_capture.PATCH,
    system_metrics_fork.PATCH,
    yfinance_thread_context.PATCH,
    sdk_pipeline_provider.PATCH,
)
