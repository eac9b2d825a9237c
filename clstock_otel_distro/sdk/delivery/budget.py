"""The process-wide bound on the bytes waiting in memory for the collector."""

from __future__ import annotations

import threading

__all__ = ["ByteBudget"]


class ByteBudget:
    """Bytes reserved by every sender of the process (traces, metrics and logs share it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit under the limit."""
        with self._lock:
            if self._used + size > self.limit:
                return False
            self._used += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self._used = max(0, self._used - size)

    def reset(self) -> None:
        """Forget every reservation (a forked child starts with an empty queue)."""
        self._lock = threading.Lock()
        self._used = 0
