"""What one attempt to hand a payload to the collector came to."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Attempt", "Outcome", "Transport"]


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    """The collector is away or busy: keep the payload and try again later."""
    REJECTED = "rejected"
    """The collector refused the payload for good (400, 413, other 4xx): drop it."""


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    retry_after: float | None = None
    """Seconds the collector asked us to wait (``Retry-After``), when it did."""
    detail: str = ""
    """The status code or error, for the log."""


SENT = Attempt(Outcome.SENT)

Transport = Callable[[bytes, float], Attempt]
"""One attempt (no retry loop of its own) to send a payload, with a timeout in seconds."""
