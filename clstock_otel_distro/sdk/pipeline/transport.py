"""Send encoded span batches through the SDK's own OTLP/HTTP span exporter.

The pipeline encodes a batch itself and hands the bytes to the exporter's HTTP
client (``OTLPSpanExporter._client.export(data)``, opentelemetry-exporter-otlp-proto-http
1.45), which owns the session, endpoint, headers, compression, certificates,
timeout and retries; the exporter's request-size limit and its own metrics are
applied as its ``export`` applies them. That client is private: :func:`otlp_http_sender`
checks its shape and returns None when it differs, and the caller then uses the
SDK's pipeline instead.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Sender", "otlp_http_sender"]

_logger = logging.getLogger(__name__)
# The exporter's logger: the same warnings from the same name.
_exporter_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

Sender = Callable[[bytes, int], bool]


def _parameters(function: Any) -> list[str] | None:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None


def otlp_http_sender(exporter: Any) -> Sender | None:
    """A function sending (payload, span count) through ``exporter``; None if it cannot.

    Only the SDK's own ``OTLPSpanExporter`` (not a subclass, which may change what
    ``export`` does) of the known shape qualifies.
    """
    try:
        from opentelemetry.exporter.otlp.proto.http._common import (
            RequestPayloadTooLargeError,
            _is_request_too_large,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
    except ImportError:
        return None
    if type(exporter) is not OTLPSpanExporter:
        return None
    client = getattr(exporter, "_client", None)
    metrics = getattr(exporter, "_metrics", None)
    if (
        _parameters(getattr(client, "export", None)) != ["data"]
        or _parameters(getattr(metrics, "export_operation", None)) != ["num_items"]
        or not isinstance(getattr(exporter, "_max_request_size", None), int)
        or not isinstance(getattr(exporter, "_shutdown", None), bool)
    ):
        return None

    def send(payload: bytes, count: int) -> bool:
        # OTLPSpanExporter.export, after its encoding step.
        if exporter._shutdown:
            _exporter_logger.warning("Exporter already shutdown, ignoring batch")
            return False
        with exporter._metrics.export_operation(count) as result:
            limit = exporter._max_request_size
            if _is_request_too_large(payload, limit):
                _exporter_logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.", len(payload), limit)
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(payload)} bytes exceeds "
                    f"max_request_size {limit} bytes.")
                return False
            outcome = exporter._client.export(payload)
            if not outcome.success:
                result.error = outcome.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: outcome.status_code}
                    if outcome.status_code is not None else None
                )
                return False
        return True

    return send
