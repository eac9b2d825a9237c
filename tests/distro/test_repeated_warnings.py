"""SDK warnings that would repeat per span are logged once per process, then counted and
reported once a minute and at exit."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from clstock_otel_distro.sdk import repeated_warnings
from clstock_otel_distro.sdk.repeated_warnings import RepeatedWarningFilter

_TRUNCATING = "String attribute value exceeds max length of %d, truncating."
_REPORTER = repeated_warnings.__name__


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def attributes_logger(clock: _Clock) -> Iterator[tuple[logging.Logger, RepeatedWarningFilter]]:
    """The SDK's attribute logger with only a fresh filter (the process-wide one set aside)."""
    logger = logging.getLogger("opentelemetry.attributes")
    saved = list(logger.filters)
    fresh = RepeatedWarningFilter(interval=60.0, clock=clock)
    logger.filters[:] = [fresh]
    yield logger, fresh
    logger.filters[:] = saved


def _messages(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_a_real_span_truncation_is_logged_once_then_counted(attributes_logger, caplog):
    """Five long attributes on one span (a failing request's url, query, message...):
    one line, marked as counted; the four repeats wait for the report."""
    _, counting = attributes_logger
    tracer = TracerProvider(span_limits=SpanLimits(max_span_attribute_length=8)).get_tracer("t")
    with caplog.at_level(logging.WARNING):
        span = tracer.start_span("GET /api/v1/predict/{symbol}")
        for key in ("url.full", "url.query", "url.path", "exception.message", "http.route"):
            span.set_attribute(key, "x" * 100)
        span.end()
    assert span.attributes["url.full"] == "x" * 8  # the SDK still truncates
    assert _messages(caplog, "opentelemetry.attributes") == [
        "String attribute value exceeds max length of 8, truncating. (clstock-otel: further "
        "occurrences are counted and reported once a minute)"]
    assert counting.pending() == {("opentelemetry.attributes", _TRUNCATING): 4}


def test_counts_are_reported_once_a_minute_per_template(attributes_logger, clock, caplog):
    logger, counting = attributes_logger
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            logger.warning(_TRUNCATING, 4096)
        logger.warning("Invalid type `%s` for attribute value.", dict)
        logger.warning("Invalid type `%s` for attribute value.", set)
        clock.now += 59.0
        logger.warning(_TRUNCATING, 4096)  # not yet a minute: counted
        assert _messages(caplog, _REPORTER) == []
        clock.now += 2.0
        logger.warning(_TRUNCATING, 4096)  # a minute since the last report: report
    assert len(_messages(caplog, "opentelemetry.attributes")) == 2  # one per template
    assert sorted(_messages(caplog, _REPORTER)) == [
        "clstock-otel: opentelemetry.attributes warning 'Invalid type `%s` for attribute "
        "value.' repeated 1 more time in the last 61 s (not logged one by one)",
        f"clstock-otel: opentelemetry.attributes warning {_TRUNCATING!r} repeated 4 more "
        f"times in the last 61 s (not logged one by one)",
    ]
    assert counting.pending() == {}


def test_what_is_left_is_reported_by_report_and_only_once(attributes_logger, clock, caplog):
    """The exit path's report: the counts since the last report; nothing twice."""
    logger, counting = attributes_logger
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            logger.warning(_TRUNCATING, 4096)
        clock.now += 5.0
        counting.report()
        counting.report()
    assert _messages(caplog, _REPORTER) == [
        f"clstock-otel: opentelemetry.attributes warning {_TRUNCATING!r} repeated 3 more "
        f"times in the last 5 s (not logged one by one)"]


def test_debug_records_and_other_loggers_are_untouched(attributes_logger, caplog):
    """Below WARNING, and child loggers of a filtered one (records from a child skip
    its parents' filters), nothing is counted."""
    logger, counting = attributes_logger
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            logger.debug("a debug line %d", 1)
            logging.getLogger("opentelemetry.sdk.trace.export").warning("Exporter said %s", 1)
    assert len(_messages(caplog, "opentelemetry.attributes")) == 3
    assert len(_messages(caplog, "opentelemetry.sdk.trace.export")) == 3
    assert counting.pending() == {}


def test_install_is_idempotent_and_covers_every_repeating_logger():
    repeated_warnings.install_repeated_warning_filter()
    repeated_warnings.install_repeated_warning_filter()
    for name in repeated_warnings.REPEATING_LOGGERS:
        filters = logging.getLogger(name).filters
        assert filters.count(repeated_warnings._filter) == 1, name


_LONG_ATTRIBUTES = """
from opentelemetry import trace
tracer = trace.get_tracer("test")
for _ in range(5):
    with tracer.start_as_current_span("request") as span:
        span.set_attribute("url.query", "q=" + "x" * 5000)
print("done")
"""


def test_under_opentelemetry_instrument_once_then_a_count_at_exit(run_instrumented):
    """Five truncated attributes: the SDK's line once, and the count of the other four
    when the process exits."""
    done = run_instrumented(_LONG_ATTRIBUTES, {"OTEL_TRACES_EXPORTER": "none"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert done.stderr.count("String attribute value exceeds max length of 4096") == 1, \
        done.stderr
    assert "further occurrences are counted" in done.stderr
    assert f"warning {_TRUNCATING!r} repeated 4 more times" in done.stderr, done.stderr
