"""The SDK's OTLP/HTTP client hands each payload to a durable sender.

Every OTLP/HTTP exporter of the SDK (spans, metrics, logs; and the distro's own span
pipeline, which sends through the span exporter's client) sends its encoded batch
with ``_OTLPHTTPClient.export(data)`` (opentelemetry-exporter-otlp-common), which
retries for up to the exporter's timeout (10 s) and then gives the batch up. Here
``export`` hands the payload to the client's
:class:`~clstock_otel_distro.sdk.delivery.DurableSender`, whose single attempts go
through the client's own ``_submit`` (session, endpoint, headers, compression,
certificates unchanged), and answers success once the payload is sent or kept. The
client's ``shutdown`` first closes the sender within the exit budget (what still
waits goes to the spool). After a fork, the child's clients get fresh connection
pools (the parent's keep-alive sockets are not shared) and empty senders.
``OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT=false`` turns it off.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from clstock_otel_distro.environment_variables import OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT
from clstock_otel_distro.patches.registry import UpstreamPatch
from clstock_otel_distro.sdk import delivery
from clstock_otel_distro.sdk.delivery import Attempt, Outcome

__all__ = ["PATCH", "patch", "sender_of"]

_logger = logging.getLogger(__name__)

_MODULE = "opentelemetry.exporter.otlp.common.http"
_CLASS = "_OTLPHTTPClient"
_HELPERS = ("_ExportResult", "_is_retryable", "_extract_retry_after")
_SENDER = "_clstock_durable_sender"
_TRANSPORTS_RESET_AFTER_FORK = ("RequestsHTTPTransport", "Urllib3HTTPTransport")

_clients: weakref.WeakSet[Any] = weakref.WeakSet()
_creating = threading.Lock()
# os.register_at_fork hooks cannot be removed: undo disarms ours instead.
_armed = False
_fork_hook_registered = False


def _shape(module: ModuleType) -> str | None:
    client_class = getattr(module, _CLASS, None)
    if client_class is None:
        return f"{_CLASS} is missing"
    missing = [name for name in _HELPERS if not callable(getattr(module, name, None))]
    missing += [f"{_CLASS}.{name}" for name in ("export", "shutdown", "_submit", "_compress")
                if not callable(getattr(client_class, name, None))]
    if missing:
        return f"{', '.join(missing)} missing"
    # The attributes the sender reads, checked on a real (never used) client.
    client = client_class(transport=None, endpoint="http://127.0.0.1:9/v1/traces", kind="spans")
    absent = [name for name in ("_transport", "_timeout", "_kind") if not hasattr(client, name)]
    if absent:
        return f"{_CLASS} no longer sets {', '.join(absent)}"
    return None


def _one_attempt(module: ModuleType, client: Any) -> delivery.Transport:
    """One try through the client's own request path, judged as the client judges it."""

    def attempt(payload: bytes, timeout: float) -> Attempt:
        result = client._submit(client._compress(payload), timeout)
        status = result.status_code
        if status is not None and 200 <= status < 400:
            return Attempt(Outcome.SENT)
        if status:
            if module._is_retryable(status):
                return Attempt(Outcome.RETRY, module._extract_retry_after(result),
                               f"HTTP {status}")
            return Attempt(Outcome.REJECTED, detail=f"HTTP {status} {result.reason or ''}".strip())
        error = result.error
        detail = f"{type(error).__name__}: {error}" if error is not None else "no answer"
        if client._transport.is_connection_error(error):
            return Attempt(Outcome.RETRY, detail=detail)
        return Attempt(Outcome.REJECTED, detail=detail)

    return attempt


def sender_of(client: Any) -> delivery.DurableSender:
    """The client's sender, created on first use."""
    sender = client.__dict__.get(_SENDER)
    if sender is None:
        with _creating:
            sender = client.__dict__.get(_SENDER)
            if sender is None:
                module = sys.modules[_MODULE]
                sender = delivery.new_sender(client._kind, _one_attempt(module, client),
                                             float(client._timeout))
                client.__dict__[_SENDER] = sender
                _clients.add(client)
    return sender


def _reset_after_fork() -> None:
    global _creating
    if not _armed:
        return
    _creating = threading.Lock()  # a parent's thread may have held it at the fork
    delivery.reset_after_fork()
    for client in list(_clients):
        transport = getattr(client, "_transport", None)
        # By name (nothing imported for it); a subclass, e.g. otlp_http_urllib3's, too.
        if any(cls.__name__ in _TRANSPORTS_RESET_AFTER_FORK for cls in type(transport).__mro__):
            try:
                # Both keep working after close(): their pools start empty, so the child
                # opens its own connections instead of writing into the parent's.
                transport.close()
            except Exception as exc:  # never let telemetry break a fork
                _logger.debug("Cannot reset the exporter's connections after fork: %s", exc)


def patch(module: ModuleType) -> Callable[[], None]:
    """Route ``_OTLPHTTPClient.export`` through durable senders (the module is imported)."""
    global _armed, _fork_hook_registered
    client_class = getattr(module, _CLASS)
    original_export = client_class.__dict__["export"]
    original_shutdown = client_class.__dict__["shutdown"]
    export_result = module._ExportResult

    def export(self: Any, data: bytes) -> Any:
        if sender_of(self).submit(data):
            return export_result(True, None, None, None)
        return export_result(False, None, "dropped by the distro (counted)", None)

    def shutdown(self: Any) -> None:
        sender = self.__dict__.get(_SENDER)
        if sender is not None:
            try:
                sender.close(delivery.close_deadline(float(self._timeout)))
            except Exception:  # the client's own shutdown runs whatever happened
                _logger.debug("Closing the durable sender failed", exc_info=True)
        original_shutdown(self)

    export.__doc__ = original_export.__doc__
    shutdown.__doc__ = original_shutdown.__doc__
    client_class.export = export
    client_class.shutdown = shutdown
    _armed = True
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_reset_after_fork)
        _fork_hook_registered = True

    def undo() -> None:
        global _armed
        client_class.export = original_export
        client_class.shutdown = original_shutdown
        _armed = False

    return undo


PATCH = UpstreamPatch(
    name="otlp-http-durable",
    distribution="opentelemetry-exporter-otlp-common",
    module=_MODULE,
    symbol=f"{_CLASS}.export+{_CLASS}.shutdown",
    versions=">=0.66b0,<0.67",
    purpose="OTLP/HTTP batches kept and retried while the collector is away",
    shape=_shape,
    apply=patch,
    switch=OTEL_PYTHON_CLSTOCK_DURABLE_EXPORT,
)
