"""Every queue backend against the one queue contract (``tests/queue_contract.py``).

Adding a backend is one line in ``BACKENDS``: a callable ``(directory, **options) -> Queue``.

The Kafka backend's delivery side (``KafkaWork``) runs the contract's tests of claiming,
settling, per-user order, retries, recovery and dead letters against a real broker (Tansu).
A Kafka queue is a log, not a table: it keeps no record of each event beyond its dead letters,
its writers do not look for duplicates (its workers drop them as they read), and its events
reach a worker a moment after they are written. ``NOT_FOR_KAFKA`` names the tests that do not
apply, each with the reason; ``put`` of the test adapter waits until the worker holds what was
written, so that the tests can claim at once as they do from a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from attentive_router._queue.interface import Enqueued, NewEvent, Queue, State
from attentive_router._queue.kafka.settings import KafkaSettings, parse_url
from attentive_router._queue.kafka.topics import ensure_topics
from attentive_router._queue.kafka.work import KafkaWork
from attentive_router._queue.sqlite import SQLiteQueue

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.kafka_broker import Broker, running_broker  # noqa: E402
from tests.queue_contract import Backend, Opener, QueueContract  # noqa: E402

NO_RECORDS = "a Kafka queue keeps no record of each event besides its dead letters"
NO_PUT_DEDUPE = "Kafka's writers do not look for duplicates: the workers drop them as they read"
COUNTS_SETTLED = (
    "a worker's counts are what it holds and what it settled since it started, not what the "
    "log holds"
)
IN_MEMORY = (
    "what is in flight lives in the worker's memory: a restarted worker reads every unsettled "
    "event again from the committed offset (tests/test_kafka_work.py)"
)
NOT_FOR_KAFKA = {
    "test_put_stores_new_events_as_queued": NO_RECORDS,
    "test_put_counts_keys_seen_within_the_window_as_duplicates": NO_PUT_DEDUPE,
    "test_the_same_key_from_another_source_is_not_a_duplicate": NO_PUT_DEDUPE,
    "test_a_key_is_accepted_again_after_the_window": NO_PUT_DEDUPE,
    "test_rejected_inputs_are_stored_as_rejected_and_never_claimed": NO_RECORDS,
    "test_put_many_answers_each_batch_as_a_put_of_its_own": NO_PUT_DEDUPE,
    "test_put_many_keeps_the_window_of_each_batch": NO_PUT_DEDUPE,
    "test_put_many_stores_what_puts_one_after_another_store": NO_RECORDS,
    "test_settle_persists_every_field": NO_RECORDS,
    "test_settle_changes_only_events_in_flight": NO_RECORDS,
    "test_settle_writes_a_whole_batch": NO_RECORDS,
    "test_records_filters_by_state_and_pages_by_id": NO_RECORDS,
    "test_record_by_id_and_by_key": NO_RECORDS,
    "test_prune_forgets_old_finished_events_and_keeps_the_rest": NO_RECORDS,
    "test_prune_forgets_old_keys_only": NO_PUT_DEDUPE,
    "test_a_new_connection_sees_what_put_and_settle_wrote": NO_RECORDS,
    "test_random_histories_agree_with_a_model": NO_RECORDS,
    "test_claim_returns_due_events_in_order_and_marks_them_in_flight": NO_RECORDS,
    "test_a_users_later_event_waits_while_an_earlier_one_is_in_flight": NO_RECORDS,
    "test_release_puts_claimed_events_back_unchanged": NO_RECORDS,
    "test_replay_requeues_every_dead_letter_with_fresh_attempts": NO_RECORDS,
    "test_replay_requeues_only_the_selected_dead_letters": NO_RECORDS,
    "test_replaying_twice_requeues_nothing_the_second_time": COUNTS_SETTLED,
    "test_recover_after_a_crash_returns_in_flight_events_to_the_queue": IN_MEMORY,
}
"""The contract's tests that do not apply to a Kafka queue, and why."""


class _KafkaContractQueue(KafkaWork):
    """A worker whose ``put`` returns once the worker holds what was written."""

    def put_many(self, batches: Sequence[tuple[Sequence[NewEvent], float]]) -> list[Enqueued]:
        before = self._taken()
        answers = super().put_many(batches)
        self._wait_for(before + sum(len(events) for events, _now in batches))
        return answers

    def replay(self, ids: Iterable[int] | None, now: float) -> int:
        before = self._taken()
        replayed = super().replay(ids, now)
        self._wait_for(before + replayed)
        return replayed

    def _wait_for(self, taken: int) -> None:
        deadline = time.monotonic() + 30
        while self._taken() < taken:
            assert time.monotonic() < deadline, "the worker did not read what was written"
            time.sleep(0.02)

    def _taken(self) -> int:
        counts = self.counts()
        held = counts[State.QUEUED] + counts[State.IN_FLIGHT]
        settled = sum(
            counts[state] for state in State if state not in (State.QUEUED, State.IN_FLIGHT)
        )
        return held + settled + self.duplicates


_broker: list[Broker] = []


def _kafka(directory: Path, **options: Any) -> Queue:
    (broker,) = _broker
    name = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    settings: KafkaSettings = parse_url(broker.url(f"contract-{name}")).with_options(
        partitions=1, session_timeout=2.0
    )
    asyncio.run(ensure_topics(settings))
    queue = _KafkaContractQueue(settings, dedupe_window=options.get("dedupe_window", 24 * 3600.0))
    queue.start()
    # The first assignment comes with the group's first rebalance: wait for it.
    deadline = time.monotonic() + 30
    while queue.share < 1.0:
        assert time.monotonic() < deadline, "the worker was not given the partition"
        time.sleep(0.02)
    return queue


BACKENDS: dict[str, Backend] = {
    "sqlite": lambda tmp_path, **kw: SQLiteQueue(tmp_path / "q.db", **kw),
    "kafka": _kafka,
}


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[None]:
    with running_broker() as broker:
        _broker.append(broker)
        yield
        _broker.clear()


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def queue_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "kafka":
        reason = NOT_FOR_KAFKA.get(request.node.originalname)
        if reason is not None:
            pytest.skip(reason)
        request.getfixturevalue("kafka_broker")
    opener = Opener(BACKENDS[request.param], tmp_path)
    yield opener
    opener.close_all()


class TestQueueContract(QueueContract):
    """The whole contract, once per backend."""
