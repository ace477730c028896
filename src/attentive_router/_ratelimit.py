"""Client-side rate limits: one token bucket per endpoint, paced by an injected clock.

Each request reserves the next free slot of its endpoint's bucket and sleeps until then, so a
backlog drains at the limit instead of provoking a storm of 429 answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from attrs import define

IDENTITY_PATH = "/v1/identity-resolution/user-identifiers"
DEFAULT_RATE = 150.0
"""Attentive's limit: requests per second per endpoint and API key."""
DEFAULT_RATES: Mapping[str, float] = {IDENTITY_PATH: 10.0}
"""Endpoints whose limit differs from ``DEFAULT_RATE``."""


@define
class TokenBucket:
    """``rate`` requests per second with bursts of at most ``burst``."""

    rate: float
    burst: float
    tokens: float
    updated: float
    blocked_until: float = 0.0

    def reserve(self, now: float) -> float:
        """Take one token (possibly ahead of time); return the seconds to wait for it."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        return max(wait, self.blocked_until - now)


class RateLimiter:
    """Per-endpoint token buckets.

    Args:
        clock: Seconds (any epoch), e.g. ``time.time``.
        sleep: Awaitable sleep, e.g. ``asyncio.sleep``.
        rate: Requests per second for endpoints not in ``rates``.
        rates: Per-path overrides (default: Identity at 10/s).
        burst_seconds: Bucket size as seconds of traffic (default 0.1, a tenth of the rate).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        *,
        rate: float = DEFAULT_RATE,
        rates: Mapping[str, float] = DEFAULT_RATES,
        burst_seconds: float = 0.1,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.rate = rate
        self.rates = dict(rates)
        self._burst_seconds = burst_seconds
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, path: str) -> TokenBucket:
        """The bucket of ``path`` (created full on first use)."""
        found = self._buckets.get(path)
        if found is None:
            rate = self.rates.get(path, self.rate)
            burst = max(1.0, rate * self._burst_seconds)
            found = TokenBucket(rate=rate, burst=burst, tokens=burst, updated=self._clock())
            self._buckets[path] = found
        return found

    async def acquire(self, path: str) -> None:
        """Wait until a request to ``path`` may be sent."""
        bucket = self.bucket(path)
        wait = bucket.reserve(self._clock())
        while wait > 0:
            await self._sleep(wait)
            wait = bucket.blocked_until - self._clock()

    def pause(self, path: str, until: float) -> None:
        """Send nothing to ``path`` before ``until`` (Attentive asked us to wait)."""
        bucket = self.bucket(path)
        bucket.blocked_until = max(bucket.blocked_until, until)
