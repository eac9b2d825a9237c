"""DurableSender: one signal's payloads, delivered whenever the collector answers.

A payload is tried once, at once, on the exporter's thread while nothing is waiting.
When the collector is away or busy (connection error, timeout, 429, 502, 503, 504)
the payload (encoded bytes, a few hundred bytes a span) is kept and a background
thread retries the oldest with exponential backoff (``Retry-After`` when the
collector gives one) until it is taken; while anything waits, new payloads queue
behind it, so they arrive in order and the exporter's thread never waits on a
collector that is away. Payloads the collector refuses for good (400, 413, another
4xx) are dropped at once.

What waits is bounded by the process's :class:`~.budget.ByteBudget`. A payload that
does not fit goes to the spool when there is one (:mod:`.spool`), else it is dropped;
the newest are the ones that do not fit: what waits keeps its place. Every drop is
counted (:mod:`.drops`). The spool is sent, oldest first, whenever nothing waits in
memory and the collector answers. :meth:`DurableSender.close` tries once more within
the exit budget, then spools (or drops, counted) whatever still waits.

Not done here: encoding, compression, HTTP (the transport's job), and anything
per span: the unit is the exporter's batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from clstock_otel_distro.sdk.delivery.backoff import Backoff
from clstock_otel_distro.sdk.delivery.budget import ByteBudget
from clstock_otel_distro.sdk.delivery.counting import count_items
from clstock_otel_distro.sdk.delivery.drops import (
    REASON_BUFFER_FULL,
    REASON_EXIT,
    REASON_REJECTED,
    DropReporter,
)
from clstock_otel_distro.sdk.delivery.outcome import Attempt, Outcome, Transport
from clstock_otel_distro.sdk.delivery.spool import Spool

__all__ = ["DurableSender"]

_logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 300.0
"""A collector asking for a longer pause than this (seconds) is answered sooner."""
SPOOL_POLL_INTERVAL = 30.0
"""Seconds between two looks at the spool while nothing else waits (other processes
may have left files there)."""


class DurableSender:
    """Delivers one signal's payloads through ``transport``, keeping them while it fails."""

    def __init__(
        self,
        signal: str,
        transport: Transport,
        *,
        timeout: float,
        budget: ByteBudget,
        reporter: DropReporter,
        backoff: Backoff,
        spool: Spool | None = None,
    ) -> None:
        self.signal = signal
        self._transport = transport
        self._timeout = timeout
        self._budget = budget
        self._reporter = reporter
        self._backoff = backoff
        self._spool = spool
        self._init_state(start=True)

    def _init_state(self, *, start: bool) -> None:
        self._queue: deque[tuple[bytes, int]] = deque()
        self._cond = threading.Condition()
        # One attempt in flight per sender: the oldest payload is sent before the next.
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._persisted = False
        self._retry_at = 0.0
        self._outage_since: float | None = None
        # A fresh process looks at the spool at once (a previous one may have left files).
        self._spool_check_at = 0.0 if self._spool is not None else float("inf")
        if start and self._spool is not None:
            self._ensure_thread()

    # ------------------------------------------------------------------ public

    @property
    def waiting(self) -> int:
        """Payloads waiting in memory."""
        return len(self._queue)

    def submit(self, payload: bytes) -> bool:
        """Deliver ``payload`` now or later; False when it was dropped (counted)."""
        with self._cond:
            direct = not self._queue and self._outage_since is None
        if direct and self._send_lock.acquire(blocking=False):
            try:
                attempt = self._attempt(payload, self._timeout)
            finally:
                self._send_lock.release()
            if attempt.outcome is Outcome.SENT:
                return True
            if attempt.outcome is Outcome.REJECTED:
                self._reject(payload, attempt)
                return False
            self._enter_outage(attempt)
        return self._keep(payload, count_items(self.signal, payload))

    def close(self, deadline: float) -> None:
        """Stop retrying; until ``deadline`` (monotonic) send what waits while the
        collector takes it, then spool the rest (or drop it, counted)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        while time.monotonic() < deadline:
            if not self._send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            try:
                # Memory only: the spool's files wait for the next process.
                if not self._send_head(min(self._timeout, deadline - time.monotonic()),
                                       from_spool=False):
                    break
            finally:
                self._send_lock.release()
        self.persist()

    def persist(self) -> None:
        """Spool everything waiting in memory (or drop it, counted); the process is ending."""
        with self._cond:
            waiting = list(self._queue)
            self._queue.clear()
            self._persisted = True
        lost = dropped = 0
        for payload, items in waiting:
            self._budget.release(len(payload))
            if self._spool is None or not self._spool.write(self.signal, items, payload):
                lost += 1
                dropped += items
        if lost:
            self._reporter.record(self.signal, REASON_EXIT, dropped,
                                  f"{lost} batches waited for the collector at exit")
        self._reporter.flush()

    def reset_after_fork(self) -> None:
        """In a forked child: no thread, nothing waiting (the parent still sends its own).

        The child's thread starts with its first payload.
        """
        self._init_state(start=False)

    # ------------------------------------------------------------------ keeping

    def _keep(self, payload: bytes, items: int, *, first: bool = False) -> bool:
        if self._budget.reserve(len(payload)):
            with self._cond:
                if self._persisted:  # the exit already spooled what waited
                    self._budget.release(len(payload))
                else:
                    (self._queue.appendleft if first else self._queue.append)((payload, items))
                    self._ensure_thread()
                    self._cond.notify()
                    return True
        if self._spool is not None and self._spool.write(self.signal, items, payload):
            with self._cond:
                self._spool_check_at = 0.0
                self._cond.notify()
            return True
        self._reporter.record(self.signal, REASON_BUFFER_FULL, items,
                              f"more than {self._budget.limit} bytes waited for the collector")
        return False

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"clstock-otel-retry-{self.signal}")
            self._thread.start()

    # ------------------------------------------------------------------ sending

    def _attempt(self, payload: bytes, timeout: float) -> Attempt:
        try:
            return self._transport(payload, max(timeout, 0.001))
        except Exception as exc:  # a transport bug drops the payload, never loops on it
            _logger.debug("Delivery attempt failed", exc_info=True)
            return Attempt(Outcome.REJECTED, detail=f"{type(exc).__name__}: {exc}")

    def _reject(self, payload: bytes, attempt: Attempt, items: int | None = None) -> None:
        if items is None:
            items = count_items(self.signal, payload)
        self._reporter.record(self.signal, REASON_REJECTED, items,
                              f"the collector refused a batch: {attempt.detail}")

    def _enter_outage(self, attempt: Attempt) -> None:
        now = time.monotonic()
        delay = (min(attempt.retry_after, MAX_RETRY_AFTER) if attempt.retry_after is not None
                 else self._backoff.next())
        with self._cond:
            first = self._outage_since is None
            if first:
                self._outage_since = now
            self._retry_at = now + delay
        if first:
            self._reporter.prepare()
            _logger.warning(
                "clstock-otel: the collector did not take a %s batch (%s); keeping batches "
                "(up to %d bytes in memory%s) and retrying until it does",
                self.signal, attempt.detail, self._budget.limit,
                f", then in {self._spool.directory}" if self._spool is not None else "")

    def _leave_outage(self) -> None:
        with self._cond:
            since, self._outage_since = self._outage_since, None
            self._retry_at = 0.0
            waiting = len(self._queue)
        self._backoff.reset()
        if since is not None:
            _logger.warning("clstock-otel: the collector takes %s batches again after %.1f s; "
                            "sending the %d waiting", self.signal, time.monotonic() - since,
                            waiting)

    def _send_head(self, timeout: float, *, from_spool: bool = True) -> bool:
        """Send the oldest waiting payload (memory first, then the spool), holding the
        send lock. False when there was none or the collector did not take it."""
        with self._cond:
            head = self._queue.popleft() if self._queue else None
        claim = None
        if head is None:
            if self._spool is not None and from_spool:
                claim = self._spool.claim_next(self.signal)
            if claim is None:
                with self._cond:
                    self._spool_check_at = time.monotonic() + SPOOL_POLL_INTERVAL
                return False
            payload, items = claim.payload, claim.items
        else:
            payload, items = head
        attempt = self._attempt(payload, timeout)
        if attempt.outcome is Outcome.RETRY:
            if claim is not None:
                self._spool.give_back(claim)
            else:
                with self._cond:
                    if self._persisted:
                        head = None
                    else:
                        self._queue.appendleft((payload, items))
                if head is None:  # exit spooled the rest while this one was in flight
                    self._budget.release(len(payload))
                    self._keep(payload, items)
            self._enter_outage(attempt)
            return False
        if claim is not None:
            self._spool.done(claim)
        else:
            self._budget.release(len(payload))
        if attempt.outcome is Outcome.REJECTED:
            self._reject(payload, attempt, items)
        else:
            self._leave_outage()
        return True

    def _run(self) -> None:
        while True:
            self._reporter.flush_if_due()
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    work = bool(self._queue) or now >= self._spool_check_at
                    if work and now >= self._retry_at:
                        break
                    if work:
                        wait = self._retry_at - now
                    elif self._spool is not None:
                        wait = max(0.05, self._spool_check_at - now)
                    else:
                        wait = None
                    self._cond.wait(wait)
            with self._send_lock:
                if not self._closed:
                    self._send_head(self._timeout)
