"""Exponential backoff with jitter, as the Collector's own exporters retry."""

from __future__ import annotations

import random

__all__ = ["Backoff"]

_JITTER = 0.2


class Backoff:
    """Intervals ``initial``, doubling up to ``maximum``, each within +/-20 %."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = min(initial, maximum)
        self.maximum = maximum
        self._next = self.initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        interval = self._next
        self._next = min(self._next * 2, self.maximum)
        return interval * random.uniform(1 - _JITTER, 1 + _JITTER)
