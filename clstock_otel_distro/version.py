"""The distro's version, read by packaging and reported as ``telemetry.distro.version``."""

__version__ = "0.1.0"
