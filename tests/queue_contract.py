"""The queue contract: every promise of ``attentive_router._queue.interface.Queue``, written once.

``QueueContract`` holds the tests; ``tests/test_queue_contract.py`` runs them for every
backend it lists, through the ``queue_factory`` fixture (an ``Opener``). The tests use only the
``Queue`` protocol, so a new backend passes or fails on the same terms as the SQLite one.

A backend is a callable ``(directory, **options) -> Queue``. ``directory`` is private to one
test (a backend that keeps no files may use its name as a namespace); ``options`` are
``dedupe_window`` and ``retention``. Calling it again with the same directory opens the same
store over a new connection: that is how the tests check durability and simulate a crash.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from attentive_router._queue.interface import (
    FINAL_STATES,
    Claim,
    Enqueued,
    NewEvent,
    Queue,
    Record,
    Settlement,
    State,
)

Backend = Callable[..., Queue]
"""``(directory, **options) -> Queue``: opens (or reopens) the store kept in ``directory``."""

T0 = 1_800_000_000.0
"""An arbitrary epoch time; every test counts from it."""


class Opener:
    """Opens queues of one backend on one test's store and closes them after the test."""

    def __init__(self, backend: Backend, directory: Path, opened: list[Queue] | None = None):
        self.backend = backend
        self.directory = directory
        self._opened: list[Queue] = [] if opened is None else opened
        self._names = itertools.count()

    def __call__(self, **options: float) -> Queue:
        """Open the store (again): a new connection to the same events."""
        queue = self.backend(self.directory, **options)
        self._opened.append(queue)
        return queue

    def close(self, queue: Queue) -> None:
        """Close ``queue`` now, as a crash would: nothing is settled or released first."""
        self._opened.remove(queue)
        queue.close()

    def fresh(self) -> Opener:
        """An opener on a new, empty store (for tests that need many stores)."""
        directory = self.directory / f"store-{next(self._names)}"
        directory.mkdir()
        return Opener(self.backend, directory, self._opened)

    def close_all(self) -> None:
        """Close every queue the test left open."""
        while self._opened:
            self._opened.pop().close()


def event(
    key: str,
    user: str = "u1",
    received_at: float = T0,
    source: str = "default",
    rejected: tuple[str, str] | None = None,
) -> NewEvent:
    """A small event whose bytes name its key."""
    body = f'{{"messageId":"{key}","userId":"{user}"}}'.encode()
    return NewEvent(key, user, body, received_at, source=source, rejected=rejected)


def settle(queue: Queue, event_id: int, state: State, **fields: Any) -> None:
    """Settle one claimed event (one attempt unless ``fields`` says otherwise)."""
    values: dict[str, Any] = {"attempts": 1, "last_attempt_at": T0 + 1.0, **fields}
    queue.settle([Settlement(event_id, state, **values)])


def finish(queue: Queue, keys: Iterable[str], state: State, now: float = T0, **fields: Any) -> None:
    """Claim the due events with ``keys``, settle each to ``state``; put the others back."""
    wanted = set(keys)
    claims = queue.claim(now, 10_000)
    assert wanted <= {c.key for c in claims}
    for claim in claims:
        if claim.key in wanted:
            settle(queue, claim.id, state, **fields)
    queue.release(c.id for c in claims if c.key not in wanted)


def dead_letter(queue: Queue, key: str, user: str, **fields: Any) -> int:
    """Put, claim and dead-letter one event; return its id."""
    queue.put([event(key, user)], T0)
    finish(queue, [key], State.DEAD, **fields)
    found = queue.record(key)
    assert found is not None
    assert found.state is State.DEAD
    return found.id


def ids_of(claims: Iterable[Claim]) -> list[int]:
    """The ids of ``claims``, in the order given."""
    return [c.id for c in claims]


def keys_of(items: Iterable[Claim | Record]) -> list[str]:
    """The keys of ``items``, in the order given."""
    return [c.key for c in items]


def by_key(queue: Queue, key: str) -> Record:
    """The record of ``key``, which must exist."""
    found = queue.record(key)
    assert found is not None, key
    return found


def zero_counts(**nonzero: int) -> dict[State, int]:
    """Counts with every state, all zero except those named (by lower-case state name)."""
    counts = dict.fromkeys(State, 0)
    for name, count in nonzero.items():
        counts[State[name.upper()]] = count
    return counts


class QueueContract:
    """The tests every backend must pass; they take the ``queue_factory`` fixture."""

    # put and deduplication

    def test_put_stores_new_events_as_queued(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        batch = [event("a", "u1"), event("b", "u2", T0 + 1), event("c", "u1", source="s2")]
        assert queue.put(batch, T0 + 2) == Enqueued(accepted=3, duplicates=0)
        assert queue.counts() == zero_counts(queued=3)
        records = queue.records()
        assert [(r.key, r.user, r.source, r.event, r.received_at) for r in records] == [
            (e.key, e.user, e.source, e.event, e.received_at) for e in batch
        ]
        for record in records:
            assert record.state is State.QUEUED
            assert (record.attempts, record.throttles, record.done) == (0, 0, 0)
            assert record.first_attempt_at is None
            assert record.last_attempt_at is None
            assert (record.status, record.response, record.reason, record.message) == (None,) * 4
            assert (record.endpoint, record.request) == (None, None)

    def test_put_counts_keys_seen_within_the_window_as_duplicates(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory(dedupe_window=100.0)
        assert queue.put([event("a"), event("b")], T0) == Enqueued(2, 0)
        first_a = by_key(queue, "a")
        again = [event("a", received_at=T0 + 50), event("c"), event("c", "u2")]
        assert queue.put(again, T0 + 50) == Enqueued(accepted=1, duplicates=2)
        assert keys_of(queue.records()) == ["a", "b", "c"]
        assert by_key(queue, "a") == first_a
        assert by_key(queue, "c").user == "u1"
        assert queue.put([event("b")], T0 + 99) == Enqueued(0, 1)
        assert queue.counts() == zero_counts(queued=3)

    def test_the_same_key_from_another_source_is_not_a_duplicate(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        assert queue.put([event("a", source="s1")], T0) == Enqueued(1, 0)
        assert queue.put([event("a", source="s2")], T0) == Enqueued(1, 0)
        assert queue.put([event("a", source="s1"), event("a", source="s2")], T0) == Enqueued(0, 2)
        assert sorted(r.source for r in queue.records()) == ["s1", "s2"]

    def test_a_key_is_accepted_again_after_the_window(self, queue_factory: Opener) -> None:
        queue = queue_factory(dedupe_window=100.0)
        queue.put([event("a")], T0)
        assert queue.put([event("a")], T0 + 99) == Enqueued(0, 1)
        assert queue.put([event("a", received_at=T0 + 101)], T0 + 101) == Enqueued(1, 0)
        # Seen again at T0 + 101: the window starts over from there.
        assert queue.put([event("a")], T0 + 150) == Enqueued(0, 1)
        assert [r.received_at for r in queue.records()] == [T0, T0 + 101]
        assert by_key(queue, "a").received_at == T0 + 101

    def test_rejected_inputs_are_stored_as_rejected_and_never_claimed(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        bad = event("bad", "u1", rejected=("invalid_json", "line 3: not valid JSON"))
        assert queue.put([bad, event("good", "u1")], T0) == Enqueued(2, 0, ("invalid_json",))
        assert queue.counts() == zero_counts(queued=1, rejected=1)
        stored = by_key(queue, "bad")
        assert stored.state is State.REJECTED
        assert (stored.reason, stored.message) == ("invalid_json", "line 3: not valid JSON")
        assert stored.event == bad.event
        # Final, so it holds back nothing: the user's later event is due.
        assert queue.next_due() == T0
        assert keys_of(queue.claim(T0 + 10_000, 10)) == ["good"]
        assert queue.claim(T0 + 10_000, 10) == []
        assert queue.next_due() is None
        assert by_key(queue, "bad").state is State.REJECTED
        # A repeated key is a duplicate, rejected or not; only stored rejections are reported.
        again = [bad, event("worse", "u2", rejected=("not_an_object", "a list"))]
        assert queue.put(again, T0 + 1) == Enqueued(1, 1, ("not_an_object",))
        assert queue.counts() == zero_counts(in_flight=1, rejected=2)

    # put_many: several requests in one transaction (group commit)

    def test_put_many_answers_each_batch_as_a_put_of_its_own(self, queue_factory: Opener) -> None:
        queue = queue_factory(dedupe_window=100.0)
        queue.put([event("old")], T0)
        bad = event("bad", "u3", T0 + 2, rejected=("invalid_json", "not JSON"))
        batches: list[tuple[list[NewEvent], float]] = [
            ([event("a", "u1", T0 + 1), event("old", "u1", T0 + 1)], T0 + 1),
            # The same messageId as the first batch: a duplicate, as if committed after it.
            ([event("a", "u2", T0 + 2), bad, event("b", "u2", T0 + 2)], T0 + 2),
            ([event("a", "u1", T0 + 3, source="s2"), event("b", "u9", T0 + 3)], T0 + 3),
            ([], T0 + 4),
        ]
        assert queue.put_many(batches) == [
            Enqueued(1, 1),
            Enqueued(2, 1, ("invalid_json",)),
            Enqueued(1, 1),
            Enqueued(0, 0),
        ]
        stored = [(r.key, r.user, r.source, r.state, r.received_at) for r in queue.records()]
        assert stored == [
            ("old", "u1", "default", State.QUEUED, T0),
            ("a", "u1", "default", State.QUEUED, T0 + 1),
            ("bad", "u3", "default", State.REJECTED, T0 + 2),
            ("b", "u2", "default", State.QUEUED, T0 + 2),
            ("a", "u1", "s2", State.QUEUED, T0 + 3),
        ]
        # Each key was seen at its own batch's time: "a" is remembered from T0 + 1.
        assert queue.put([event("a")], T0 + 100) == Enqueued(0, 1)
        assert queue.put([event("a", received_at=T0 + 102)], T0 + 102) == Enqueued(1, 0)

    def test_put_many_keeps_the_window_of_each_batch(self, queue_factory: Opener) -> None:
        queue = queue_factory(dedupe_window=100.0)
        queue.put([event("a")], T0)
        answers = queue.put_many(
            [([event("a")], T0 + 50), ([event("a", received_at=T0 + 150)], T0 + 150)]
        )
        # 50 s after its first put "a" is a duplicate; at T0 + 150 the window has passed.
        assert answers == [Enqueued(0, 1), Enqueued(1, 0)]
        assert [r.received_at for r in queue.records()] == [T0, T0 + 150]

    def test_put_many_stores_what_puts_one_after_another_store(self, queue_factory: Opener) -> None:
        rng = random.Random(20261203)  # noqa: S311 - test data, not secrets
        grouped, one_by_one = (
            queue_factory(dedupe_window=30.0),
            queue_factory.fresh()(dedupe_window=30.0),
        )
        now = T0
        for _ in range(40):
            batches: list[tuple[list[NewEvent], float]] = []
            for _ in range(rng.randint(1, 5)):
                now += rng.choice([0.0, 1.0, 20.0])
                batch = [
                    event(
                        f"k{rng.randrange(30)}",
                        f"u{rng.randrange(4)}",
                        now,
                        source=rng.choice(["s1", "s2"]),
                        rejected=("invalid_json", "bad") if rng.random() < 0.1 else None,
                    )
                    for _ in range(rng.randint(0, 6))
                ]
                batches.append((batch, now))
            expected = [one_by_one.put(batch, at) for batch, at in batches]
            assert grouped.put_many(batches) == expected
        assert grouped.records(limit=10_000) == one_by_one.records(limit=10_000)
        assert len(grouped.records(limit=10_000)) > 30

    # claim

    def test_claim_returns_due_events_in_order_and_marks_them_in_flight(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        batch = [event(f"k{i}", f"u{i}", T0 + i) for i in range(4)]
        queue.put(batch, T0 + 4)
        claims = queue.claim(T0 + 4, 10)
        stored = queue.records()
        assert claims == [Claim(r.id, r.key, r.event, r.received_at, 0, 0, None, 0) for r in stored]
        assert ids_of(claims) == sorted(ids_of(claims))
        assert all(r.state is State.IN_FLIGHT for r in queue.records())
        assert queue.counts() == zero_counts(in_flight=4)
        assert queue.claim(T0 + 4, 10) == []

    def test_claim_respects_the_limit(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event(f"k{i}", f"u{i}") for i in range(5)], T0)
        assert keys_of(queue.claim(T0, 2)) == ["k0", "k1"]
        assert keys_of(queue.claim(T0, 2)) == ["k2", "k3"]
        assert keys_of(queue.claim(T0, 2)) == ["k4"]
        assert queue.claim(T0, 2) == []

    def test_claim_takes_the_earliest_due_first(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("late", "u1", T0 + 30), event("early", "u2", T0 + 10)], T0 + 30)
        queue.put([event("middle", "u3", T0 + 20)], T0 + 30)
        claims = queue.claim(T0 + 100, 2)
        assert keys_of(claims) == ["early", "middle"]  # earliest two, returned in id order
        assert keys_of(queue.claim(T0 + 100, 2)) == ["late"]

    def test_claim_waits_for_the_next_attempt_time(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("a", received_at=T0 + 50)], T0 + 50)
        assert queue.claim(T0 + 49, 10) == []
        (claim,) = queue.claim(T0 + 50, 10)
        settle(queue, claim.id, State.QUEUED, next_attempt_at=T0 + 100)
        assert queue.claim(T0 + 99.5, 10) == []
        assert ids_of(queue.claim(T0 + 100, 10)) == [claim.id]

    def test_a_claim_carries_the_progress_of_earlier_attempts(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("a")], T0)
        (claim,) = queue.claim(T0, 1)
        settle(
            queue,
            claim.id,
            State.QUEUED,
            attempts=3,
            throttles=2,
            done=1,
            first_attempt_at=T0 + 1,
            next_attempt_at=T0 + 5,
        )
        (again,) = queue.claim(T0 + 5, 1)
        assert again == attrs.evolve(
            claim, attempts=3, throttles=2, done=1, first_attempt_at=T0 + 1
        )

    # per-user order

    def test_a_users_later_event_waits_while_an_earlier_one_is_in_flight(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        queue.put([event("u1-1", "u1"), event("u1-2", "u1"), event("u2-1", "u2")], T0)
        assert keys_of(queue.claim(T0, 10)) == ["u1-1", "u2-1"]
        assert queue.claim(T0 + 1000, 10) == []
        queue.put([event("u3-1", "u3")], T0)
        assert keys_of(queue.claim(T0, 10)) == ["u3-1"]  # other users are not held back
        settle(queue, by_key(queue, "u1-1").id, State.DELIVERED)
        assert keys_of(queue.claim(T0, 10)) == ["u1-2"]

    def test_a_users_later_event_waits_while_an_earlier_one_waits_to_retry(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        queue.put([event("u1-1", "u1")], T0)
        (first,) = queue.claim(T0, 10)
        settle(queue, first.id, State.QUEUED, next_attempt_at=T0 + 100)
        queue.put([event("u1-2", "u1", T0 + 1), event("u2-1", "u2", T0 + 1)], T0 + 1)
        assert keys_of(queue.claim(T0 + 50, 10)) == ["u2-1"]
        assert queue.claim(T0 + 99, 10) == []
        assert keys_of(queue.claim(T0 + 100, 10)) == ["u1-1"]
        assert queue.claim(T0 + 100, 10) == []
        settle(queue, first.id, State.DELIVERED, attempts=2)
        assert keys_of(queue.claim(T0 + 100, 10)) == ["u1-2"]

    @pytest.mark.parametrize("state", sorted(FINAL_STATES), ids=lambda s: s.label)
    def test_a_finished_event_does_not_hold_back_later_ones(
        self, queue_factory: Opener, state: State
    ) -> None:
        queue = queue_factory()
        queue.put([event("first", "u1"), event("second", "u1")], T0)
        (first,) = queue.claim(T0, 10)
        settle(queue, first.id, state)
        assert keys_of(queue.claim(T0, 10)) == ["second"]

    # settle, release, recover

    @pytest.mark.parametrize(
        "state", [s for s in State if s is not State.IN_FLIGHT], ids=lambda s: s.label
    )
    def test_settle_persists_every_field(self, queue_factory: Opener, state: State) -> None:
        queue = queue_factory()
        queue.put([event("a")], T0)
        (claim,) = queue.claim(T0, 1)
        verdict = Settlement(
            id=claim.id,
            state=state,
            attempts=4,
            throttles=3,
            done=2,
            first_attempt_at=T0 + 1.25,
            last_attempt_at=T0 + 7.5,
            next_attempt_at=T0 + 60.0,
            status=503,
            response='{"error": "unavailable"}',
            reason="some_reason",
            message="what happened, in words",
            endpoint="/v1/events/custom",
            request=b'{"method":"POST","path":"/v1/events/custom","body":{}}',
        )
        queue.settle([verdict])
        reopened = queue_factory()
        for view in (queue, reopened):
            stored = view.record(claim.id)
            assert stored is not None
            for name in attrs.fields_dict(Settlement):
                assert getattr(stored, name) == getattr(verdict, name), name
            assert (stored.key, stored.event, stored.received_at) == ("a", claim.event, T0)
            assert view.counts()[state] == 1

    def test_settle_changes_only_events_in_flight(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("queued", "u1"), event("done", "u2")], T0)
        finish(queue, ["done"], State.DELIVERED)
        before = queue.records()
        queued, done = (r.id for r in before)
        queue.settle(
            [
                Settlement(queued, State.DEAD, attempts=9, reason="x"),
                Settlement(done, State.DEAD, attempts=9, reason="x"),
                Settlement(done + 1000, State.DELIVERED, attempts=1),
            ]
        )
        assert queue.records() == before
        assert queue.counts() == zero_counts(queued=1, delivered=1)

    def test_settle_writes_a_whole_batch(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event(f"k{i}", f"u{i}") for i in range(3)], T0)
        claims = queue.claim(T0, 10)
        states = [State.DELIVERED, State.SKIPPED, State.QUEUED]
        queue.settle([Settlement(c.id, s, attempts=1) for c, s in zip(claims, states, strict=True)])
        assert [r.state for r in queue.records()] == states

    def test_release_puts_claimed_events_back_unchanged(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("a", "u1"), event("b", "u2")], T0)
        (a, b) = queue.claim(T0, 10)
        settle(queue, a.id, State.QUEUED, attempts=2, done=1, first_attempt_at=T0 + 1)
        settle(queue, b.id, State.DELIVERED)
        before = queue.records()
        claims = queue.claim(T0 + 10, 10)
        assert ids_of(claims) == [a.id]
        queue.release([c.id for c in claims] + [before[1].id, 12345])
        assert queue.records() == before
        assert queue.claim(T0 + 10, 10) == claims

    def test_recover_after_a_crash_returns_in_flight_events_to_the_queue(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        queue.put([event(f"k{i}", f"u{i}") for i in range(3)], T0)
        before = queue.records()
        claims = queue.claim(T0, 2)
        queue_factory.close(queue)  # the process dies: nothing settled, nothing released
        restarted = queue_factory()
        assert restarted.counts() == zero_counts(queued=1, in_flight=2)
        assert restarted.recover() == 2
        assert restarted.records() == before
        assert restarted.recover() == 0
        assert restarted.claim(T0, 2) == claims

    # next_due

    def test_next_due_is_none_when_nothing_is_queued(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        assert queue.next_due() is None
        queue.put([event("a", "u1"), event("b", "u2"), event("c", "u3")], T0)
        finish(queue, ["a"], State.DELIVERED)
        finish(queue, ["b"], State.DEAD)
        queue.claim(T0, 10)
        assert queue.next_due() is None

    def test_next_due_is_the_earliest_next_attempt_time(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("a", "u1", T0 + 5), event("b", "u2", T0 + 3)], T0 + 5)
        assert queue.next_due() == T0 + 3
        claims = queue.claim(T0 + 5, 10)
        settle(queue, claims[0].id, State.QUEUED, next_attempt_at=T0 + 100)
        settle(queue, claims[1].id, State.QUEUED, next_attempt_at=T0 + 40)
        assert queue.next_due() == T0 + 40

    def test_next_due_ignores_users_waiting_on_an_event_in_flight(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        queue.put([event("u1-1", "u1"), event("u1-2", "u1")], T0)
        queue.claim(T0, 10)
        assert queue.next_due() is None
        queue.put([event("u2-1", "u2", T0 + 7)], T0 + 7)
        assert queue.next_due() == T0 + 7

    def test_next_due_is_when_a_claim_can_return_something(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("u1-1", "u1")], T0)
        (first,) = queue.claim(T0, 10)
        settle(queue, first.id, State.QUEUED, next_attempt_at=T0 + 100)
        queue.put([event("u1-2", "u1", T0 + 1)], T0 + 1)
        # The later event is queued with an earlier time, but it waits for the retry.
        due = queue.next_due()
        assert due == T0 + 100
        assert queue.claim(due - 1, 10) == []
        assert keys_of(queue.claim(due, 10)) == ["u1-1"]

    # counts, records, record

    def test_counts_has_every_state(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        assert queue.counts() == zero_counts()
        queue.put([event(f"k{i}", f"u{i}") for i in range(6)], T0)
        queue.put([event("r", rejected=("invalid_json", "no"))], T0)
        finish(queue, ["k0", "k1"], State.DELIVERED)
        finish(queue, ["k2"], State.SKIPPED)
        finish(queue, ["k3"], State.DEAD)
        finish(queue, ["k4"], State.REJECTED)
        queue.claim(T0, 1)
        assert queue.counts() == zero_counts(
            in_flight=1, delivered=2, skipped=1, rejected=2, dead=1
        )

    def test_oldest_queued_is_the_earliest_receipt_among_open_events(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        assert queue.oldest_queued() is None
        queue.put([event("a", "ua", T0 + 5), event("b", "ub", T0 + 2)], T0 + 5)
        queue.put([event("c", "uc", T0 + 9), event("r", rejected=("invalid_json", "no"))], T0 + 9)
        assert queue.oldest_queued() == T0 + 2
        claims = queue.claim(T0 + 10, 3)  # in flight is not settled yet: still counted
        assert queue.oldest_queued() == T0 + 2
        queue.release(c.id for c in claims)
        finish(queue, ["b"], State.DELIVERED, now=T0 + 10)
        assert queue.oldest_queued() == T0 + 5
        finish(queue, ["a", "c"], State.DEAD, now=T0 + 10)
        assert queue.oldest_queued() is None

    def test_records_filters_by_state_and_pages_by_id(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event(f"k{i}", f"u{i}") for i in range(6)], T0)
        finish(queue, ["k1", "k3", "k4"], State.DEAD)
        every = queue.records()
        ids = [r.id for r in every]
        assert keys_of(every) == [f"k{i}" for i in range(6)]
        assert ids == sorted(set(ids))
        assert keys_of(queue.records(limit=2)) == ["k0", "k1"]
        assert keys_of(queue.records(after=ids[1], limit=3)) == ["k2", "k3", "k4"]
        assert keys_of(queue.records(after=ids[-1])) == []
        assert keys_of(queue.records(State.DEAD)) == ["k1", "k3", "k4"]
        assert keys_of(queue.records(State.DEAD, after=ids[1], limit=1)) == ["k3"]
        assert keys_of(queue.records(State.QUEUED)) == ["k0", "k2", "k5"]
        assert queue.records(State.DELIVERED) == []

    def test_record_by_id_and_by_key(self, queue_factory: Opener) -> None:
        queue = queue_factory(dedupe_window=10.0)
        queue.put([event("a", "u1"), event("b", "u2")], T0)
        a, b = queue.records()
        assert queue.record(a.id) == a
        assert queue.record(b.id) == b
        assert queue.record("b") == b
        assert queue.record(b.id + 1000) is None
        assert queue.record("missing") is None
        queue.put([event("a", "u3", T0 + 20)], T0 + 20)  # the same key, accepted again later
        latest = queue.record("a")
        assert latest is not None
        assert (latest.user, latest.received_at) == ("u3", T0 + 20)
        assert queue.record(a.id) == a

    # replay

    def test_replay_requeues_every_dead_letter_with_fresh_attempts(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        progress = {"attempts": 10, "throttles": 4, "done": 1, "first_attempt_at": T0 + 1}
        dead = [dead_letter(queue, f"d{i}", f"u{i}", **progress) for i in range(2)]
        queue.put([event("ok", "v1"), event("waiting", "v2")], T0)
        finish(queue, ["ok"], State.DELIVERED)
        others = [by_key(queue, "ok"), by_key(queue, "waiting")]
        assert queue.replay(None, T0 + 500) == 2
        for event_id in dead:
            stored = queue.record(event_id)
            assert stored is not None
            assert stored.state is State.QUEUED
            assert (stored.attempts, stored.throttles, stored.done) == (0, 0, 1)
            assert stored.first_attempt_at is None
        assert [by_key(queue, "ok"), by_key(queue, "waiting")] == others
        assert queue.counts() == zero_counts(queued=3, delivered=1)
        claims = queue.claim(T0 + 500, 10)
        replayed = [c for c in claims if c.id in dead]
        assert [(c.attempts, c.throttles, c.done) for c in replayed] == [(0, 0, 1)] * 2

    def test_replay_requeues_only_the_selected_dead_letters(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        first, second, third = (dead_letter(queue, f"d{i}", f"u{i}") for i in range(3))
        queue.put([event("ok", "v1")], T0)
        finish(queue, ["ok"], State.DELIVERED)
        delivered = by_key(queue, "ok")
        assert queue.replay([first, third, delivered.id, 99999], T0 + 10) == 2
        assert [by_key(queue, k).state for k in ("d0", "d1", "d2")] == [
            State.QUEUED,
            State.DEAD,
            State.QUEUED,
        ]
        assert queue.record(second) == by_key(queue, "d1")
        assert by_key(queue, "ok") == delivered

    def test_replaying_twice_requeues_nothing_the_second_time(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        first = dead_letter(queue, "d0", "u0")
        dead_letter(queue, "d1", "u1")
        assert queue.replay([first], T0 + 10) == 1
        assert queue.replay([first], T0 + 20) == 0
        assert queue.replay(None, T0 + 30) == 1
        assert queue.replay(None, T0 + 40) == 0
        assert queue.replay([], T0 + 50) == 0
        assert keys_of(queue.claim(T0 + 30, 10)) == ["d0", "d1"]
        assert queue.replay(None, T0 + 60) == 0  # in flight is not dead either
        assert queue.counts() == zero_counts(in_flight=2)

    def test_a_replayed_dead_letter_waits_while_its_user_has_an_event_in_flight(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory()
        old = dead_letter(queue, "old", "u1")
        queue.put([event("new", "u1", T0 + 1)], T0 + 1)
        (flying,) = queue.claim(T0 + 2, 10)
        assert flying.key == "new"
        assert queue.replay([old], T0 + 3) == 1
        assert queue.claim(T0 + 4, 10) == []
        assert queue.next_due() is None
        settle(queue, flying.id, State.DELIVERED)
        assert keys_of(queue.claim(T0 + 5, 10)) == ["old"]

    # prune

    def test_prune_forgets_old_finished_events_and_keeps_the_rest(
        self, queue_factory: Opener
    ) -> None:
        queue = queue_factory(retention=1000.0, dedupe_window=100.0)
        keys = ["delivered", "skipped", "rejected", "dead", "queued", "in_flight"]
        queue.put([event(k, k) for k in keys], T0)
        queue.put([event("bad", "bad", rejected=("not_an_object", "a list"))], T0)
        finish(queue, ["delivered"], State.DELIVERED, last_attempt_at=T0 + 10)
        finish(queue, ["skipped"], State.SKIPPED, last_attempt_at=T0 + 10)
        finish(queue, ["rejected"], State.REJECTED, last_attempt_at=T0 + 10)
        finish(queue, ["dead"], State.DEAD, last_attempt_at=T0 + 10)
        queue.claim(T0 + 10, 10)
        settle(queue, by_key(queue, "queued").id, State.QUEUED, next_attempt_at=T0 + 5000)
        keep = {k: by_key(queue, k) for k in ("dead", "queued", "in_flight")}
        assert queue.prune(T0 + 500) == 0
        assert len(queue.records()) == 7
        assert queue.prune(T0 + 5000) == 4
        assert {r.key: r for r in queue.records()} == keep
        assert queue.prune(T0 + 5000) == 0

    def test_prune_forgets_old_keys_only(self, queue_factory: Opener) -> None:
        queue = queue_factory(retention=10.0, dedupe_window=100.0)
        queue.put([event("old", "u1")], T0)
        queue.put([event("recent", "u2", T0 + 150)], T0 + 150)
        finish(queue, ["old", "recent"], State.DELIVERED, now=T0 + 150, last_attempt_at=T0 + 150)
        assert queue.prune(T0 + 200) == 2
        assert queue.records() == []
        # "recent" was seen 50 s ago: still a duplicate although its event is gone.
        assert queue.put([event("recent", "u2", T0 + 200)], T0 + 200) == Enqueued(0, 1)
        assert queue.put([event("old", "u1", T0 + 200)], T0 + 200) == Enqueued(1, 0)

    # durability

    def test_a_new_connection_sees_what_put_and_settle_wrote(self, queue_factory: Opener) -> None:
        queue = queue_factory()
        queue.put([event("a", "u1"), event("b", "u2")], T0)
        assert queue_factory().records() == queue.records()
        (a, _) = queue.claim(T0, 10)
        settle(queue, a.id, State.DELIVERED, status=200)
        other = queue_factory()
        assert other.counts() == zero_counts(in_flight=1, delivered=1)
        assert other.records() == queue.records()

    # random histories against a model

    def test_random_histories_agree_with_a_model(self, queue_factory: Opener) -> None:
        class Machine(QueueMachine):
            def __init__(self) -> None:
                super().__init__(queue_factory.fresh())  # a new, empty store per history

        profile = settings()  # the loaded profile (dev or ci), with fewer but longer runs
        run_state_machine_as_test(
            Machine,
            settings=settings(
                profile, max_examples=max(10, profile.max_examples // 10), stateful_step_count=40
            ),
        )


@attrs.define
class ModelEvent:
    """What the model expects the queue to hold for one event."""

    key: str
    source: str
    user: str
    state: State
    next_attempt_at: float
    attempts: int = 0
    throttles: int = 0
    done: int = 0
    first_attempt_at: float | None = None


USERS = st.sampled_from(["u0", "u1", "u2"])
KEYS = st.sampled_from([f"k{i}" for i in range(6)])
SOURCES = st.sampled_from(["s0", "s1"])
WINDOW = 100.0


class QueueMachine(RuleBasedStateMachine):
    """Random put/claim/settle/release/crash/recover/replay against a tiny model."""

    def __init__(self, opener: Opener) -> None:
        super().__init__()
        self.opener = opener
        self.queue = opener(dedupe_window=WINDOW)
        self.now = T0
        self.seen: dict[tuple[str, str], float] = {}
        self.events: dict[int, ModelEvent] = {}
        self.replayed: set[int] = set()

    def _ids(self, state: State) -> list[int]:
        return sorted(i for i, e in self.events.items() if e.state is state)

    def _open_before(self, event_id: int) -> bool:
        user = self.events[event_id].user
        return any(
            i < event_id and e.user == user and e.state in {State.QUEUED, State.IN_FLIGHT}
            for i, e in self.events.items()
        )

    def _blocked(self, event_id: int) -> bool:
        """An earlier event of the user is open, or any event of the user is in flight."""
        user = self.events[event_id].user
        return self._open_before(event_id) or any(
            e.user == user and e.state is State.IN_FLIGHT for e in self.events.values()
        )

    def _due(self) -> list[int]:
        return sorted(
            (
                i
                for i in self._ids(State.QUEUED)
                if self.events[i].next_attempt_at <= self.now and not self._blocked(i)
            ),
            key=lambda i: (self.events[i].next_attempt_at, i),
        )

    @rule(batch=st.lists(st.tuples(KEYS, USERS, SOURCES, st.booleans()), min_size=1, max_size=4))
    def put(self, batch: list[tuple[str, str, str, bool]]) -> None:
        fresh: list[tuple[str, str, str, bool]] = []
        for key, user, source, rejected in batch:
            seen = self.seen.get((source, key))
            if seen is None or seen < self.now - WINDOW:
                self.seen[source, key] = self.now
                fresh.append((key, user, source, rejected))
        items = [
            event(k, u, self.now, s, ("invalid_json", "bad") if r else None) for k, u, s, r in batch
        ]
        reasons = tuple("invalid_json" for *_, rejected in fresh if rejected)
        assert self.queue.put(items, self.now) == Enqueued(
            len(fresh), len(batch) - len(fresh), reasons
        )
        known = max(self.events, default=0)
        added = self.queue.records(after=known, limit=1000)
        assert [(r.key, r.user, r.source) for r in added] == [(k, u, s) for k, u, s, _ in fresh]
        for record, (key, user, source, rejected) in zip(added, fresh, strict=True):
            state = State.REJECTED if rejected else State.QUEUED
            self.events[record.id] = ModelEvent(key, source, user, state, self.now)

    @rule(seconds=st.sampled_from([0.5, 3.0, 30.0, 150.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        expected = sorted(self._due()[:limit])
        claims = self.queue.claim(self.now, limit)
        assert ids_of(claims) == expected
        for claim in claims:
            model = self.events[claim.id]
            assert (claim.key, claim.attempts, claim.throttles, claim.done) == (
                model.key,
                model.attempts,
                model.throttles,
                model.done,
            )
            assert claim.first_attempt_at == model.first_attempt_at
            model.state = State.IN_FLIGHT

    @precondition(lambda self: bool(self._ids(State.IN_FLIGHT)))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        in_flight = st.sampled_from(self._ids(State.IN_FLIGHT))
        chosen = data.draw(st.lists(in_flight, min_size=1, unique=True))
        stray = data.draw(st.lists(st.sampled_from(sorted(self.events)), max_size=2, unique=True))
        verdicts: list[Settlement] = []
        for event_id in chosen + [i for i in stray if i not in chosen]:
            state = data.draw(st.sampled_from([s for s in State if s is not State.IN_FLIGHT]))
            delay = data.draw(st.sampled_from([5.0, 60.0, 0.0]))
            model = self.events[event_id]
            verdict = Settlement(
                event_id,
                state,
                attempts=model.attempts + 1,
                throttles=model.throttles + data.draw(st.integers(0, 1)),
                done=model.done + data.draw(st.integers(0, 1)),
                first_attempt_at=model.first_attempt_at or self.now,
                last_attempt_at=self.now,
                next_attempt_at=self.now + delay if state is State.QUEUED else None,
            )
            verdicts.append(verdict)
            if model.state is State.IN_FLIGHT:
                model.state = state
                model.attempts, model.throttles = verdict.attempts, verdict.throttles
                model.done, model.first_attempt_at = verdict.done, verdict.first_attempt_at
                if verdict.next_attempt_at is not None:
                    model.next_attempt_at = verdict.next_attempt_at
        self.queue.settle(verdicts)

    @precondition(lambda self: bool(self.events))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.events)), unique=True))
        self.queue.release(ids)
        for event_id in ids:
            if self.events[event_id].state is State.IN_FLIGHT:
                self.events[event_id].state = State.QUEUED

    @rule(crash=st.booleans())
    def recover(self, crash: bool) -> None:
        if crash:
            self.opener.close(self.queue)
            self.queue = self.opener(dedupe_window=WINDOW)
        in_flight = self._ids(State.IN_FLIGHT)
        assert self.queue.recover() == len(in_flight)
        for event_id in in_flight:
            self.events[event_id].state = State.QUEUED

    @rule(data=st.data(), everything=st.booleans())
    def replay(self, data: st.DataObject, everything: bool) -> None:
        ids: list[int] | None = None
        if everything or not self.events:
            dead = self._ids(State.DEAD)
        else:
            ids = data.draw(st.lists(st.sampled_from(sorted(self.events)), unique=True))
            dead = [i for i in ids if self.events[i].state is State.DEAD]
        assert self.queue.replay(ids, self.now) == len(dead)
        self.replayed.update(dead)
        for event_id in dead:
            model = self.events[event_id]
            model.state, model.next_attempt_at = State.QUEUED, self.now
            model.attempts, model.throttles, model.first_attempt_at = 0, 0, None

    @invariant()
    def agrees_with_the_model(self) -> None:
        expected = dict.fromkeys(State, 0)
        for model in self.events.values():
            expected[model.state] += 1
        assert self.queue.counts() == expected
        records = self.queue.records(limit=10_000)
        assert [r.id for r in records] == sorted(self.events)
        for record in records:
            model = self.events[record.id]
            assert (record.key, record.source, record.user, record.state) == (
                model.key,
                model.source,
                model.user,
                model.state,
            )
            assert (record.attempts, record.throttles, record.done) == (
                model.attempts,
                model.throttles,
                model.done,
            )
            if record.state is State.QUEUED:
                assert record.next_attempt_at == model.next_attempt_at

    @invariant()
    def the_due_events_agree_with_the_model(self) -> None:
        # Probe: claim everything due now, then put it back (release changes nothing).
        claims = self.queue.claim(self.now, 10_000)
        assert ids_of(claims) == sorted(self._due())
        self.queue.release(ids_of(claims))

    @invariant()
    def next_due_agrees_with_the_model(self) -> None:
        waiting = [
            self.events[i].next_attempt_at for i in self._ids(State.QUEUED) if not self._blocked(i)
        ]
        assert self.queue.next_due() == min(waiting, default=None)

    @invariant()
    def no_user_has_an_event_in_flight_behind_an_open_one(self) -> None:
        # Checked on the queue's own records. A replayed dead letter is exempt: it comes back
        # after later events of its user may already have been claimed or delivered.
        open_users: set[str] = set()
        flying: set[str] = set()
        for record in self.queue.records(limit=10_000):
            if record.state is State.IN_FLIGHT:
                assert record.user not in open_users, record
                assert record.user not in flying, record  # one in flight per user, replays too
                flying.add(record.user)
            if record.state in {State.QUEUED, State.IN_FLIGHT} and record.id not in self.replayed:
                open_users.add(record.user)

    def teardown(self) -> None:
        self.opener.close(self.queue)
