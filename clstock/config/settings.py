"""ClStock settings, read from the environment once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["DEFAULT_SYMBOLS", "VALID_PERIODS", "Settings", "get_settings"]

# The universe ranked by /recommendations: liquid TSE names with market data.
DEFAULT_SYMBOLS: tuple[str, ...] = (
    "7203", "6758", "9984", "6861", "8306", "9432", "4063", "6098", "8035", "9983",
)

# The history periods Yahoo's chart API accepts.
VALID_PERIODS: frozenset[str] = frozenset(
    {"1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"}
)


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    """What an operator can change without touching code."""

    predictor: str = "momentum"
    data_service_url: str | None = None
    yahoo_url: str | None = None
    cache_ttl_seconds: float = 300.0
    symbols: tuple[str, ...] = field(default=DEFAULT_SYMBOLS)


def get_settings() -> Settings:
    """Settings from ``CLSTOCK_*`` environment variables."""
    return Settings(
        predictor=os.environ.get("CLSTOCK_PREDICTOR", "momentum").strip().lower() or "momentum",
        data_service_url=os.environ.get("CLSTOCK_DATA_SERVICE_URL", "").strip() or None,
        yahoo_url=os.environ.get("CLSTOCK_YAHOO_URL", "").strip() or None,
        cache_ttl_seconds=_float_env("CLSTOCK_CACHE_TTL", 300.0),
    )
