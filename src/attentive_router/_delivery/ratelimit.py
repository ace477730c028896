"""Client-side rate limits: one token bucket per endpoint, paced by an injected clock.

Each request reserves the next free slot of its endpoint's bucket and sleeps until then, so a
backlog drains at the limit instead of provoking a storm of 429 answers.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Mapping

from attrs import define, field

IDENTITY_PATH = "/v1/identity-resolution/user-identifiers"
DEFAULT_RATE = 150.0
"""Attentive's limit: requests per second per endpoint and API key."""
DEFAULT_RATES: Mapping[str, float] = {IDENTITY_PATH: 10.0}
"""Endpoints whose limit differs from ``DEFAULT_RATE``."""


@define
class TokenBucket:
    """``rate`` requests per second with bursts of at most ``burst`` (a virtual scheduler).

    ``ready_at`` is when the next request could go if no burst credit were left; a request
    may go up to ``(burst - 1) / rate`` seconds before it. A pause moves ``ready_at`` to its
    end, so no credit builds up while paused: when it ends, one burst goes, then the rate.
    """

    rate: float
    burst: float
    ready_at: float
    blocked_until: float = 0.0

    def reserve(self, now: float) -> float:
        """Take the next free slot; return the seconds to wait for it."""
        credit = (self.burst - 1.0) / self.rate
        slot = max(now, self.ready_at - credit, self.blocked_until)
        self.ready_at = max(self.ready_at, now, self.blocked_until) + 1.0 / self.rate
        return slot - now

    def pause(self, until: float) -> None:
        """No slot before ``until``; slots already given out before then are void."""
        self.blocked_until = max(self.blocked_until, until)
        self.ready_at = max(self.ready_at, self.blocked_until)


MIN_SHARE = 0.01
"""The smallest fraction a limiter is scaled to (a worker between two rebalances)."""


@define(eq=False)
class Share:
    """The fraction of an account's limits this process may use.

    Workers of one consumer group deliver for the same API key; each takes the fraction of the
    partitions it holds, set again after every rebalance, so that together they stay inside
    the account's limits. Every limiter made with this share follows it.
    """

    fraction: float = 1.0
    _limiters: weakref.WeakSet[RateLimiter] = field(factory=weakref.WeakSet, init=False)

    def set(self, fraction: float) -> None:
        """Use ``fraction`` of the limits from now on."""
        self.fraction = fraction
        for limiter in list(self._limiters):
            limiter.scale(fraction)

    def follow(self, limiter: RateLimiter) -> None:
        """Scale ``limiter`` with this share, now and at every change."""
        self._limiters.add(limiter)
        limiter.scale(self.fraction)


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
        self._scale = 1.0

    def scale(self, fraction: float) -> None:
        """Allow ``fraction`` of the configured rates from now on (slots given out stand)."""
        self._scale = max(MIN_SHARE, fraction)
        for path, bucket in self._buckets.items():
            bucket.rate = self.rates.get(path, self.rate) * self._scale
            bucket.burst = max(1.0, bucket.rate * self._burst_seconds)

    def bucket(self, path: str) -> TokenBucket:
        """The bucket of ``path`` (created full on first use)."""
        found = self._buckets.get(path)
        if found is None:
            rate = self.rates.get(path, self.rate) * self._scale
            burst = max(1.0, rate * self._burst_seconds)
            found = TokenBucket(rate=rate, burst=burst, ready_at=self._clock())
            self._buckets[path] = found
        return found

    async def acquire(self, path: str) -> None:
        """Wait until a request to ``path`` may be sent."""
        bucket = self.bucket(path)
        wait = bucket.reserve(self._clock())
        while wait > 0:
            await self._sleep(wait)
            if bucket.blocked_until <= self._clock():
                return
            # Paused while waiting: the slot is void, take a new one after the pause.
            wait = bucket.reserve(self._clock())

    def pause(self, path: str, until: float) -> None:
        """Send nothing to ``path`` before ``until`` (Attentive asked us to wait)."""
        self.bucket(path).pause(until)
