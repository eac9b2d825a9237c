"""The SDK's OTLP/HTTP exporters deliver through durable senders (patch otlp-http-durable)."""

from __future__ import annotations

import os
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from clstock_otel_distro.patches import otlp_http_durable, registry
from clstock_otel_distro.patches.registry import PatchState
from clstock_otel_distro.sdk import delivery
from tests.support.receiver import RecordingReceiver


def _tracer(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("test")


def test_spans_ended_while_the_collector_is_down_arrive_when_it_is_back(durable):
    """Receiver stopped, 5 spans ended (each export returns at once), receiver restarted on
    the same port: all 5 arrive, in order."""
    with RecordingReceiver(grpc_port=None) as receiver:
        port = receiver.http_port
        exporter = OTLPSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces", timeout=2)
        provider, tracer = _tracer(exporter)
        with tracer.start_as_current_span("before"):
            pass
        receiver.wait_for_spans(count=1)
    started = time.monotonic()
    for index in range(5):
        with tracer.start_as_current_span(f"away-{index}"):
            pass
    assert time.monotonic() - started < 1.5  # the exporter never waited out its retries
    with RecordingReceiver(http_port=port, grpc_port=None) as back:
        spans = back.wait_for_spans(count=5, timeout=10)
        assert [span.name for span in spans] == [f"away-{index}" for index in range(5)]
        provider.shutdown()


def test_a_400_is_not_retried(durable):
    """A batch the collector refuses is dropped at once and reported as a failed export."""
    import http.server
    import threading

    hits = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(self.path)
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = OTLPSpanExporter(
            endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces", timeout=2)
        provider = TracerProvider()
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("refused") as span:
            pass
        assert exporter.export([span]) is SpanExportResult.FAILURE
        time.sleep(0.5)
        assert len(hits) == 1
        assert delivery.reporter().total[("spans", "rejected")] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_switched_off_the_sdk_client_is_untouched(monkeypatch):
    """OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT=false: nothing is patched."""
    from opentelemetry.exporter.otlp.common import http

    original = http._OTLPHTTPClient.export
    monkeypatch.setenv("OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT", "false")
    try:
        assert registry.install(otlp_http_durable.PATCH) is PatchState.OFF
        assert http._OTLPHTTPClient.export is original
    finally:
        registry.uninstall(otlp_http_durable.PATCH)


def test_undo_restores_the_client(durable):
    from opentelemetry.exporter.otlp.common import http

    patched = http._OTLPHTTPClient.export
    registry.uninstall(otlp_http_durable.PATCH)
    assert http._OTLPHTTPClient.export is not patched
    assert http._OTLPHTTPClient.export.__module__ == http.__name__


def _pooled_connections(exporter) -> int:
    session = exporter._client._transport._session
    return sum(1 for adapter in session.adapters.values()
               for pool in adapter.poolmanager.pools._container.values()
               for connection in (pool.pool.queue if pool.pool else ()) if connection is not None)


def test_a_forked_child_opens_its_own_connections(durable):
    """After fork the child's exporter has no pooled connection of the parent's, and sends."""
    with RecordingReceiver(grpc_port=None) as receiver:
        exporter = OTLPSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces", timeout=2)
        provider, tracer = _tracer(exporter)
        with tracer.start_as_current_span("parent"):
            pass
        receiver.wait_for_spans(count=1)
        assert _pooled_connections(exporter) == 1  # a keep-alive connection to share
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, send one span, exit at once
            status = 1
            try:
                pooled = _pooled_connections(exporter)
                with tracer.start_as_current_span("child"):
                    pass
                os.write(write, b"%d" % pooled)
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.read(read, 16) == b"0"
        assert os.waitstatus_to_exitcode(status) == 0
        receiver.wait_for_spans(lambda spans: any(s.name == "child" for s in spans))
        provider.shutdown()
