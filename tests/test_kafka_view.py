"""The console's look at a Kafka queue (``KafkaView``) against a real broker (Tansu).

Events are written with the project's own intake, delivered by a real ``KafkaWork`` worker; the
view lists them, reports the delivery group's lag without joining the group, and reaches the
dead letters. Each test makes its own topics under a fresh prefix on one broker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Sequence

import orjson
import pytest
from tests.kafka_broker import Broker, free_port, running_broker

from attentive_router._queue.interface import NewEvent, QueueError, Settlement, State
from attentive_router._queue.kafka.intake import KafkaIntake
from attentive_router._queue.kafka.settings import KafkaSettings, parse_url
from attentive_router._queue.kafka.topics import ensure_topics
from attentive_router._queue.kafka.view import STEP, KafkaView
from attentive_router._queue.kafka.work import KafkaWork

BASE = 1_800_000_000.0
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        yield started


def make_queue(broker: Broker, partitions: int = 4) -> KafkaSettings:
    settings = parse_url(broker.url(f"view{next(_prefixes)}-{time.time_ns()}"))
    settings = settings.with_options(partitions=partitions, session_timeout=3.0)
    asyncio.run(ensure_topics(settings))
    return settings


@pytest.fixture
def queue(broker: Broker) -> KafkaSettings:
    return make_queue(broker)


@pytest.fixture
def view(queue: KafkaSettings) -> Iterator[KafkaView]:
    opened = KafkaView(queue)
    yield opened
    opened.close()


def event(key: str, user: str, at: float, **options: object) -> NewEvent:
    body = {"type": "track", "event": "Thing", "messageId": key, "userId": user}
    return NewEvent(
        key=key,
        user=user,
        event=orjson.dumps(body),
        received_at=at,
        source="shop",
        **options,  # type: ignore[arg-type]
    )


def ingest(settings: KafkaSettings, destination: str, events: Sequence[NewEvent]) -> None:
    """Write ``events`` as ``serve`` does, through the intake's producer."""

    async def write() -> None:
        intake = KafkaIntake(settings, destination, ack_timeout=10.0)
        await intake.start()
        try:
            await intake.put(events, 0)
        finally:
            await intake.stop()

    asyncio.run(write())


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.05)


def deliver_all(work: KafkaWork, expected: int) -> None:
    """Claim and settle as delivered until ``expected`` events were settled."""
    settled = 0
    deadline = time.monotonic() + 30
    while settled < expected:
        assert time.monotonic() < deadline, f"settled {settled} of {expected}"
        claims = work.claim(2e9, 100)
        if not claims:
            time.sleep(0.05)
            continue
        work.settle([Settlement(claim.id, State.DELIVERED, attempts=1) for claim in claims])
        settled += len(claims)


def test_tail_lists_the_destinations_newest_events_first_with_their_fields(
    queue: KafkaSettings, view: KafkaView
) -> None:
    mine = [
        event(str(n), f"u{n % 5}", BASE + n, rejected=("invalid_json", "bad") if n == 9 else None)
        for n in range(12)
    ]
    ingest(queue, "default", mine)
    # Another destination's events under the same prefix, received later.
    ingest(queue, "other", [event(f"x{n}", f"u{n}", BASE + 100 + n) for n in range(5)])

    newest = view.tail(limit=5)
    assert [item.key for item in newest] == ["11", "10", "9", "8", "7"]
    by_key = {e.key: e for e in mine}
    for item in newest:
        sent = by_key[item.key]
        assert (item.user, item.source, item.destination) == (sent.user, "shop", "default")
        assert item.received_at == sent.received_at
        assert item.event == sent.event
        assert item.rejected == (("invalid_json", "bad") if item.key == "9" else None)
        assert item.replayed is False

    every = view.tail(limit=100)
    assert [item.key for item in every] == [str(n) for n in reversed(range(12))]
    other = KafkaView(queue, destination="other")
    try:
        theirs = other.tail()
        assert [item.key for item in theirs] == [f"x{n}" for n in reversed(range(5))]
        assert {item.destination for item in theirs} == {"other"}
        # Partition and offset name each record: together the two destinations' records are
        # every offset of every partition, up to the ends the lag reports.
        ends = {lag.partition: lag.end for lag in view.lag()}
        assert sum(ends.values()) == 17
        places = sorted((item.partition, item.offset) for item in every + theirs)
        assert places == sorted((p, offset) for p, end in ends.items() for offset in range(end))
    finally:
        other.close()


def test_tail_reads_further_back_for_a_destination_with_few_recent_events(
    broker: Broker,
) -> None:
    queue = make_queue(broker, partitions=1)
    ingest(queue, "default", [event(str(n), "u", BASE + n) for n in range(3)])
    # More of another destination's records after them than the first look back reads.
    crowd = [event(f"x{n}", f"u{n}", BASE + 10 + n) for n in range(STEP + 50)]
    ingest(queue, "other", crowd)
    ingest(queue, "default", [event("3", "u", BASE + 1000)])
    view = KafkaView(queue)
    try:
        tail = view.tail(limit=4)
        assert [item.key for item in tail] == ["3", "2", "1", "0"]
        assert [item.offset for item in tail] == [STEP + 53, 2, 1, 0]
        assert [item.key for item in view.tail(limit=2)] == ["3", "2"]
    finally:
        view.close()


def test_lag_falls_to_zero_once_a_worker_commits_and_reading_it_takes_no_partitions(
    queue: KafkaSettings, view: KafkaView
) -> None:
    ingest(queue, "default", [event(str(n), f"u{n}", BASE + n) for n in range(20)])
    before = view.lag()
    assert [lag.partition for lag in before] == [0, 1, 2, 3]
    assert sum(lag.end for lag in before) == 20
    assert all(lag.committed is None and lag.lag == lag.end for lag in before)

    shares: list[float] = []
    work = KafkaWork(queue, on_share=shares.append)
    work.start()
    try:
        wait_for(lambda: shares[-1:] == [1.0])
        wait_for(lambda: work.counts()[State.QUEUED] == 20)
        rebalances = len(shares)
        for _ in range(3):
            during = view.lag()
            assert [lag.end for lag in during] == [lag.end for lag in before]
            assert sum(lag.lag for lag in during) == 20  # nothing settled yet
        time.sleep(2.0)  # past the worker's heartbeats: a join would have started a rebalance
        assert len(shares) == rebalances
        assert work.share == 1.0
        assert [lag.partition for lag in work.lag()] == [0, 1, 2, 3]

        deliver_all(work, 20)
        wait_for(lambda: all(lag.lag == 0 for lag in view.lag()))
        after = view.lag()
        assert [lag.end for lag in after] == [lag.end for lag in before]
        # Settled up to the end wherever there were records (an empty partition has none).
        assert all(lag.committed == lag.end for lag in after if lag.end)
        assert len(shares) == rebalances
    finally:
        work.close()


def test_dead_letters_are_reached_through_the_view(queue: KafkaSettings, view: KafkaView) -> None:
    assert view.dead_letters is view.dead_letters
    ingest(queue, "default", [event("d1", "u1", BASE)])
    work = KafkaWork(queue)
    work.start()
    try:
        wait_for(lambda: work.counts()[State.QUEUED] == 1)
        (claim,) = work.claim(2e9, 10)
        work.settle(
            [
                Settlement(
                    claim.id,
                    State.DEAD,
                    attempts=3,
                    status=400,
                    reason="permanent_error",
                    message="Attentive answered 400",
                )
            ]
        )
        (letter,) = view.dead_letters.records(State.DEAD)
        assert (letter.key, letter.reason, letter.status) == ("d1", "permanent_error", 400)
        assert view.dead_letters.record("d1") == letter
        assert view.dead_letters.replay(None, 0) == 1
        assert view.dead_letters.records() == []
    finally:
        work.close()
    replayed, original = view.tail()
    assert (replayed.key, replayed.replayed) == ("d1", True)
    assert (original.key, original.replayed) == ("d1", False)
    assert replayed.partition == original.partition
    assert replayed.offset > original.offset


def test_a_missing_topic_is_named_with_the_command_that_makes_it(broker: Broker) -> None:
    view = KafkaView(parse_url(broker.url("never-made")))
    try:
        for look in (view.tail, view.lag):
            with pytest.raises(QueueError) as raised:
                look()
            assert "never-made.events does not exist" in str(raised.value)
            assert "attentive-router kafka init" in str(raised.value)
    finally:
        view.close()


def test_brokers_that_do_not_answer_are_a_queue_error() -> None:
    view = KafkaView(parse_url(f"kafka://127.0.0.1:{free_port()}/nobody"))
    try:
        with pytest.raises(QueueError, match=r"Kafka at 127\.0\.0\.1:\d+"):
            view.lag()
    finally:
        view.close()
