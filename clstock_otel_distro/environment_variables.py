"""Every environment variable clstock-otel-distro defines, with its default.

Standard ``OTEL_*`` variables keep their spec meaning and are not repeated here.
Ours follow upstream's ``OTEL_PYTHON_<TARGET>_*`` naming. The module is registered
as an ``opentelemetry_environment_variables`` entry point, so ``opentelemetry-instrument``
also accepts each one as a flag (``OTEL_PYTHON_CLSTOCK_TRACE_METHODS`` ->
``--clstock_trace_methods``). Only the variable names start with ``OTEL_``; the
defaults are ``DEFAULT_*`` constants so they do not become flags. Values are read
through :mod:`clstock_otel_distro.config`.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CLSTOCK_CODE_ATTRIBUTES",
    "DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS",
    "DEFAULT_CLSTOCK_PREDICTOR_TARGETS",
    "DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT",
    "DEFAULT_CLSTOCK_SPAN_PIPELINE",
    "DEFAULT_CLSTOCK_TRACE_METHODS",
    "DEFAULT_CURL_CFFI_EXCLUDED_URLS",
    "OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS",
    "OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES",
    "OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS",
    "OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS",
    "OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE",
    "OTEL_PYTHON_CLSTOCK_GC_FREEZE",
    "OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE",
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS",
    "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT",
    "OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE",
    "OTEL_PYTHON_CLSTOCK_TRACE_METHODS",
    "OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS",
]

DEFAULT_CLSTOCK_PREDICTOR_TARGETS = (
    "models.predictor:StockPredictor,"
    "models.core.interfaces:StockPredictor,"
    "models.base.interfaces:StockPredictor,"
    "models.legacy_core:StockPredictor"
)
DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS = (
    "data.stock_data:StockDataProvider,data.async_stock_data:AsyncStockDataProvider"
)
DEFAULT_CLSTOCK_TRACE_METHODS = ""
DEFAULT_CURL_CFFI_EXCLUDED_URLS = ""

OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS = "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS

Comma-separated ``module:Class`` list of the predictor base classes to trace. The
methods of each class, and of every subclass (present or defined later), get a
span named ``Class.method``. Malformed entries are skipped with a warning.

**Default value:** ``models.predictor:StockPredictor,models.core.interfaces:StockPredictor,
models.base.interfaces:StockPredictor,models.legacy_core:StockPredictor``
"""

OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS = "OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS

Comma-separated ``module:Class`` list of the market-data provider classes to trace,
sync and async, subclasses included. Malformed entries are skipped with a warning.

**Default value:** ``data.stock_data:StockDataProvider,
data.async_stock_data:AsyncStockDataProvider``
"""

OTEL_PYTHON_CLSTOCK_TRACE_METHODS = "OTEL_PYTHON_CLSTOCK_TRACE_METHODS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_TRACE_METHODS

Extra callables to trace, comma-separated, each ``module:Class.method`` or
``module:function``. Each is wrapped when its module is imported; malformed
entries are skipped with a warning.

**Default value:** empty (nothing extra is traced)
"""

OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS = "OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS"
"""
.. envvar:: OTEL_PYTHON_CURL_CFFI_EXCLUDED_URLS

Comma-separated URL patterns (regular expressions searched in the URL, as for the
upstream ``OTEL_PYTHON_REQUESTS_EXCLUDED_URLS``) for which the curl_cffi
instrumentation creates no client span.

**Default value:** empty (every request is traced)
"""

DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT = 1000

OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT = "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT

Milliseconds an exiting process spends, at most, handing its queued spans, metrics
and logs to the exporters and shutting them down, whether it was terminated by
SIGTERM or exits normally. The providers are shut down in parallel; whatever is not
delivered by then (the collector is down or does not answer) is given up, so the
process exits on time instead of waiting out the exporters' retries (8 to 15 s).
A process left at the default SIGTERM action would otherwise die without flushing
(uvicorn re-raises SIGTERM after its graceful shutdown).

**Default value:** ``1000``
"""

OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS = "OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS

``true`` brings back the FastAPI/ASGI middleware's internal ``http send`` and
``http receive`` spans, which the distro leaves out by default (they repeat the
server span's information at a cost on every request).

**Default value:** ``false``
"""

OTEL_PYTHON_CLSTOCK_GC_FREEZE = "OTEL_PYTHON_CLSTOCK_GC_FREEZE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_GC_FREEZE

``true`` calls ``gc.freeze()`` once uvicorn has started (the application imported,
its lifespan run, no request served yet), in every worker: the objects alive then
leave the garbage collector's generations, so the full collections that queued
spans provoke no longer walk the whole start-up heap (pauses of 90-105 ms down to a
few ms on ClStock). A reference cycle among those objects that becomes garbage later
is not reclaimed. ``false`` leaves the collector alone.

**Default value:** ``true``
"""

DEFAULT_CLSTOCK_CODE_ATTRIBUTES = "all"

OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES = "OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES

The source-location attributes on ClStock's spans (predictor, data provider,
yfinance, traced methods): ``all`` (``code.function.name``, ``code.file.path``,
``code.line.number``), ``function`` (``code.function.name`` only) or ``none``.
The file path and line number are about a third of the cost of exporting one of
these spans (about 12 µs of 41 on a 2-core machine).

**Default value:** ``all``
"""

OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS = "OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS

``true`` keeps the duration of a call whose span is not recorded (a trace the
sampler dropped) in a small buffer and hands it to the duration histogram when the
metric reader collects, with the same attributes and in the same interval, instead
of on the call's thread (about 1 µs per call instead of 8). ``false`` records
each at once.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE = "OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE

``true`` remembers, per request path and method, the route template the FastAPI
instrumentation names server spans after, instead of matching every route of the
app again on each request (about 80 µs per request on a 2-core machine). Apps with
``Host`` routes or route classes of their own are always looked up in full.
``false`` looks every request up as upstream does.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE = "OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE

``true`` keeps the OTLP encoding of span attributes whose value repeats (a string,
integer or boolean seen before: method, route, address, symbol...) and reuses it,
instead of building every attribute of every exported span anew (the bytes sent
are the same; encoding a FastAPI server span takes about 40% less CPU). At most 4096
are kept. ``false`` encodes each time, as the SDK does.

**Default value:** ``true``
"""

DEFAULT_CLSTOCK_SPAN_PIPELINE = "fast"

OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE = "OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE

``fast`` makes recording spans the distro's own (:mod:`clstock_otel_distro.sdk.pipeline`):
the OpenTelemetry API and the SDK's sampler, span limits, resource and redaction
unchanged, the same OTLP on the wire, at a fraction of the SDK's cost per span. It
applies when traces go to the OTLP/HTTP (protobuf) exporter; with any other exporter,
or once a span processor of another kind is added, the process uses the SDK's spans
(one log line says so). ``sdk`` uses the SDK's own spans and batch processor.

**Default value:** ``fast``
"""
