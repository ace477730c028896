"""The delivery side of a Kafka queue (``KafkaWork``) against a real broker (Tansu).

Each test makes its own topics under a fresh prefix on one broker started for the module.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
from tests.kafka_broker import Broker, running_broker

from attentive_router._queue.interface import NewEvent, QueueError, Settlement, State
from attentive_router._queue.kafka.settings import KafkaSettings, parse_url
from attentive_router._queue.kafka.topics import ensure_topics
from attentive_router._queue.kafka.work import KafkaWork

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        yield started


@pytest.fixture
def queue(broker: Broker) -> KafkaSettings:
    settings = parse_url(broker.url(f"work{next(_prefixes)}-{time.time_ns()}"))
    settings = settings.with_options(partitions=4, session_timeout=3.0)
    asyncio.run(ensure_topics(settings))
    return settings


def event(key: str, user: str, at: float = 1_800_000_000.0) -> NewEvent:
    body = {"type": "track", "event": "Thing", "messageId": key, "userId": user}
    return NewEvent(key=key, user=user, event=orjson.dumps(body), received_at=at, source="shop")


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.05)


def started(settings: KafkaSettings, **options: object) -> KafkaWork:
    work = KafkaWork(settings, **options)  # type: ignore[arg-type]
    work.start()
    return work


def claim_all(work: KafkaWork, expected: int, now: float = 2e9) -> list[int]:
    """Claim (and settle as delivered) until ``expected`` events were claimed; their keys."""
    keys: list[int] = []
    deadline = time.monotonic() + 30
    while len(keys) < expected:
        assert time.monotonic() < deadline, f"claimed {len(keys)} of {expected}"
        claims = work.claim(now, 100)
        if not claims:
            time.sleep(0.05)
            continue
        keys.extend(int(claim.key) for claim in claims)
        work.settle([Settlement(claim.id, State.DELIVERED, attempts=1) for claim in claims])
    return keys


def test_per_user_order_and_one_event_in_flight_per_user(queue: KafkaSettings) -> None:
    work = started(queue)
    try:
        work.put([event(str(n), f"u{n % 3}") for n in range(30)], 0)
        wait_for(lambda: len(work.claim(2e9, 0)) == 0 and work.counts()[State.QUEUED] == 30)
        first = work.claim(2e9, 100)
        # One event per user can be in flight: the oldest of each.
        assert sorted(int(claim.key) for claim in first) == [0, 1, 2]
        assert work.claim(2e9, 100) == []
        work.settle([Settlement(claim.id, State.DELIVERED, attempts=1) for claim in first])
        rest = claim_all(work, 27)
        for user in range(3):
            mine = [key for key in rest if key % 3 == user]
            assert mine == sorted(mine)
    finally:
        work.close()


def test_a_retry_holds_its_user_and_not_the_others(queue: KafkaSettings) -> None:
    work = started(queue)
    try:
        work.put([event("1", "a"), event("2", "a"), event("3", "b")], 0)
        wait_for(lambda: work.counts()[State.QUEUED] == 3)
        now = 1_800_000_100.0
        claims = {claim.key: claim for claim in work.claim(now, 10)}
        assert set(claims) == {"1", "3"}
        work.settle(
            [
                Settlement(claims["1"].id, State.QUEUED, attempts=1, next_attempt_at=now + 100),
                Settlement(claims["3"].id, State.DELIVERED, attempts=1),
            ]
        )
        assert work.claim(now + 50, 10) == []  # "2" waits behind its user's retry
        assert work.next_due() == now + 100
        again = work.claim(now + 100, 10)
        assert [(claim.key, claim.attempts) for claim in again] == [("1", 1)]
    finally:
        work.close()


def test_a_restarted_worker_resumes_at_the_oldest_unsettled_event(queue: KafkaSettings) -> None:
    work = started(queue)
    work.put([event(str(n), f"u{n}") for n in range(10)], 0)
    wait_for(lambda: work.counts()[State.QUEUED] == 10)
    claims = sorted(work.claim(2e9, 100), key=lambda claim: int(claim.key))
    # Settle all but two; those two were "in flight" when the worker died.
    unsettled = {claims[3].key, claims[7].key}
    work.settle(
        [Settlement(c.id, State.DELIVERED, attempts=1) for c in claims if c.key not in unsettled]
    )
    time.sleep(0.8)  # past the commit interval: what is settled is committed
    work.close()
    again = started(queue)
    try:
        wait_for(lambda: again.counts()[State.QUEUED] >= 2)
        keys = {claim.key for claim in again.claim(2e9, 100)}
        # Everything unsettled comes back; settled events of the same partitions may come back
        # only when they follow an unsettled one there, never the ones before it.
        assert unsettled <= keys
        assert again.duplicates == 0
    finally:
        again.close()


def test_a_resent_batch_is_delivered_once_even_after_a_restart(queue: KafkaSettings) -> None:
    work = started(queue)
    work.put([event(str(n), f"u{n}") for n in range(8)], 0)
    assert sorted(claim_all(work, 8)) == list(range(8))
    time.sleep(0.8)
    work.put([event(str(n), f"u{n}", at=1_800_000_100.0) for n in range(8)], 0)
    wait_for(lambda: work.duplicates == 8)
    assert work.claim(2e9, 100) == []
    work.close()
    # A new worker rebuilds its memory of messageIds from the log before the committed offset.
    again = started(queue)
    try:
        again.put([event(str(n), f"u{n}", at=1_800_000_200.0) for n in range(8)], 0)
        wait_for(lambda: again.duplicates == 8)
        assert again.claim(2e9, 100) == []
    finally:
        again.close()


def test_a_dead_letter_is_kept_in_its_topic_and_replayed(queue: KafkaSettings) -> None:
    work = started(queue)
    try:
        work.put([event("d1", "u1")], 0)
        wait_for(lambda: work.counts()[State.QUEUED] == 1)
        (claim,) = work.claim(2e9, 10)
        work.settle(
            [
                Settlement(
                    claim.id,
                    State.DEAD,
                    attempts=3,
                    status=400,
                    response='{"error":"bad"}',
                    reason="permanent_error",
                    message="Attentive answered 400",
                    endpoint="/v1/events/custom",
                    request=b'{"method":"POST"}',
                )
            ]
        )
        (letter,) = work.records(State.DEAD)
        assert (letter.key, letter.reason, letter.status, letter.attempts) == (
            "d1",
            "permanent_error",
            400,
            3,
        )
        assert orjson.loads(letter.event)["messageId"] == "d1"
        assert work.replay(None, 0) == 1
        assert work.records(State.DEAD) == []
        # The replayed event comes back to be delivered although its messageId was seen.
        wait_for(lambda: work.counts()[State.QUEUED] == 1)
        (again,) = work.claim(2e9, 10)
        assert again.key == "d1"
    finally:
        work.close()


def test_fetching_pauses_at_the_bound(queue: KafkaSettings) -> None:
    work = started(queue, max_held=20)
    try:
        work.put([event(str(n), f"u{n}") for n in range(200)], 0)
        wait_for(lambda: work.counts()[State.QUEUED] >= 20)
        time.sleep(1.0)
        held = work.counts()[State.QUEUED]
        assert 20 <= held < 200
        assert sorted(claim_all(work, 200)) == list(range(200))
    finally:
        work.close()


def test_two_workers_share_the_partitions_and_the_rate(queue: KafkaSettings) -> None:
    shares: dict[str, float] = {}
    one = started(queue, on_share=lambda share: shares.__setitem__("one", share))
    wait_for(lambda: shares.get("one") == 1.0)
    two = started(queue, on_share=lambda share: shares.__setitem__("two", share))
    try:
        wait_for(lambda: shares.get("one") == 0.5 and shares.get("two") == 0.5, 40)
        lags = one.lag() + two.lag()
        assert sorted(lag.partition for lag in lags) == [0, 1, 2, 3]
    finally:
        two.close()
    wait_for(lambda: shares.get("one") == 1.0, 40)
    one.close()


def test_a_missing_topic_is_named(broker: Broker) -> None:
    work = KafkaWork(parse_url(broker.url("never-made")))
    with pytest.raises(QueueError, match="kafka init"):
        work.start()
    work.close()


def test_a_rebalance_lets_events_in_flight_finish_so_nobody_sends_them_again(
    queue: KafkaSettings,
) -> None:
    one = started(queue)
    try:
        one.put([event(str(n), f"u{n}") for n in range(8)], 0)
        wait_for(lambda: one.counts()[State.QUEUED] == 8)
        flying = one.claim(2e9, 100)
        assert len(flying) == 8
        two = started(queue)
        try:
            # The rebalance has begun when nothing more can be claimed from ``one``'s
            # partitions; the events in flight are settled while it waits for them.
            wait_for(lambda: one.share < 1.0 or not one._ready(0), 40)
            one.settle([Settlement(claim.id, State.DELIVERED, attempts=1) for claim in flying])
            wait_for(lambda: one.share == 0.5 and two.share == 0.5, 40)
            time.sleep(1.0)
            held = one.counts()[State.QUEUED] + two.counts()[State.QUEUED]
            assert held == 0, "events settled during the rebalance were read again"
        finally:
            two.close()
    finally:
        one.close()


def test_a_partition_waits_for_its_oldest_unsettled_event_past_max_ahead(
    broker: Broker,
) -> None:
    settings = parse_url(broker.url(f"ahead-{time.time_ns()}")).with_options(
        partitions=1, session_timeout=3.0
    )
    asyncio.run(ensure_topics(settings))
    work = started(settings, max_ahead=6)
    try:
        work.put([event("first", "slow")], 0)
        wait_for(lambda: work.counts()[State.QUEUED] == 1)
        (slow,) = work.claim(2e9, 10)  # in flight, unsettled: it holds the committed offset
        work.put([event(str(n), f"u{n}") for n in range(40)], 0)
        settled: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # deliver whatever the worker reads meanwhile
            claims = work.claim(2e9, 100)
            work.settle([Settlement(c.id, State.DELIVERED, attempts=1) for c in claims])
            settled += [c.key for c in claims]
            time.sleep(0.1)
        # Read at most max_ahead past the slow event, plus half of it for the last fetch: a
        # successor would repeat no more than that if this worker died now.
        assert 1 <= len(settled) <= 6 + 3
        (lag,) = work.lag()
        assert lag.committed == 0
        work.settle([Settlement(slow.id, State.DELIVERED, attempts=1)])
        assert sorted(claim_all(work, 40 - len(settled)) + [int(k) for k in settled]) == list(
            range(40)
        )
    finally:
        work.close()
