"""Every span name, attribute key, event name and metric name the distro emits.

Our own keys are namespaced ``clstock.*`` (ClStock operations) and ``yfinance.*``
(the market-data library). Standard keys are not redefined: they are re-exported
from :mod:`opentelemetry.semconv` so instrumentors import every key from one place::

    from clstock_otel_distro.semconv import CLSTOCK_SYMBOL, ERROR_TYPE

    span.set_attribute(CLSTOCK_SYMBOL, "7203")
"""

from __future__ import annotations

from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_SCHEME
from opentelemetry.semconv.metrics.http_metrics import HTTP_CLIENT_REQUEST_DURATION
from opentelemetry.semconv.schemas import Schemas

try:  # stable since semantic-conventions 1.33; incubating before
    from opentelemetry.semconv.attributes.code_attributes import (
        CODE_FILE_PATH,
        CODE_FUNCTION_NAME,
        CODE_LINE_NUMBER,
    )
except ImportError:  # pragma: no cover - older opentelemetry-semantic-conventions
    from opentelemetry.semconv._incubating.attributes.code_attributes import (
        CODE_FILE_PATH,
        CODE_FUNCTION_NAME,
        CODE_LINE_NUMBER,
    )

__all__ = [
    "CLSTOCK_BATCH_FAILED",
    "CLSTOCK_BATCH_SIZE",
    "CLSTOCK_DATA_POINTS",
    "CLSTOCK_OPERATION_DURATION",
    "CLSTOCK_OPERATION_NAME",
    "CLSTOCK_PERIOD",
    "CLSTOCK_PREDICTED_RETURN",
    "CLSTOCK_RECOMMENDATION_COUNT",
    "CLSTOCK_RUNTIME_CLASS",
    "CLSTOCK_SCORE",
    "CLSTOCK_SYMBOL",
    "CLSTOCK_SYMBOL_COUNT",
    "CLSTOCK_TICKER",
    "CLSTOCK_TOP_N",
    "CLSTOCK_TRAINING_SAMPLES",
    "CLSTOCK_TRAINING_SYMBOL_COUNT",
    "CODE_FILE_PATH",
    "CODE_FUNCTION_NAME",
    "CODE_LINE_NUMBER",
    "DURATION_BUCKETS",
    "ERROR_TYPE",
    "ERROR_TYPE_NO_DATA",
    "EVENT_NO_DATA_RETURNED",
    "HTTP_CLIENT_REQUEST_DURATION",
    "HTTP_REQUEST_METHOD",
    "HTTP_REQUEST_METHOD_ORIGINAL",
    "HTTP_RESPONSE_STATUS_CODE",
    "SCHEMA_URL",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "URL_FULL",
    "URL_SCHEME",
    "YFINANCE_DOWNLOAD_SPAN",
    "YFINANCE_END",
    "YFINANCE_FAILED_COUNT",
    "YFINANCE_HISTORY_SPAN",
    "YFINANCE_INFO_SPAN",
    "YFINANCE_INTERVAL",
    "YFINANCE_OPERATION_DURATION",
    "YFINANCE_OPERATION_NAME",
    "YFINANCE_PERIOD",
    "YFINANCE_ROWS",
    "YFINANCE_START",
    "YFINANCE_TICKER",
    "YFINANCE_TICKERS",
    "YFINANCE_TICKER_COUNT",
]

# The semantic-conventions version our spans follow (code.function.name and
# code.file.path appeared in 1.30; the stable HTTP attributes are older).
SCHEMA_URL: str = Schemas.V1_30_0.value

# --- ClStock operations (spans named ``DefiningClass.method``) ----------------------
CLSTOCK_SYMBOL = "clstock.symbol"
"""The ClStock symbol (TSE code, e.g. ``7203``) an operation is about."""
CLSTOCK_SCORE = "clstock.score"
"""A 0-100 score computed by a predictor."""
CLSTOCK_PREDICTED_RETURN = "clstock.predicted_return"
"""The expected return (a fraction, e.g. ``0.012``) a predictor computed."""
CLSTOCK_TOP_N = "clstock.top_n"
"""How many recommendations were asked for."""
CLSTOCK_RECOMMENDATION_COUNT = "clstock.recommendation_count"
"""How many recommendations were returned."""
CLSTOCK_BATCH_SIZE = "clstock.batch.size"
"""How many symbols a batch prediction was given (only when the argument is sized)."""
CLSTOCK_BATCH_FAILED = "clstock.batch.failed"
"""How many symbols of a batch prediction failed."""
CLSTOCK_TRAINING_SAMPLES = "clstock.training.samples"
"""How many samples a model was trained on."""
CLSTOCK_TRAINING_SYMBOL_COUNT = "clstock.training.symbol_count"
"""How many symbols a model was trained on."""
CLSTOCK_PERIOD = "clstock.period"
"""The history period asked for (``1y``, ``6mo``...), default applied."""
CLSTOCK_TICKER = "clstock.ticker"
"""The Yahoo ticker of the symbol (``7203.T`` for a TSE code)."""
CLSTOCK_DATA_POINTS = "clstock.data_points"
"""How many rows of price history were returned."""
CLSTOCK_SYMBOL_COUNT = "clstock.symbol_count"
"""How many symbols a multi-symbol fetch was given (only when the argument is sized)."""
CLSTOCK_RUNTIME_CLASS = "clstock.runtime_class"
"""The instance's class, when it differs from the class that defines the method."""
CLSTOCK_OPERATION_NAME = "clstock.operation.name"
"""Metric attribute: the span name of the ClStock operation measured."""

# --- yfinance -------------------------------------------------------------------------
YFINANCE_HISTORY_SPAN = "yfinance history"
YFINANCE_DOWNLOAD_SPAN = "yfinance download"
YFINANCE_INFO_SPAN = "yfinance info"

YFINANCE_TICKER = "yfinance.ticker"
"""The Yahoo ticker of a ``Ticker`` operation (``7203.T``)."""
YFINANCE_PERIOD = "yfinance.period"
"""The ``period`` asked for, when one applies."""
YFINANCE_INTERVAL = "yfinance.interval"
"""The bar ``interval`` (``1d``...)."""
YFINANCE_START = "yfinance.start"
"""The ``start`` date, when given."""
YFINANCE_END = "yfinance.end"
"""The ``end`` date, when given."""
YFINANCE_ROWS = "yfinance.rows"
"""How many rows came back."""
YFINANCE_TICKERS = "yfinance.tickers"
"""The tickers of a ``download`` call, as yfinance normalises them (upper case)."""
YFINANCE_TICKER_COUNT = "yfinance.ticker_count"
"""How many distinct tickers a ``download`` call asked for."""
YFINANCE_FAILED_COUNT = "yfinance.failed_count"
"""How many tickers of a ``download`` call came back without data."""
YFINANCE_OPERATION_NAME = "yfinance.operation.name"
"""Metric attribute: the span name of the yfinance operation measured."""

# --- events and error types -----------------------------------------------------------
EVENT_NO_DATA_RETURNED = "No data returned"
"""Span event: a price-history call returned an empty frame."""
ERROR_TYPE_NO_DATA = "no_data"
"""``error.type`` of a yfinance call that hid its failure behind an empty frame."""

# --- metrics ----------------------------------------------------------------------------
CLSTOCK_OPERATION_DURATION = "clstock.operation.duration"
"""Histogram (s): duration of ClStock operations, by ``clstock.operation.name``."""
YFINANCE_OPERATION_DURATION = "yfinance.operation.duration"
"""Histogram (s): duration of yfinance operations, by ``yfinance.operation.name``."""
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Bucket boundaries (s) advised for every duration histogram: the HTTP semconv ones."""
