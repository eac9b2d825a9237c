"""The redaction applied to every span before export (clstock_otel_distro.sdk.redaction)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from clstock_otel_distro.sdk.redaction import (
    RedactingBatchSpanProcessor,
    redact_query,
    redact_span,
    redact_text,
    redact_url,
)


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h/p?api_key=S1&token=S2&symbol=7203",
     "http://h/p?api_key=REDACTED&token=REDACTED&symbol=7203"),
    ("https://user:pw@h:8443/p", "https://REDACTED:REDACTED@h:8443/p"),
    ("https://user@h/p", "https://REDACTED:REDACTED@h/p"),
    ("http://h/p?X-Amz-Signature=abc&sig=def&AWSAccessKeyId=ghi",
     "http://h/p?X-Amz-Signature=REDACTED&sig=REDACTED&AWSAccessKeyId=REDACTED"),
    ("http://h/p?API_KEY=a&Crumb=b", "http://h/p?API_KEY=REDACTED&Crumb=REDACTED"),
    ("http://h/p?api%5Fkey=a", "http://h/p?api%5Fkey=REDACTED"),
    ("http://h/cb#access_token=a&state=s", "http://h/cb#access_token=REDACTED&state=s"),
    ("/prices/7203?period=1y&token=t", "/prices/7203?period=1y&token=REDACTED"),
    ("http://h/p?symbol=7203&period=1y", "http://h/p?symbol=7203&period=1y"),
    ("http://h/p?token", "http://h/p?token"),
    ("http://h/p?q=1;api_key=X", "http://h/p?q=1;api_key=REDACTED"),
    ("http://h/p?token=a;symbol=7203&key=b", "http://h/p?token=REDACTED;symbol=7203&key=REDACTED"),
    ("http://REDACTED:REDACTED@h/?key=REDACTED", "http://REDACTED:REDACTED@h/?key=REDACTED"),
])
def test_redact_url(url, expected):
    """Credentials and sensitive query values become REDACTED; the rest is kept byte for byte."""
    assert redact_url(url) == expected


def test_unchanged_values_are_the_same_objects():
    """Nothing to redact: the very same string comes back (no copy on the common path)."""
    url = "http://h/p?symbol=7203"
    assert redact_url(url) is url
    query = "symbol=7203&period=1y"
    assert redact_query(query) is query


def test_semicolon_separates_query_parameters():
    """``;`` separates parameters like ``&`` (``?q=1;api_key=X`` leaked its key before)."""
    assert redact_query("q=1;api_key=X") == "q=1;api_key=REDACTED"
    assert redact_query("symbol=7203;period=1y&token=t") == "symbol=7203;period=1y&token=REDACTED"
    query = "symbol=7203;period=1y"
    assert redact_query(query) is query


def test_redact_text():
    """URLs quoted in error messages lose their credentials and sensitive values."""
    text = ("NetworkError: Request to http://svc:pw@10.0.0.1/?api_key=k1&next=/prices "
            "failed; see http://h/doc?page=2")
    assert redact_text(text) == (
        "NetworkError: Request to http://REDACTED:REDACTED@10.0.0.1/?api_key=REDACTED"
        "&next=/prices failed; see http://h/doc?page=2")


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A local provider exporting through the redacting processor into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=6),
                              shutdown_on_exit=False)
    provider.add_span_processor(RedactingBatchSpanProcessor(exporter, schedule_delay_millis=60000))
    yield provider, exporter
    provider.shutdown()


def test_processor_redacts_before_export(exported):
    """URL attributes, exception events and status are redacted; the rest is untouched."""
    provider, exporter = exported
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={
            "url.full": "http://u:p@h/?token=t1", "url.query": "token=t1",
            "http.url": "http://h/?apikey=t2", "http.target": "/p?secret=t3"},
            record_exception=False) as span:
        span.record_exception(RuntimeError("Request to http://h/?password=t4 failed"))
        span.set_status(Status(StatusCode.ERROR, "GET http://h/?session=t5"))
    with tracer.start_as_current_span("clean", attributes={"url.full": "http://h/p?a=1"}):
        pass
    provider.force_flush()
    dirty, clean = exporter.get_finished_spans()
    assert dict(dirty.attributes) == {
        "url.full": "http://REDACTED:REDACTED@h/?token=REDACTED", "url.query": "token=REDACTED",
        "http.url": "http://h/?apikey=REDACTED", "http.target": "/p?secret=REDACTED"}
    assert dirty.status.description == "GET http://h/?session=REDACTED"
    assert dirty.events[0].attributes["exception.message"] == \
        "Request to http://h/?password=REDACTED failed"
    assert "t4" not in dirty.events[0].attributes["exception.stacktrace"]
    assert dirty.kind is SpanKind.CLIENT
    assert dirty.context == span.get_span_context()
    assert clean.attributes["url.full"] == "http://h/p?a=1"


def test_dropped_counts_survive_redaction(exported):
    """A redacted copy reports the attributes the span limits dropped, as the original did."""
    provider, exporter = exported
    with provider.get_tracer("test").start_as_current_span("GET") as span:
        for extra in range(8):  # 9 attributes over a limit of 6: the 3 oldest are dropped
            span.set_attribute(f"extra.{extra}", extra)
        span.set_attribute("url.full", "http://h/?token=t1")
    provider.force_flush()
    (exported_span,) = exporter.get_finished_spans()
    assert exported_span.attributes["url.full"] == "http://h/?token=REDACTED"
    assert exported_span.dropped_attributes == 3


def test_redact_span_returns_clean_span_itself():
    """A span with nothing to redact is passed on as is."""
    readable = ReadableSpan(name="GET", attributes={"url.full": "http://h/p?symbol=7203"})
    assert redact_span(readable) is readable
