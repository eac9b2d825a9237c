"""An embedded OTLP receiver: OTLP/HTTP and OTLP/gRPC in-process, decoded into plain objects.

It is what ``clstock-otel collect`` (the dev collector) and ``clstock-otel demo`` run,
and what the integration tests point real, instrumented ClStock processes at. It
speaks the protocols a collector speaks:

- OTLP/HTTP (:mod:`~clstock_otel_distro.tools.otlp_http`): ``POST /v1/traces``,
  ``/v1/metrics``, ``/v1/logs``, protobuf or OTLP JSON bodies, gzip or deflate encoded.
- OTLP/gRPC (``grpcio``, imported only when the receiver starts): the trace, metrics and
  logs ``Export`` services.

Every request is decoded (:mod:`~clstock_otel_distro.tools.otlp_data`) and counted;
its spans go to the listeners and are kept, unless ``retain=False``::

    from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver

    with OTLPReceiver() as receiver:              # free ports on 127.0.0.1
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
        }
        ...                                       # run the instrumented process
        spans = receiver.wait_until(
            lambda spans: any(s.name == "GET /recommendations" for s in spans)
        )

For ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` use ``receiver.grpc_endpoint`` instead.
``add_listener`` streams every received batch of spans to a callback, which is how a
long-running collector prints traces as they arrive (with ``retain=False`` it does not
also keep them in memory). A subclass keeps more than spans (metrics, log records, the
raw requests) by overriding :meth:`OTLPReceiver._keep`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from clstock_otel_distro.tools.otlp_data import (
    ReceivedSpan,
    decode_logs_request,
    decode_metrics_request,
    decode_trace_request,
    message_types,
)
from clstock_otel_distro.tools.otlp_http import MAX_BODY_BYTES, OTLPHTTPServer

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = ["OTLPReceiver", "ReceiverStats", "SpanListener"]

_logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_GRPC_MAX_WORKERS = 8
_NOT_RUNNING = "the OTLP receiver is not running; call start() first"


@dataclass(frozen=True)
class ReceiverStats:
    """Counters for one transport since the receiver was created (clearing keeps them)."""

    trace_requests: int = 0
    spans: int = 0
    metric_requests: int = 0
    metric_data_points: int = 0
    log_requests: int = 0
    log_records: int = 0
    rejected_requests: int = 0


SpanListener = Callable[[Sequence[ReceivedSpan]], None]


class _GrpcExportServicer:
    """The ``Export`` method of one OTLP gRPC service, feeding the receiver.

    Duck-typed instead of subclassing the generated servicers, so that defining it does
    not import grpc; the generated ``add_*Servicer_to_server`` only looks up ``Export``.
    """

    def __init__(self, receiver: OTLPReceiver, signal: str) -> None:
        self._receiver = receiver
        self._signal = signal

    def Export(self, request: Message, context: Any) -> Message:
        try:
            self._receiver._ingest(self._signal, request, "grpc")
        except Exception:
            import grpc

            _logger.exception("OTLP receiver failed to store an OTLP/gRPC %s request", self._signal)
            context.abort(grpc.StatusCode.INTERNAL, "internal receiver error")
            raise  # unreachable: abort raises
        # Every item is taken: the empty response (no partial success).
        return message_types(self._signal)[1]()


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class OTLPReceiver:
    """An in-process OTLP/HTTP + OTLP/gRPC receiver that keeps the spans it receives.

    ``http_port`` / ``grpc_port`` 0 pick free ports; ``grpc_port=None`` disables gRPC.
    With ``retain=False`` nothing is stored (listeners and counters still work), for a
    long-running collector. All methods are thread-safe.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        http_port: int = 0,
        grpc_port: int | None = 0,
        *,
        retain: bool = True,
    ) -> None:
        self._host = host
        self._requested_http_port = http_port
        self._requested_grpc_port = grpc_port
        self._retain = retain
        # One condition guards all stored state; waiters wake on every change, which
        # whoever changes that state signals with _changed().
        self._cond = threading.Condition()
        self._generation = 0
        self._spans: list[ReceivedSpan] = []
        self._counts: dict[str, Counter[str]] = {"http": Counter(), "grpc": Counter()}
        self._listeners: list[SpanListener] = []
        self._lifecycle = threading.Lock()
        self._http_server: OTLPHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc_server: Any = None
        self._grpc_executor: Any = None
        self._http_port: int | None = None
        self._grpc_port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> OTLPReceiver:
        """Bind the ports and start serving; a no-op if already running.

        Raises ``OSError`` if a port cannot be bound (nothing is left running then).
        """
        with self._lifecycle:
            if self._http_server is not None:
                return self
            message_types("traces")  # import the protos now, not on the first request
            server = OTLPHTTPServer(
                (self._host, self._requested_http_port),
                ingest=lambda signal, request: self._ingest(signal, request, "http"),
                reject=lambda: self._count("http", rejected_requests=1),
            )
            thread = threading.Thread(
                target=server.serve_forever,
                # Short poll so stop() returns promptly.
                kwargs={"poll_interval": 0.05},
                name=f"otlp-receiver-http-{server.server_port}",
                daemon=True,
            )
            thread.start()
            self._http_server, self._http_thread = server, thread
            self._http_port = server.server_port
            if self._requested_grpc_port is not None:
                try:
                    self._start_grpc(self._requested_grpc_port)
                except BaseException:
                    self._stop_locked(grace=0)
                    raise
            _logger.debug(
                "OTLP receiver listening: http=%s grpc=%s", self._http_port, self._grpc_port
            )
            return self

    def _start_grpc(self, port: int) -> None:
        # Imported here: grpc is slow to import and the CLI imports this module.
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        executor = futures.ThreadPoolExecutor(
            max_workers=_GRPC_MAX_WORKERS, thread_name_prefix="otlp-receiver-grpc"
        )
        server = grpc.server(
            executor,
            options=[
                # gRPC enables SO_REUSEPORT by default, which would let a second receiver
                # (or a real collector) silently share a fixed port with this one.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_BODY_BYTES),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _GrpcExportServicer(self, "traces"), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _GrpcExportServicer(self, "metrics"), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            _GrpcExportServicer(self, "logs"), server
        )
        address = _format_address(self._host, port)
        try:
            bound_port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio >= 1.53 raises instead of returning 0
            executor.shutdown(wait=False)
            raise OSError(f"OTLP receiver could not bind gRPC to {address}: {exc}") from exc
        if bound_port == 0:
            executor.shutdown(wait=False)
            raise OSError(f"OTLP receiver could not bind gRPC to {address}")
        server.start()
        self._grpc_server, self._grpc_executor, self._grpc_port = server, executor, bound_port

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving and release the ports; requests in progress get ``grace`` seconds.

        Stored telemetry stays readable. A no-op if not running; ``start`` may be called
        again afterwards (port 0 then picks new ports).
        """
        with self._lifecycle:
            self._stop_locked(grace)

    def _stop_locked(self, grace: float) -> None:
        if self._grpc_server is not None:
            self._grpc_server.stop(grace).wait(grace + 5)
            self._grpc_executor.shutdown(wait=False)
            self._grpc_server = self._grpc_executor = None
        if self._http_server is not None:
            server, thread = self._http_server, self._http_thread
            server.shutdown()  # stop accepting
            server.server_close()  # release the port
            server.close_connections(grace)  # and cut keep-alive connections
            if thread is not None:
                thread.join(grace + 5)
            self._http_server = self._http_thread = None
        self._http_port = self._grpc_port = None

    @property
    def running(self) -> bool:
        """Whether the receiver is serving."""
        return self._http_server is not None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        name = type(self).__name__
        if not self.running:
            return f"<{name} {self._host} stopped>"
        return f"<{name} http={self.http_endpoint} grpc={self.grpc_endpoint}>"

    # ---------------------------------------------------------------- endpoints

    @property
    def http_port(self) -> int:
        """The bound OTLP/HTTP port."""
        port = self._http_port
        if port is None:
            raise RuntimeError(_NOT_RUNNING)
        return port

    @property
    def grpc_port(self) -> int | None:
        """The bound OTLP/gRPC port, or None when gRPC is disabled."""
        if not self.running:
            raise RuntimeError(_NOT_RUNNING)
        return self._grpc_port

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTLP/HTTP, e.g. ``http://127.0.0.1:4318`` (append ``/v1/traces``)."""
        return f"http://{_format_address(self._host, self.http_port)}"

    @property
    def grpc_endpoint(self) -> str | None:
        """``http://host:port`` for the OTLP/gRPC exporters (insecure), or None if disabled."""
        port = self.grpc_port
        return None if port is None else f"http://{_format_address(self._host, port)}"

    # ---------------------------------------------------------------- ingestion

    def _ingest(self, signal: str, request: Any, transport: str) -> None:
        """Decode, count and (when retaining) keep one export request."""
        # Decoding is the expensive part and needs no lock.
        if signal == "traces":
            items: list[Any] = decode_trace_request(request, transport)
            counts = {"trace_requests": 1, "spans": len(items)}
        elif signal == "metrics":
            items = decode_metrics_request(request, transport)
            points = sum(len(metric.data_points) for metric in items)
            counts = {"metric_requests": 1, "metric_data_points": points}
        else:
            items = decode_logs_request(request, transport)
            counts = {"log_requests": 1, "log_records": len(items)}
        with self._cond:
            self._counts[transport].update(counts)
            if self._retain:
                self._keep(signal, request, items)
            self._changed()
        if signal == "traces" and items:
            self._notify_listeners(items)

    def _keep(self, signal: str, request: Any, items: list[Any]) -> None:
        """Store one decoded request; called with ``self._cond`` held, when retaining.

        ``items`` are the request's :class:`ReceivedSpan`, ``ReceivedMetric`` or
        ``ReceivedLog`` objects. This receiver keeps spans only.
        """
        if signal == "traces":
            self._spans.extend(items)

    def _changed(self) -> None:
        """Wake every waiter; call with ``self._cond`` held after changing stored state."""
        self._generation += 1
        self._cond.notify_all()

    def _count(self, transport: str, **increments: int) -> None:
        with self._cond:
            self._counts[transport].update(increments)
            self._changed()

    def _notify_listeners(self, spans: Sequence[ReceivedSpan]) -> None:
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(spans)
            except Exception:
                _logger.exception("OTLP receiver span listener %r failed", listener)

    def add_listener(self, callback: SpanListener) -> None:
        """Call ``callback(spans)`` after each trace export request is stored.

        It runs on the transport's request thread (possibly several at once, so it must
        be thread-safe) and the exporter waits for it; an exception it raises is logged
        and otherwise ignored.
        """
        with self._cond:
            self._listeners.append(callback)

    # ---------------------------------------------------------------- reading

    def spans(self) -> list[ReceivedSpan]:
        """All stored spans, in arrival order."""
        with self._cond:
            return list(self._spans)

    def stats(self) -> dict[str, ReceiverStats]:
        """Counters per transport, keyed ``"http"`` and ``"grpc"``."""
        with self._cond:
            return {
                transport: ReceiverStats(**counts) for transport, counts in self._counts.items()
            }

    def wait_until(
        self, predicate: Callable[[list[ReceivedSpan]], bool], *, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Block until ``predicate(spans)`` holds for the stored spans; returns them.

        Raises ``TimeoutError`` describing what was received instead.
        """
        wanted = f"spans matching {getattr(predicate, '__qualname__', None) or predicate!r}"
        return self._wait(self.spans, predicate, timeout, wanted, self._describe_spans)

    def _wait(
        self,
        snapshot: Callable[[], list[_T]],
        ready: Callable[[list[_T]], bool],
        timeout: float,
        wanted: str,
        describe: Callable[[list[_T]], str],
    ) -> list[_T]:
        """Block until ``ready(snapshot())``; on timeout raise with ``describe(snapshot())``."""
        if not self._retain:
            raise RuntimeError(f"this {type(self).__name__} was created with retain=False")
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            with self._cond:
                # Sleep until something changes; the predicate runs outside the lock so
                # ingestion is never blocked behind a slow check.
                self._cond.wait_for(
                    lambda since=seen: self._generation != since,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                seen = self._generation
            items = snapshot()
            if ready(items):
                return items
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"timed out after {timeout:g}s waiting for {wanted}. {describe(items)}"
                )

    def _nothing_received(self, what: str, counter: str, path: str) -> str:
        """Why nothing may have arrived: the requests counted, and where to send."""
        requests = self._requests_summary(counter)
        try:
            http_endpoint, grpc_endpoint = self.http_endpoint, self.grpc_endpoint
        except RuntimeError:  # stopped, possibly while we were waiting
            return f"No {what} received ({requests}). The receiver is not running."
        hint = f"Exporters should send to {http_endpoint}{path} (OTLP/HTTP)"
        if grpc_endpoint is not None:
            hint += f" or {grpc_endpoint} (OTLP/gRPC)"
        return f"No {what} received ({requests}). {hint}."

    def _requests_summary(self, counter: str) -> str:
        """E.g. ``trace export requests: http: 2, grpc: 0`` for ``trace_requests``."""
        per_transport = ", ".join(f"{t}: {getattr(s, counter)}" for t, s in self.stats().items())
        return f"{counter.split('_')[0]} export requests: {per_transport}"

    def _describe_spans(self, spans: list[ReceivedSpan]) -> str:
        if not spans:
            return self._nothing_received("spans", "trace_requests", "/v1/traces")
        names: dict[str | None, Counter[str]] = {}
        for span in spans:
            names.setdefault(span.service_name, Counter())[f"{span.name} ({span.kind})"] += 1
        trace_count = len({span.trace_id for span in spans})
        lines = [
            f"Received {len(spans)} span(s) in {trace_count} trace(s) "
            f"({self._requests_summary('trace_requests')}):"
        ]
        for service, counter in names.items():
            listed = ", ".join(f"{name!s} x{n}" for name, n in counter.items())
            lines.append(f"  service {service!r}: {listed}")
        return "\n".join(lines)
