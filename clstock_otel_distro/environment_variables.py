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
    "DEFAULT_CLSTOCK_ASGI_FAST_PATH",
    "DEFAULT_CLSTOCK_ASGI_INTERNAL_SPANS",
    "DEFAULT_CLSTOCK_CLICK_IN_SERVERS",
    "DEFAULT_CLSTOCK_CODE_ATTRIBUTES",
    "DEFAULT_CLSTOCK_DATA_PROVIDER_TARGETS",
    "DEFAULT_CLSTOCK_DEFER_UNSAMPLED_DURATIONS",
    "DEFAULT_CLSTOCK_DURABLE_EXPORT",
    "DEFAULT_CLSTOCK_FASTAPI_NATIVE_BYPASS",
    "DEFAULT_CLSTOCK_FASTAPI_ROUTE_CACHE",
    "DEFAULT_CLSTOCK_GC_FREEZE",
    "DEFAULT_CLSTOCK_METRIC_RECORD_CACHE",
    "DEFAULT_CLSTOCK_OTLP_ATTRIBUTE_CACHE",
    "DEFAULT_CLSTOCK_OTLP_URLLIB3",
    "DEFAULT_CLSTOCK_PREDICTOR_TARGETS",
    "DEFAULT_CLSTOCK_RESOURCE_HASH_CACHE",
    "DEFAULT_CLSTOCK_RETRY_BUFFER_BYTES",
    "DEFAULT_CLSTOCK_RETRY_INITIAL_INTERVAL",
    "DEFAULT_CLSTOCK_RETRY_MAX_INTERVAL",
    "DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT",
    "DEFAULT_CLSTOCK_SPAN_PIPELINE",
    "DEFAULT_CLSTOCK_SPOOL_MAX_BYTES",
    "DEFAULT_CLSTOCK_SQLITE3_SPANS",
    "DEFAULT_CLSTOCK_TRACE_METHODS",
    "OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH",
    "OTEL_PYTHON_CLSTOCK_ASGI_INTERNAL_SPANS",
    "OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS",
    "OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES",
    "OTEL_PYTHON_CLSTOCK_DATA_PROVIDER_TARGETS",
    "OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS",
    "OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT",
    "OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS",
    "OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE",
    "OTEL_PYTHON_CLSTOCK_GC_FREEZE",
    "OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE",
    "OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE",
    "OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3",
    "OTEL_PYTHON_CLSTOCK_PREDICTOR_TARGETS",
    "OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR",
    "OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE",
    "OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES",
    "OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL",
    "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT",
    "OTEL_PYTHON_CLSTOCK_SPAN_PIPELINE",
    "OTEL_PYTHON_CLSTOCK_SPOOL_DIR",
    "OTEL_PYTHON_CLSTOCK_SPOOL_MAX_BYTES",
    "OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS",
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
DEFAULT_CLSTOCK_SHUTDOWN_TIMEOUT = 1000
DEFAULT_CLSTOCK_CODE_ATTRIBUTES = "all"
DEFAULT_CLSTOCK_ASGI_INTERNAL_SPANS = False
DEFAULT_CLSTOCK_GC_FREEZE = True
DEFAULT_CLSTOCK_DEFER_UNSAMPLED_DURATIONS = True
DEFAULT_CLSTOCK_FASTAPI_ROUTE_CACHE = True
DEFAULT_CLSTOCK_FASTAPI_NATIVE_BYPASS = True
DEFAULT_CLSTOCK_ASGI_FAST_PATH = True
DEFAULT_CLSTOCK_OTLP_ATTRIBUTE_CACHE = True
DEFAULT_CLSTOCK_RESOURCE_HASH_CACHE = True
DEFAULT_CLSTOCK_METRIC_RECORD_CACHE = True
DEFAULT_CLSTOCK_CLICK_IN_SERVERS = False
DEFAULT_CLSTOCK_SQLITE3_SPANS = False
DEFAULT_CLSTOCK_SPAN_PIPELINE = "fast"
DEFAULT_CLSTOCK_DURABLE_EXPORT = True
DEFAULT_CLSTOCK_OTLP_URLLIB3 = True
DEFAULT_CLSTOCK_RETRY_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_CLSTOCK_RETRY_INITIAL_INTERVAL = 5000
DEFAULT_CLSTOCK_RETRY_MAX_INTERVAL = 30000
DEFAULT_CLSTOCK_SPOOL_MAX_BYTES = 256 * 1024 * 1024

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

OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT = "OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT

Milliseconds an exiting process spends, at most, handing its queued spans, metrics
and logs to the exporters and shutting them down, whether it was terminated by
SIGTERM or exits normally. The providers are shut down in parallel; whatever is not
delivered by then (the collector is down or does not answer) is given up, so the
process exits on time instead of waiting out the exporters' retries. Batches kept
for an absent collector get one more try, and with ``OTEL_PYTHON_CLSTOCK_SPOOL_DIR``
what is still waiting is written there in the last fifth of this budget.
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
spans provoke no longer walk the whole start-up heap (bench/gc_pauses.py measures
the pauses with and without it). A reference cycle among those objects that becomes garbage later
is not reclaimed. ``false`` leaves the collector alone.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES = "OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_CODE_ATTRIBUTES

The source-location attributes on ClStock's spans (predictor, data provider,
yfinance, traced methods): ``all`` (``code.function.name``, ``code.file.path``,
``code.line.number``), ``function`` (``code.function.name`` only) or ``none``.
The file path and line number are a large part of the cost of exporting one of
these spans (bench/encoding.py).

**Default value:** ``all``
"""

OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS = "OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_DEFER_UNSAMPLED_DURATIONS

``true`` keeps the duration of a call whose span is not recorded (a trace the
sampler dropped) in a small buffer and hands it to the duration histogram when the
metric reader collects, with the same attributes and in the same interval, instead
of on the call's thread, at a fraction of the cost on the call's path
(bench/per_call.py). ``false`` records each at once.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE = "OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_FASTAPI_ROUTE_CACHE

``true`` remembers, per request path and method, the route template the FastAPI
instrumentation names server spans after, instead of matching every route of the
app again on each request. Apps with
``Host`` routes or route classes of their own are always looked up in full.
``false`` looks every request up as upstream does.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS = "OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_FASTAPI_NATIVE_BYPASS

``true`` sends each request of a FastAPI app whose middleware stack holds the
contrib FastAPI instrumentation's middleware straight to the application, skipping
FastAPI's own telemetry checks (is a provider configured, is the contrib middleware
in the stack), which FastAPI makes on every request only to stand down and record
nothing. The answer is worked out once per built stack. Apps without the contrib
middleware (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi``), or with an
``exclude`` in their telemetry settings, keep FastAPI's own path and its native
spans. ``false`` leaves FastAPI's ``__call__`` as it is.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH = "OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_ASGI_FAST_PATH

``true`` serves each HTTP request through the ASGI middleware the FastAPI
instrumentation installs with its work done once (headers decoded once, attributes
set once, metric attributes filtered once): the same spans and metrics as
upstream's middleware, at a fraction of its cost. Middlewares it cannot reproduce
exactly (old or duplicated HTTP semantic conventions, request/response hooks, header
capture, internal ``http send``/``http receive`` spans, websocket requests) keep
upstream's code. ``false`` leaves upstream's middleware as it is.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE = "OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_OTLP_ATTRIBUTE_CACHE

``true`` keeps the OTLP encoding of span attributes whose value repeats (a string,
integer or boolean seen before: method, route, address, symbol...) and reuses it,
instead of building every attribute of every exported span anew (the bytes sent
are the same; bench/encoding.py measures the saving). At most 4096 are kept.
``false`` encodes each time, as the SDK does.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE = "OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_METRIC_RECORD_CACHE

``true`` records a histogram, counter or up-down counter measurement whose attributes
are plain strings and integers straight into the aggregations the SDK resolved for
those attributes the first time (one table per instrument), instead of building,
cleaning, copying and hashing them again for every measurement. The exported metrics
are the SDK's. ``false`` records every measurement the SDK's way.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE = "OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_RESOURCE_HASH_CACHE

``true`` computes the hash of each SDK ``Resource`` once and keeps it (the SDK
JSON-encodes the resource's attributes on every hash, and the OTLP encoders hash
the resource of every exported span). ``false`` leaves ``Resource.__hash__`` as the
SDK has it.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS = "OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_CLICK_IN_SERVERS

``true`` loads the click instrumentation (installed by ``opentelemetry-bootstrap``)
in server processes too (uvicorn, gunicorn, hypercorn, daphne, granian). Left out
by default there: uvicorn's command line is a click command, whose span would last
as long as the server and become the parent of every request, so requests would no
longer be SERVER spans continuing their caller's trace. Click commands that are not
servers keep their spans either way.

**Default value:** ``false``
"""

OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS = "OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_SQLITE3_SPANS

``true`` loads the sqlite3 instrumentation (installed by ``opentelemetry-bootstrap``).
Left out by default: ClStock uses no database, and yfinance's timezone and cookie
caches in SQLite would add dozens of CLIENT spans to each recommendation. The
distro's default ``OTEL_SEMCONV_STABILITY_OPT_IN`` (``http,database``) gives these
spans the current database semantic conventions.

**Default value:** ``false``
"""

OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR = "OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_PROMETHEUS_TARGETS_DIR

With ``OTEL_METRICS_EXPORTER=prometheus``, a directory where each process (every
worker of ``uvicorn --workers`` or gunicorn, and their supervisor) writes a Prometheus
``file_sd`` target file, ``clstock-<hostname>-<port>.json``, naming the port it serves
its metrics on; the file is removed when the process exits (a killed process's file,
by the next process to start on the host). Point a
``file_sd_configs`` entry at ``<dir>/*.json``. Unset: no file is written.

**Default value:** unset
"""

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

OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT = "OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT

``true`` keeps every OTLP/HTTP batch (spans, metrics, logs) the collector cannot take
now (it is away, restarting, or answers 429, 502, 503 or 504) and retries it, oldest
first, with exponential backoff (5 s, doubling up to
``OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL``; ``Retry-After`` honoured) until the
collector takes it; meanwhile new batches wait behind it and the exporter never
blocks. A batch refused for good (400, 413, another 4xx) is dropped at once. What
waits is bounded by ``OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES`` and may overflow to
``OTEL_PYTHON_CLSTOCK_SPOOL_DIR``; every drop is counted in the
``clstock.telemetry.dropped`` metric. ``false`` leaves the SDK's exporters as they are
(a batch is given up after the exporter's timeout). The gRPC exporters keep the
SDK's behaviour either way.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3 = "OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_OTLP_URLLIB3

``true`` makes the OTLP/HTTP exporters (spans, metrics, logs) the distro configures
send each batch through the SDK's own urllib3 transport instead of requests (a
quarter of the instructions per request), where the request on the wire is the same:
a plain ``http://`` endpoint with no proxy (``HTTP_PROXY``, ``ALL_PROXY``,
``NO_PROXY``) and no ``~/.netrc`` entry for it, and the exporter's default session (no
session passed, no ``OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_PROVIDER``). Same
headers (requests' ``Accept``, ``Accept-Encoding`` and ``Connection`` included), body,
compression, retries and ``Retry-After``. Otherwise, and with ``false``, requests
sends, as in the SDK. Proxies and ``~/.netrc`` are looked at once, when the exporter
is built; cookies a server sets are not sent back.

**Default value:** ``true``
"""

OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES = "OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES

The most bytes of encoded OTLP batches (spans, metrics and logs together) a process
keeps in memory while the collector is away. When they are reached, new batches go
to the spool if there is one, else they are dropped: counted in
``clstock.telemetry.dropped`` (``reason=buffer_full``) and reported in one warning a
minute. The default holds more than 60 s of the API's peak span rate in the load
benchmark (the arithmetic is in bench/README.md, "Durable delivery"). ``0`` keeps
nothing in memory.

**Default value:** ``67108864`` (64 MiB)
"""

OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL = "OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL

The longest pause, in milliseconds, between two tries of a kept batch. Tries start
5 s after the failure (or this value, if smaller) and the pause doubles, with 20 %
jitter, up to it; so a batch reaches a collector that came back at most this long
after it did.

**Default value:** ``30000``
"""

OTEL_PYTHON_CLSTOCK_SPOOL_DIR = "OTEL_PYTHON_CLSTOCK_SPOOL_DIR"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_SPOOL_DIR

A directory where batches are kept on disk when memory cannot hold them
(``OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES`` reached) and when the process exits
while the collector is away (within ``OTEL_PYTHON_CLSTOCK_SHUTDOWN_TIMEOUT``). The
next process started with the same directory sends them, oldest first, once the
collector answers. Processes may share it (``uvicorn --workers``, gunicorn): each
file is claimed by one process only. A damaged or truncated file is deleted with a
warning. Unset: nothing is written to disk.

**Default value:** unset
"""

OTEL_PYTHON_CLSTOCK_SPOOL_MAX_BYTES = "OTEL_PYTHON_CLSTOCK_SPOOL_MAX_BYTES"
"""
.. envvar:: OTEL_PYTHON_CLSTOCK_SPOOL_MAX_BYTES

The most bytes ``OTEL_PYTHON_CLSTOCK_SPOOL_DIR`` may hold, for every process that
shares it. A batch that would go past it is dropped and counted.

**Default value:** ``268435456`` (256 MiB)
"""
