"""What to do after an answer from Attentive: the retry classes and the backoff schedule.

Pure functions and values only; the sender supplies the clock and the random numbers.
"""

from __future__ import annotations

import enum
import random
from datetime import UTC

from attrs import frozen


class Verdict(enum.Enum):
    """The class of one answer (``attentive-api-notes.md``, "Rate limits and errors")."""

    DELIVERED = "delivered"
    RETRY = "retry"
    THROTTLED = "throttled"
    PERMANENT = "permanent"
    AUTH = "auth"


_RETRY_STATUSES = frozenset({408, 425, 500, 502, 503, 504})
_PERMANENT_5XX = frozenset({501, 505})


def classify(status: int | None) -> Verdict:
    """Classify an HTTP status; ``None`` stands for a transport error or a timeout."""
    if status is None:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 429:
        return Verdict.THROTTLED
    if status in (401, 403):
        return Verdict.AUTH
    if status in _RETRY_STATUSES or (status >= 500 and status not in _PERMANENT_5XX):
        return Verdict.RETRY
    return Verdict.PERMANENT


@frozen
class RetryPolicy:
    """When to try again, and when to give up.

    An event is dead-lettered only when both limits are passed: at least ``max_attempts``
    counted attempts, and at least ``window`` seconds since its first attempt. Throttled
    answers (429) are not counted as attempts; they only make time pass.

    Attributes:
        max_attempts: Counted attempts before giving up is allowed (default 10).
        window: Seconds after the first attempt before giving up is allowed (default 4 hours,
            well inside Attentive's 12-hour journey horizon).
        base: First backoff ceiling in seconds; it doubles with every attempt (default 1).
        cap: Largest backoff ceiling in seconds (default 300).
        retry_after_cap: Largest wait a ``Retry-After`` header can impose (default 600).
    """

    max_attempts: int = 10
    window: float = 4 * 3600.0
    base: float = 1.0
    cap: float = 300.0
    retry_after_cap: float = 600.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after the ``attempt``-th failure: full jitter below the ceiling."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), 60))
        return rng.uniform(0.0, ceiling)

    def exhausted(self, attempts: int, first_attempt_at: float, now: float) -> bool:
        """True when both the attempt count and the time window are used up."""
        return attempts >= self.max_attempts and now - first_attempt_at >= self.window

    def wait_for(self, retry_after: float) -> float:
        """A ``Retry-After`` wait, capped."""
        return min(max(retry_after, 0.0), self.retry_after_cap)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # RFC 9110 delta-seconds: ASCII digits only
        return float(text)
    # Imported for the rare HTTP date: email.utils is most of this module's import time, and
    # the command line reads the retry defaults from here while it builds its parser.
    from email.utils import parsedate_to_datetime  # noqa: PLC0415

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(moment.timestamp() - now, 0.0)
