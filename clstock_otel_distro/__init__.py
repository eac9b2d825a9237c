"""clstock-otel-distro: zero-code OpenTelemetry tracing for the ClStock service."""

from clstock_otel_distro.version import __version__

__all__ = ["__version__"]
