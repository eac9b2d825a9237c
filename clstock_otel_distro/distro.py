"""ClStockDistro: the ``opentelemetry_distro`` entry point named ``clstock``.

``opentelemetry-instrument`` picks it (``_load_distro``) and calls ``_configure``
before any configurator runs. It only sets defaults for standard variables with
``os.environ.setdefault``, so a value the operator set always wins; the SDK
wiring lives in :mod:`clstock_otel_distro.configurator`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.instrumentation.logging.environment_variables import (
    OTEL_PYTHON_LOG_CORRELATION,
)
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL
from opentelemetry.util._importlib_metadata import EntryPoint

from clstock_otel_distro._logging import install_stderr_fallback

__all__ = ["ClStockDistro", "distro_ran"]

_logger = logging.getLogger(__name__)
install_stderr_fallback()

# Upstream keeps this name in a private module (opentelemetry.instrumentation._semconv).
OTEL_SEMCONV_STABILITY_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

# Set by ClStockDistro._configure; read by the post-instrument start-up check to
# tell whether another distro won the entry-point lookup.
_distro_ran = False


def distro_ran() -> bool:
    """Whether ClStockDistro configured this process."""
    return _distro_ran


class ClStockDistro(BaseDistro):
    """Sets ClStock's defaults for the standard OpenTelemetry variables."""

    def _configure(self, **kwargs: Any) -> None:
        global _distro_ran
        _distro_ran = True
        # Traces are the product: export them, to a collector or `clstock-otel collect`.
        os.environ.setdefault(OTEL_TRACES_EXPORTER, "otlp")
        # The span-derived and runtime metrics go the same way as the traces.
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "otlp")
        # The spec's recommended default (the SDK alone picks grpc); it also keeps
        # grpc from being imported at start-up.
        os.environ.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")
        # Pin our configurator when others are installed: _load_configurators
        # otherwise runs whichever entry point comes first.
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, "clstock")
        # Trace and span ids in every log record (the logging instrumentation's
        # record factory and format), so logs join their traces.
        os.environ.setdefault(OTEL_PYTHON_LOG_CORRELATION, "true")
        # Stable HTTP semantic conventions (http.request.method, url.full, ...)
        # from the FastAPI/requests instrumentations, matching our own spans.
        os.environ.setdefault(OTEL_SEMCONV_STABILITY_OPT_IN, "http")

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        """Load and instrument one entry point; a failing instrumentor is skipped, not fatal.

        Upstream's ``_load_instrumentors`` re-raises any exception other than an
        import or dependency error, which ends the loop and leaves every later
        instrumentor unloaded. One broken instrumentation must not cost the others,
        so the failure is logged as one warning (traceback at debug) and skipped.
        """
        try:
            instrumentor = entry_point.load()
            instrumentor().instrument(**kwargs)
        except (DependencyConflictError, ModuleNotFoundError):
            # Upstream already treats these as "library not installed" and logs
            # them at debug before moving on; keep that quiet behaviour.
            raise
        except Exception as exc:
            _logger.warning(
                "Instrumentation %r failed and was skipped (%s: %s); the others still load",
                entry_point.name,
                type(exc).__name__,
                exc,
            )
            _logger.debug("Instrumentation %r failure", entry_point.name, exc_info=True)
