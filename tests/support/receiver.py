"""The OTLP receiver as the tests use it: everything kept, queried and waited for.

:class:`RecordingReceiver` is the wheel's
:class:`~clstock_otel_distro.tools.otlp_receiver.OTLPReceiver` (same transports, same
decoding, same spans) that also keeps metrics, log records and the raw trace requests,
and adds what assertions need::

    with RecordingReceiver() as receiver:            # free ports on 127.0.0.1
        ...                                          # export to receiver.http_endpoint
        spans = receiver.wait_for_spans(count=3)
        [server] = receiver.find(name="GET /recommendations", kind="SERVER")
        children = receiver.children_of(server)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from clstock_otel_distro.tools.otlp_data import ReceivedLog, ReceivedMetric, ReceivedSpan
from clstock_otel_distro.tools.otlp_receiver import OTLPReceiver, SpanListener

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

__all__ = ["RecordingReceiver"]

_T = TypeVar("_T")
_MISSING = object()


class RecordingReceiver(OTLPReceiver):
    """An OTLP receiver that keeps every signal and answers the tests' questions."""

    def __init__(self, host: str = "127.0.0.1", http_port: int = 0,
                 grpc_port: int | None = 0) -> None:
        super().__init__(host, http_port, grpc_port, retain=True)
        self._metrics: list[ReceivedMetric] = []
        self._logs: list[ReceivedLog] = []
        self._raw_trace_requests: list[ExportTraceServiceRequest] = []

    def _keep(self, signal: str, request: Any, items: list[Any]) -> None:
        super()._keep(signal, request, items)
        if signal == "traces":
            self._raw_trace_requests.append(request)
        elif signal == "metrics":
            self._metrics.extend(items)
        else:
            self._logs.extend(items)

    # ---------------------------------------------------------------- reading

    def metrics(self) -> list[ReceivedMetric]:
        """All stored metrics, in arrival order (cumulative metrics repeat per export)."""
        with self._cond:
            return list(self._metrics)

    def logs(self) -> list[ReceivedLog]:
        """All stored log records, in arrival order."""
        with self._cond:
            return list(self._logs)

    def raw_trace_requests(self) -> list[ExportTraceServiceRequest]:
        """The stored ``ExportTraceServiceRequest`` messages as received (do not mutate)."""
        with self._cond:
            return list(self._raw_trace_requests)

    def clear(self) -> None:
        """Drop all stored telemetry (counters and listeners are kept)."""
        with self._cond:
            for stored in (self._spans, self._metrics, self._logs, self._raw_trace_requests):
                stored.clear()
            self._changed()

    def remove_listener(self, callback: SpanListener) -> None:
        """Stop calling ``callback``; a no-op if it is not registered."""
        with self._cond:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        """Stored spans grouped by trace id, each trace sorted by start time."""
        traces: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans():
            traces.setdefault(span.trace_id, []).append(span)
        for spans in traces.values():
            spans.sort(key=_start_time)
        return traces

    def children_of(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        """The stored direct children of ``span``, sorted by start time."""
        children = [
            candidate
            for candidate in self.spans()
            if candidate.parent_span_id == span.span_id and candidate.trace_id == span.trace_id
        ]
        children.sort(key=_start_time)
        return children

    def find(
        self,
        name: str | None = None,
        *,
        service: str | None = None,
        kind: str | None = None,
        trace_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> list[ReceivedSpan]:
        """Stored spans matching every given criterion, in arrival order.

        ``attributes`` matches spans that have at least these attribute values.
        """
        return [
            span
            for span in self.spans()
            if (name is None or span.name == name)
            and (service is None or span.service_name == service)
            and (kind is None or span.kind == kind)
            and (trace_id is None or span.trace_id == trace_id)
            and (
                attributes is None
                or all(span.attributes.get(k, _MISSING) == v for k, v in attributes.items())
            )
        ]

    # ---------------------------------------------------------------- waiting

    def wait_for_spans(
        self,
        predicate: Callable[[list[ReceivedSpan]], bool] | None = None,
        *,
        count: int | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedSpan]:
        """Block until ``predicate(spans)`` holds and at least ``count`` spans are stored.

        With neither given, waits for any span. Returns the spans that satisfied the
        condition. Raises ``TimeoutError`` describing what was received instead.
        """
        wanted = _describe_wanted(predicate, count, "spans")
        return self._wait(
            self.spans, _ready(predicate, count), timeout, wanted, self._describe_spans
        )

    def wait_for_metrics(
        self,
        predicate: Callable[[list[ReceivedMetric]], bool] | None = None,
        *,
        name: str | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedMetric]:
        """Block until ``predicate(metrics)`` holds and a metric called ``name`` is stored.

        With neither given, waits for any metric. Raises ``TimeoutError`` on timeout.
        """

        def ready(metrics: list[ReceivedMetric]) -> bool:
            if name is not None and not any(metric.name == name for metric in metrics):
                return False
            return bool(metrics) if predicate is None else predicate(metrics)

        wanted = "metrics" + (f" (name={name!r})" if name is not None else "")
        if predicate is not None:
            wanted += f" matching {_callable_name(predicate)}"
        return self._wait(self.metrics, ready, timeout, wanted, self._describe_metrics)

    def wait_for_logs(
        self,
        predicate: Callable[[list[ReceivedLog]], bool] | None = None,
        *,
        count: int | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedLog]:
        """Block until ``predicate(logs)`` holds and at least ``count`` records are stored.

        With neither given, waits for any record. Raises ``TimeoutError`` on timeout.
        """
        wanted = _describe_wanted(predicate, count, "log records")
        return self._wait(self.logs, _ready(predicate, count), timeout, wanted, self._describe_logs)

    def _describe_metrics(self, metrics: list[ReceivedMetric]) -> str:
        if not metrics:
            return self._nothing_received("metrics", "metric_requests", "/v1/metrics")
        names: dict[str | None, dict[str, str]] = {}
        for metric in metrics:
            names.setdefault(metric.service_name, {})[metric.name] = metric.kind
        lines = [f"Received {len(metrics)} metric(s) "
                 f"({self._requests_summary('metric_requests')}):"]
        for service, kinds in names.items():
            listed = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
            lines.append(f"  service {service!r}: {listed}")
        return "\n".join(lines)

    def _describe_logs(self, logs: list[ReceivedLog]) -> str:
        if not logs:
            return self._nothing_received("log records", "log_requests", "/v1/logs")
        per_service = Counter(log.service_name for log in logs)
        listed = ", ".join(f"{service!r} x{n}" for service, n in per_service.items())
        return (f"Received {len(logs)} log record(s) "
                f"({self._requests_summary('log_requests')}): {listed}")


def _start_time(span: ReceivedSpan) -> int:
    return span.start_time_unix_nano


def _callable_name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def _ready(
    predicate: Callable[[list[_T]], bool] | None, count: int | None
) -> Callable[[list[_T]], bool]:
    def ready(items: list[_T]) -> bool:
        if count is not None and len(items) < count:
            return False
        if predicate is None:
            return count is not None or bool(items)
        return predicate(items)

    return ready


def _describe_wanted(predicate: Callable[..., Any] | None, count: int | None, what: str) -> str:
    conditions = []
    if count is not None:
        conditions.append(f"at least {count} {what}")
    if predicate is not None:
        conditions.append(f"{what} matching {_callable_name(predicate)}")
    return " and ".join(conditions) or f"any {what}"
