"""The delivery variables, read once through :mod:`clstock_otel_distro.config`."""

from __future__ import annotations

from dataclasses import dataclass

from clstock_otel_distro import config
from clstock_otel_distro import environment_variables as ev

__all__ = ["DeliverySettings", "read_settings"]

# Bounds beyond which a value is a typo, not a setting.
_MAX_BYTES = 1 << 40
_MIN_INTERVAL_MILLIS = 100
_MAX_INTERVAL_MILLIS = 3_600_000


@dataclass(frozen=True)
class DeliverySettings:
    buffer_bytes: int
    initial_interval: float
    """Seconds before the first retry."""
    max_interval: float
    spool_dir: str | None
    spool_max_bytes: int


def read_settings() -> DeliverySettings:
    """The settings from the environment (a bad value: one warning, then the default)."""
    buffer_bytes = config.env_int(ev.OTEL_PYTHON_CLSTOCK_RETRY_BUFFER_BYTES,
                                  ev.DEFAULT_CLSTOCK_RETRY_BUFFER_BYTES, minimum=0,
                                  maximum=_MAX_BYTES)
    max_interval = config.env_int(ev.OTEL_PYTHON_CLSTOCK_RETRY_MAX_INTERVAL,
                                  ev.DEFAULT_CLSTOCK_RETRY_MAX_INTERVAL,
                                  minimum=_MIN_INTERVAL_MILLIS, maximum=_MAX_INTERVAL_MILLIS)
    spool_max = config.env_int(ev.OTEL_PYTHON_CLSTOCK_SPOOL_MAX_BYTES,
                               ev.DEFAULT_CLSTOCK_SPOOL_MAX_BYTES, minimum=0, maximum=_MAX_BYTES)
    return DeliverySettings(
        buffer_bytes=buffer_bytes,
        initial_interval=min(ev.DEFAULT_CLSTOCK_RETRY_INITIAL_INTERVAL, max_interval) / 1000,
        max_interval=max_interval / 1000,
        spool_dir=config.env_str(ev.OTEL_PYTHON_CLSTOCK_SPOOL_DIR),
        spool_max_bytes=spool_max,
    )
