"""The pipeline's batching span processor: a bounded queue, one export thread.

:class:`PipelineSpanProcessor` does what the SDK's ``BatchSpanProcessor`` does, with
the same settings (``OTEL_BSP_*``, passed explicitly by the configurator):

- a span that ends (sampled only) is appended to a deque of at most
  ``max_queue_size``; when it is full the oldest span is dropped and counted (one
  warning, then one every 20 s with the count while it lasts);
- a daemon thread exports every ``schedule_delay_millis``, or as soon as a batch of
  ``max_export_batch_size`` is waiting, with instrumentation suppressed (the HTTP
  export is not traced);
- ``force_flush(timeout_millis)`` exports what is queued and ``shutdown(timeout_millis)``
  hands over what is left, each within its time; after a fork the child starts with
  an empty queue and its own thread.

Unlike the SDK's, a pipeline span is encoded when it ends, on the thread that ends it
(:meth:`~clstock_otel_distro.sdk.pipeline.encoder.SpanEncoder.span_field`, which also
redacts), and waits as bytes: a queued span object is one more object every garbage
collection walks while it waits, and the waiting spans made a traced process collect
its oldest generation more often (bench/README.md, item 22). The export thread groups the
waiting bytes by resource and scope and sends them through the exporter's transport
(:mod:`~clstock_otel_distro.sdk.pipeline.transport`). The pipeline's spans arrive
through ``_enqueue`` (the tracer calls it directly); SDK spans, once the provider
stepped aside, through ``on_end``, and are encoded on the export thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from clstock_otel_distro.sdk.pipeline.encoder import SpanEncoder
from clstock_otel_distro.sdk.pipeline.transport import Sender

__all__ = ["PipelineSpanProcessor"]

_logger = logging.getLogger(__name__)

_DROP_WARNING_INTERVAL = 20.0
_DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 30000


class PipelineSpanProcessor(SpanProcessor):
    """Queues ended spans; a daemon thread encodes them to OTLP and sends them."""

    def __init__(
        self,
        span_exporter: Any,
        sender: Sender,
        *,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
    ) -> None:
        # Unset: from the OTEL_BSP_* variables, read as the SDK's processor reads them.
        if max_queue_size is None:
            max_queue_size = BatchSpanProcessor._default_max_queue_size()
        if schedule_delay_millis is None:
            schedule_delay_millis = BatchSpanProcessor._default_schedule_delay_millis()
        if max_export_batch_size is None:
            max_export_batch_size = BatchSpanProcessor._default_max_export_batch_size()
        if export_timeout_millis is None:
            export_timeout_millis = BatchSpanProcessor._default_export_timeout_millis()
        if max_queue_size <= 0:
            raise ValueError("max_queue_size must be a positive integer.")
        if schedule_delay_millis <= 0:
            raise ValueError("schedule_delay_millis must be positive.")
        if max_export_batch_size <= 0:
            raise ValueError("max_export_batch_size must be a positive integer.")
        if max_export_batch_size > max_queue_size:
            raise ValueError("max_export_batch_size must be less than or equal to max_queue_size.")
        self._exporter = span_exporter
        self._send = sender
        self._max_queue_size = max_queue_size
        self._schedule_delay = schedule_delay_millis / 1000
        self._max_export_batch_size = max_export_batch_size
        # Not used by the SDK's processor either: the exporter has its own timeout.
        self._export_timeout_millis = export_timeout_millis
        self._encoder = SpanEncoder()
        self.dropped = 0
        self._init_state()
        weak_reinit = weakref.WeakMethod(self._at_fork_reinit)

        def after_in_child() -> None:
            reinit = weak_reinit()
            if reinit is not None:
                reinit()

        os.register_at_fork(after_in_child=after_in_child)

    def _init_state(self) -> None:
        # What waits, in end order: each span's source (a tracer of ours, or None for an
        # SDK span) and item (its encoded bytes, or the SDK span). Two deques moved
        # together under _intake, rather than one of (source, item) tuples: a tuple is
        # an object the garbage collector walks as long as it waits, bytes are not.
        self._queue: collections.deque[Any] = collections.deque(maxlen=self._max_queue_size)
        self._sources: collections.deque[Any] = collections.deque(maxlen=self._max_queue_size)
        self._intake = threading.Lock()
        self._shutdown = False
        self._abandoned = False
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._waking = False
        self._dropped_unreported = 0
        self._last_drop_warning = 0.0
        self._worker = threading.Thread(
            name="ClStockOtelSpanPipeline", target=self._work, daemon=True)
        self._worker.start()

    def _at_fork_reinit(self) -> None:
        # The parent's thread does not exist here and its queue is the parent's to send.
        self._encoder = SpanEncoder()
        self._init_state()

    @property
    def span_exporter(self) -> Any:
        """The exporter whose transport sends the batches."""
        return self._exporter

    # ------------------------------------------------------------ span intake

    def _enqueue(self, span: Any) -> None:
        """Queue one of the pipeline's spans, encoded (called by the tracer when it ends,
        on the thread that ends it: the span itself need not wait)."""
        if not span._flags & 1 or self._shutdown:
            return
        encoded = self._encoder.span_field(span)
        if encoded is None:
            return
        # _add(span._tracer, encoded), inline: every span's path.
        queue = self._queue
        with self._intake:
            full = len(queue) == self._max_queue_size
            queue.append(encoded)
            self._sources.append(span._tracer)
            waiting = len(queue)
        if full:
            self._note_drop()
        if waiting >= self._max_export_batch_size and not self._waking:
            self._waking = True
            self._wake.set()

    def _add(self, source: Any, item: Any) -> None:
        queue = self._queue
        with self._intake:
            full = len(queue) == self._max_queue_size
            queue.append(item)  # full deques drop their oldest item
            self._sources.append(source)
            waiting = len(queue)
        if full:  # counted and logged outside the lock (a log handler may end spans)
            self._note_drop()
        if waiting >= self._max_export_batch_size and not self._waking:
            self._waking = True
            self._wake.set()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a span from the SDK's processor chain (an SDK span, or ours)."""
        context = span.get_span_context()
        if not (context and context.trace_flags.sampled) or self._shutdown:
            return
        self._add(None, span)  # encoded on the export thread, after redaction

    def _note_drop(self) -> None:
        self.dropped += 1
        self._dropped_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL:
            self._last_drop_warning = now
            # Worded as the SDK's processor words it, for whoever searches logs for it.
            _logger.warning(
                "Queue full, dropping Span: %d dropped, the oldest first (max_queue_size=%d; "
                "the exporter is slower than spans arrive)",
                self._dropped_unreported, self._max_queue_size)
            self._dropped_unreported = 0

    # ---------------------------------------------------------------- export

    def _work(self) -> None:
        while not self._shutdown:
            woken = self._wake.wait(self._schedule_delay)
            if self._shutdown:
                break
            self._wake.clear()
            self._waking = False
            # Woken by a full batch: send full batches; on schedule: at least one.
            self._export(at_least_one=not woken, deadline=None)
        self._export(everything=True, deadline=None)

    def _export(self, *, at_least_one: bool = False, everything: bool = False,
                deadline: float | None) -> bool:
        """Send batches under the export lock; False if the deadline came first."""
        timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._export_lock.acquire(timeout=timeout):
            return False
        try:
            queue = self._queue
            batch_size = self._max_export_batch_size
            first = True
            while queue and not self._abandoned and (
                everything or len(queue) >= batch_size or (at_least_one and first)
            ):
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                first = False
                with self._intake:
                    size = min(batch_size, len(queue))
                    items = [queue.popleft() for _ in range(size)]
                    sources = [self._sources.popleft() for _ in range(size)]
                self._send_batch(sources, items)
            return True
        finally:
            self._export_lock.release()

    def _send_batch(self, sources: list[Any], items: list[Any]) -> None:
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            payload, count = self._encoder.encode(zip(sources, items))
            if count:
                self._send(payload, count)
        except Exception:  # an exporter failure must not end the export thread
            _logger.warning("clstock-otel: exporting %d span(s) failed; they are dropped",
                            len(items), exc_info=True)
        finally:
            detach(token)

    # ------------------------------------------------------------- lifecycle

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export every queued span; False if shut down or not done within the time."""
        if self._shutdown:
            return False
        deadline = None if timeout_millis is None else time.monotonic() + timeout_millis / 1000
        return self._export(everything=True, deadline=deadline) and not self._queue

    def shutdown(self, timeout_millis: int = _DEFAULT_SHUTDOWN_TIMEOUT_MILLIS) -> None:
        """Export what is left (within ``timeout_millis``), then shut the exporter down."""
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        self._worker.join(timeout_millis / 1000)
        # Whatever is still queued after the wait is given up.
        self._abandoned = True
        try:
            self._exporter.shutdown()
        except Exception:
            _logger.debug("Exporter shutdown failed", exc_info=True)
