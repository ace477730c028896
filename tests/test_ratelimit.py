"""Client-side rate limits (``attentive_router._delivery.ratelimit``), on fake time only.

``Clock`` is a clock whose sleep simply moves it forward (enough for one caller at a time);
``VirtualTime`` is a tiny scheduler for many concurrent callers: it wakes the earliest sleeper
whenever every task is waiting, so no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from collections.abc import Awaitable, Coroutine
from typing import Any

import pytest

from attentive_router._delivery.ratelimit import (
    DEFAULT_RATE,
    IDENTITY_PATH,
    MIN_SHARE,
    RateLimiter,
    Share,
    TokenBucket,
)

EVENTS = "/v1/events/custom"
PURCHASE = "/v1/events/ecommerce/purchase"


class Clock:
    """Fake time for a single caller: sleeping advances the clock by exactly that much."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class VirtualTime:
    """Fake time for many tasks: the clock jumps to the earliest wake-up once all are asleep."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), woken))
        await woken

    def run(self, *work: Coroutine[Any, Any, None]) -> None:
        asyncio.run(self._drive(work))

    async def _drive(self, work: tuple[Coroutine[Any, Any, None], ...]) -> None:
        tasks = [asyncio.create_task(w) for w in work]
        while True:
            for _ in range(3):  # let every woken task run on to its next sleep
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                break
            assert self._sleepers, "a task is blocked on something other than the clock"
            when, _, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            woken.set_result(None)
        for task in tasks:
            task.result()


def _run(coroutine: Awaitable[None]) -> None:
    async def main() -> None:
        await coroutine

    asyncio.run(main())


async def _acquire_many(limiter: RateLimiter, path: str, count: int, clock: Clock) -> list[float]:
    times = []
    for _ in range(count):
        await limiter.acquire(path)
        times.append(clock())
    return times


def _most_in_any_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + 1.0 - 1e-9) - i for i, t in enumerate(ordered))


def test_acquires_on_one_path_complete_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep)  # 150/s, bursts of 15
    start = clock()
    times: list[float] = []

    async def go() -> None:
        times.extend(await _acquire_many(limiter, EVENTS, 1000, clock))

    _run(go())
    burst = limiter.bucket(EVENTS).burst
    assert burst == 15.0
    assert times[-1] - start == pytest.approx((1000 - burst) / DEFAULT_RATE, abs=1e-6)
    assert times[:15] == [start] * 15  # the burst goes at once
    gaps = [b - a for a, b in itertools.pairwise(times[15:])]
    assert gaps == pytest.approx([1 / DEFAULT_RATE] * len(gaps), abs=1e-9)
    assert _most_in_any_second(times) <= DEFAULT_RATE + burst


def test_concurrent_acquires_share_the_rate() -> None:
    time = VirtualTime()
    limiter = RateLimiter(time.clock, time.sleep)
    start = time.now
    times: list[float] = []

    async def worker() -> None:
        for _ in range(20):
            await limiter.acquire(EVENTS)
            times.append(time.now)

    time.run(*(worker() for _ in range(64)))
    assert len(times) == 1280
    assert max(times) - start == pytest.approx((1280 - 15) / DEFAULT_RATE, abs=1e-6)
    assert _most_in_any_second(times) <= DEFAULT_RATE + 15


def test_paths_are_limited_independently() -> None:
    time = VirtualTime()
    limiter = RateLimiter(time.clock, time.sleep)
    start = time.now
    done: dict[str, float] = {}

    async def drain(path: str) -> None:
        for _ in range(300):
            await limiter.acquire(path)
        done[path] = time.now

    time.run(drain(EVENTS), drain(PURCHASE))
    # Each path takes the time of its own 300 requests, not of 600 shared ones.
    expected = (300 - 15) / DEFAULT_RATE
    assert done[EVENTS] - start == pytest.approx(expected, abs=1e-6)
    assert done[PURCHASE] - start == pytest.approx(expected, abs=1e-6)


def test_a_busy_path_does_not_delay_another() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep)

    async def go() -> None:
        await _acquire_many(limiter, EVENTS, 15, clock)
        assert limiter.bucket(EVENTS).reserve(clock()) > 0  # EVENTS is out of tokens
        await limiter.acquire(PURCHASE)

    _run(go())
    assert clock.sleeps == []


def test_identity_defaults_to_ten_per_second() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep)
    identity, other = limiter.bucket(IDENTITY_PATH), limiter.bucket(EVENTS)
    assert (identity.rate, identity.burst) == (10.0, 1.0)
    assert (other.rate, other.burst) == (150.0, 15.0)
    start = clock()
    times: list[float] = []

    async def go() -> None:
        times.extend(await _acquire_many(limiter, IDENTITY_PATH, 100, clock))

    _run(go())
    assert times[-1] - start == pytest.approx(99 / 10.0, abs=1e-6)
    assert _most_in_any_second(times) <= 11


def test_rates_can_be_configured() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep, rate=20.0, rates={PURCHASE: 4.0}, burst_seconds=0.5)
    assert (limiter.bucket(EVENTS).rate, limiter.bucket(EVENTS).burst) == (20.0, 10.0)
    assert (limiter.bucket(PURCHASE).rate, limiter.bucket(PURCHASE).burst) == (4.0, 2.0)
    assert limiter.bucket(IDENTITY_PATH).rate == 20.0  # the override replaces the defaults
    start = clock()
    times: list[float] = []

    async def go() -> None:
        times.extend(await _acquire_many(limiter, PURCHASE, 22, clock))

    _run(go())
    assert times[-1] - start == pytest.approx((22 - 2) / 4.0, abs=1e-6)


def test_an_idle_bucket_refills_to_its_burst_only() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, ready_at=0.0)
    assert bucket.reserve(1000.0) == 0.0  # refilled, but to 3 tokens, not to 10,000
    assert bucket.reserve(1000.0) == 0.0
    assert bucket.reserve(1000.0) == 0.0
    assert bucket.reserve(1000.0) == pytest.approx(0.1)
    assert bucket.reserve(1000.0) == pytest.approx(0.2)


def test_pause_blocks_until_the_given_time() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep)
    start = clock()
    limiter.pause(EVENTS, start + 5.0)

    async def go() -> None:
        await limiter.acquire(PURCHASE)
        assert clock() == start  # other paths are not paused
        await limiter.acquire(EVENTS)
        assert clock() == pytest.approx(start + 5.0)
        await limiter.acquire(EVENTS)  # the pause is over
        assert clock() == pytest.approx(start + 5.0)

    _run(go())


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep)
    start = clock()
    limiter.pause(EVENTS, start + 5.0)
    limiter.pause(EVENTS, start + 2.0)
    limiter.pause(EVENTS, start - 100.0)

    async def go() -> None:
        await limiter.acquire(EVENTS)

    _run(go())
    assert clock() == pytest.approx(start + 5.0)


def test_a_pause_in_the_past_does_not_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, clock.sleep)
    limiter.pause(EVENTS, clock() - 1.0)

    async def go() -> None:
        await limiter.acquire(EVENTS)

    _run(go())
    assert clock.sleeps == []


def test_a_pause_also_holds_requests_already_waiting_for_a_token() -> None:
    time = VirtualTime()
    limiter = RateLimiter(time.clock, time.sleep, rate=10.0)  # bursts of 1
    start = time.now
    sent: list[float] = []

    async def request() -> None:
        await limiter.acquire(EVENTS)
        sent.append(time.now)

    async def answer_429() -> None:
        await time.sleep(0.05)  # while the second request waits for its token (at 0.1 s)
        limiter.pause(EVENTS, start + 3.0)

    time.run(request(), request(), answer_429())
    assert sent == [start, pytest.approx(start + 3.0)]


def test_after_a_pause_waiting_requests_resume_at_the_rate() -> None:
    # A 429 with Retry-After pauses the path while the workers keep asking for slots; when
    # the pause ends they must still be spread at the limit, not all sent in the same instant.
    time = VirtualTime()
    limiter = RateLimiter(time.clock, time.sleep)
    start = time.now
    limiter.pause(EVENTS, start + 5.0)
    times: list[float] = []

    async def worker() -> None:
        for _ in range(20):
            await limiter.acquire(EVENTS)
            times.append(time.now)

    time.run(*(worker() for _ in range(64)))
    assert min(times) == pytest.approx(start + 5.0)
    assert times.count(min(times)) <= 15  # at most one burst when the pause ends
    assert _most_in_any_second(times) <= DEFAULT_RATE + 15


def test_fake_time_helpers_wait_in_order() -> None:
    # The scheduler above must itself be right for the tests that use it to mean anything.
    time = VirtualTime(now=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await time.sleep(seconds)
        woke.append((name, time.now))

    time.run(sleeper("late", 2.0), sleeper("early", 0.5), sleeper("now", 0.0))
    assert woke == [("now", 0.0), ("early", 0.5), ("late", 2.0)]


def test_a_share_scales_every_limiter_that_follows_it() -> None:
    clock = [0.0]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    share = Share()
    limiter = RateLimiter(lambda: clock[0], sleep, rate=100.0, rates={"/slow": 10.0})
    limiter.bucket("/fast")
    share.follow(limiter)
    share.set(0.5)
    assert limiter.bucket("/fast").rate == 50.0
    assert limiter.bucket("/slow").rate == 5.0  # a bucket made after the change follows too
    share.set(0.0)  # no partitions: the smallest share, never a division by zero
    assert limiter.bucket("/fast").rate == 100.0 * MIN_SHARE
