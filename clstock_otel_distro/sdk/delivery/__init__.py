"""Nothing lost when the collector is away: durable delivery of encoded OTLP payloads.

Where encoded bytes leave the process (the SDK's OTLP/HTTP client, for traces,
metrics and logs, whichever span pipeline made them), each payload is handed to the
signal's :class:`~.sender.DurableSender`: tried once, kept in memory and retried with
backoff while the collector is away, spooled to disk when memory is full or the
process exits (``OTEL_PYTHON_CLSTOCK_SPOOL_DIR``), dropped and counted only when no
bound lets it be kept. :mod:`clstock_otel_distro.patches.otlp_http_durable` connects
the SDK's client to it.

This module holds the process-wide parts: the settings, the byte budget every sender
shares, the drop reporter, the spool, the live senders (for the exit and after a
fork).
"""

from __future__ import annotations

import threading
import time
import weakref

from clstock_otel_distro.sdk.delivery.backoff import Backoff
from clstock_otel_distro.sdk.delivery.budget import ByteBudget
from clstock_otel_distro.sdk.delivery.drops import DropReporter
from clstock_otel_distro.sdk.delivery.outcome import Attempt, Outcome, Transport
from clstock_otel_distro.sdk.delivery.sender import DurableSender
from clstock_otel_distro.sdk.delivery.settings import DeliverySettings, read_settings
from clstock_otel_distro.sdk.delivery.spool import Spool

__all__ = [
    "Attempt",
    "DeliverySettings",
    "DurableSender",
    "Outcome",
    "Transport",
    "begin_exit",
    "close_all",
    "new_sender",
    "persist_all",
    "reporter",
    "reset_after_fork",
]

_lock = threading.Lock()
_settings: DeliverySettings | None = None
_budget: ByteBudget | None = None
_spool: Spool | None = None
_reporter = DropReporter()
_senders: weakref.WeakSet[DurableSender] = weakref.WeakSet()
_exit_deadline: float | None = None

EXIT_SPOOL_SHARE = 0.2
"""The part of the exit budget kept for writing the spool."""


def reporter() -> DropReporter:
    """The process's drop reporter."""
    return _reporter


def _shared() -> tuple[DeliverySettings, ByteBudget, Spool | None]:
    global _settings, _budget, _spool
    with _lock:
        if _settings is None:
            _settings = read_settings()
            _budget = ByteBudget(_settings.buffer_bytes)
            if _settings.spool_dir:
                _spool = Spool(_settings.spool_dir, _settings.spool_max_bytes)
        assert _budget is not None
        return _settings, _budget, _spool


def new_sender(signal: str, transport: Transport, timeout: float) -> DurableSender:
    """A sender for ``signal`` with the process's settings, budget, spool and reporter."""
    settings, budget, spool = _shared()
    sender = DurableSender(signal, transport, timeout=timeout, budget=budget,
                           reporter=_reporter, spool=spool,
                           backoff=Backoff(settings.initial_interval, settings.max_interval))
    _senders.add(sender)
    return sender


def begin_exit(deadline: float) -> None:
    """The process is exiting: senders closing from now on finish by ``deadline``
    (monotonic), leaving part of it for the spool."""
    global _exit_deadline
    _exit_deadline = deadline


def close_deadline(timeout: float) -> float:
    """When a sender closing now stops sending: within the exit budget, if there is one."""
    now = time.monotonic()
    if _exit_deadline is None:
        return now + timeout
    return now + max(0.0, (_exit_deadline - now) * (1 - EXIT_SPOOL_SHARE))


def close_all() -> None:
    """Close every live sender (tests; the exporters' shutdown closes their own)."""
    for sender in list(_senders):
        sender.close(close_deadline(0.0))


def persist_all() -> None:
    """Spool (or drop, counted) whatever still waits in any sender: the exit budget is spent."""
    for sender in list(_senders):
        sender.persist()


def reset_after_fork() -> None:
    """In a forked child: an empty budget, fresh locks, no threads, nothing waiting."""
    global _lock
    _lock = threading.Lock()  # a parent's thread may have held it at the fork
    if _spool is not None:
        _spool.reset_after_fork()
    if _budget is not None:
        _budget.reset()
    _reporter.reset()
    for sender in list(_senders):
        sender.reset_after_fork()


def reset_for_tests() -> None:
    """Forget the settings and senders (tests change the variables between cases)."""
    global _settings, _budget, _spool, _exit_deadline
    with _lock:
        _settings = _budget = _spool = _exit_deadline = None
    _senders.clear()
    _reporter.reset()
