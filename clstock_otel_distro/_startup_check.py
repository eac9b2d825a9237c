"""Warn at start-up when another distro or configurator was chosen over ours.

``opentelemetry-instrument`` takes the first ``opentelemetry_distro`` and the first
``opentelemetry_configurator`` entry point it finds unless ``OTEL_PYTHON_DISTRO`` /
``OTEL_PYTHON_CONFIGURATOR`` name one. With ``opentelemetry-distro`` installed
alongside, that may be theirs: the process is then traced without our defaults,
resource and configuration checks, and nothing says so. Every
``opentelemetry_post_instrument`` entry point is called (without arguments) after
the instrumentors, whichever distro won, so this check runs in any case and is
silent when ours ran.
"""

from __future__ import annotations

import logging

from clstock_otel_distro._logging import install_stderr_fallback

__all__ = ["check_selected_components"]

_logger = logging.getLogger(__name__)
install_stderr_fallback()


def check_selected_components() -> None:
    """Log one warning if ClStockDistro or ClStockConfigurator did not run in this process."""
    # Imported here: the check must not fail, nor cost anything, at import time.
    from clstock_otel_distro.configurator import configurator_ran
    from clstock_otel_distro.distro import distro_ran

    skipped = [
        component
        for component, ran in (
            ("ClStockDistro", distro_ran()),
            ("ClStockConfigurator", configurator_ran()),
        )
        if not ran
    ]
    if skipped:
        _logger.warning(
            "clstock-otel-distro is installed but %s did not run: another OpenTelemetry "
            "distro or configurator was selected, so ClStock's defaults, resource and "
            "configuration checks are not applied. Set OTEL_PYTHON_DISTRO=clstock "
            "OTEL_PYTHON_CONFIGURATOR=clstock to use them.",
            " and ".join(skipped),
        )
