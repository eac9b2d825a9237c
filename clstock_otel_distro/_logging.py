"""Keep the distro's own warnings visible on stderr when nothing else shows them.

Python prints a WARNING to stderr through ``logging.lastResort`` only when a record
finds no handler at all. Under ``opentelemetry-instrument`` the logging
instrumentation adds OpenTelemetry's ``LoggingHandler`` to the root logger, which
turns records into OTel log records (exported nowhere unless ``OTEL_LOGS_EXPORTER``
is set), so from then on lastResort never fires and a warning such as "your
exporter name is unknown" would silently disappear. The handler installed here on
the ``clstock_otel_distro`` logger does what lastResort would have done: it writes
the record to stderr unless some handler other than an OpenTelemetry one (the
application's own logging setup, pytest's caplog, ``basicConfig``) will see it.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["PACKAGE_LOGGER_NAME", "install_stderr_fallback"]

PACKAGE_LOGGER_NAME = "clstock_otel_distro"


class _StderrFallbackHandler(logging.Handler):
    """Write a record to stderr when no other non-OpenTelemetry handler will."""

    def emit(self, record: logging.LogRecord) -> None:
        if self._handled_elsewhere(record):
            return
        try:
            # sys.stderr is looked up per record, as lastResort does, so a stream
            # replaced after start-up (pytest capture, daemonisation) is honoured.
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if handler is self or type(handler).__module__.startswith("opentelemetry."):
                    continue
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


_handler = _StderrFallbackHandler(logging.WARNING)
_handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))


def install_stderr_fallback() -> None:
    """Attach the stderr fallback handler to the package logger (idempotent)."""
    logger = logging.getLogger(PACKAGE_LOGGER_NAME)
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
