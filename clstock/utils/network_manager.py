"""HTTP access to other ClStock services: timeouts, bounded retries, clear errors."""

from __future__ import annotations

import logging
import time
from typing import Any

import requests

__all__ = ["NetworkError", "NetworkManager"]

logger = logging.getLogger(__name__)

# Statuses that mean "try again shortly"; anything else is the service's answer.
_RETRY_STATUSES = frozenset({503, 504})


class NetworkError(RuntimeError):
    """A request to another service failed for good."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"Request to {url} failed: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


class NetworkManager:
    """A ``requests.Session`` client for one base URL."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 15.0,
        max_attempts: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = (connect_timeout, read_timeout)
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._session = requests.Session()

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path`` and return its JSON body; raises NetworkError when it cannot."""
        url = f"{self.base_url}{path}"
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self._session.get(url, params=params, timeout=self._timeout)
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if attempt == self._max_attempts:
                    raise NetworkError(url, reason) from exc
                logger.warning("Attempt %d/%d to %s failed: %s", attempt,
                               self._max_attempts, url, reason)
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == self._max_attempts:
                    return self._decode(url, response)
                logger.warning("Attempt %d/%d to %s answered %d", attempt,
                               self._max_attempts, url, response.status_code)
            time.sleep(self._backoff * attempt)
        raise AssertionError("unreachable")  # the loop always returns or raises

    @staticmethod
    def _decode(url: str, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok and isinstance(body, dict):
            return body
        detail = body.get("detail") if isinstance(body, dict) else None
        reason = str(detail) if detail else f"HTTP {response.status_code}"
        raise NetworkError(url, reason, response.status_code)

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()
