"""Delivery under the faults of ``ingest-and-delivery.md`` (F1-F8, F13-F16).

Each test runs the real ``Sender`` with a real ``SQLiteQueue`` against a real sandbox
process on 127.0.0.1, injects one fault, and checks the table's "Pass" column. Tests about
schedules run on ``VirtualTime`` (no real waiting; every recorded time is exact); the others
run in real time with a fast retry policy.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router import Context, Outcome, route
from attentive_router._delivery import sender as sender_module
from attentive_router._delivery.job import deliver
from attentive_router._delivery.retry import RetryPolicy
from attentive_router._delivery.sender import SenderSettings
from attentive_router._queue.interface import Record, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.delivery_harness import (  # noqa: E402
    ADD_TO_CART_PATH,
    CUSTOM_PATH,
    START,
    NoJitter,
    Sent,
    VirtualTime,
    closed_port,
    custom_event,
    enqueue,
    expected_requests,
    product_added,
    run_sender,
    wait_until,
)

LIMIT = 30
"""The sandbox's limit on add-to-cart requests per second (the F5 endpoint)."""

FAST = RetryPolicy(base=0.01, cap=0.05)
"""Retries within milliseconds, for the tests that run in real time."""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(rate_limits={ADD_TO_CART_PATH: LIMIT}) as process:
        yield process


@pytest.fixture
def box(sandbox: SandboxProcess) -> SandboxProcess:
    """The shared sandbox with no records, no counts and no faults."""
    sandbox.reset()
    return sandbox


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SQLiteQueue]:
    store = SQLiteQueue(tmp_path / "queue.db")
    yield store
    store.close()


def settings_for(sandbox: SandboxProcess, **changes: Any) -> SenderSettings:
    values: dict[str, Any] = {"policy": FAST, **changes}
    return SenderSettings(base_url=sandbox.url, token=sandbox.token, **values)


def accepted_ids(sandbox: SandboxProcess, path: str = CUSTOM_PATH) -> list[str | None]:
    """The externalEventId of every accepted request (None: it has none), in order."""
    return [record["body"].get("externalEventId") for record in sandbox.requests(path)]


def record_of(queue: SQLiteQueue, key: str) -> Record:
    found = queue.record(key)
    assert found is not None, key
    return found


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def excess(times: Sequence[float], rate: float) -> float:
    """Most events in any window beyond what ``rate`` allows over it: the burst used."""
    ordered = sorted(times)
    return max(
        (j - i + 1) - rate * (ordered[j] - ordered[i])
        for i in range(len(ordered))
        for j in range(i, len(ordered))
    )


def steady_rate(times: Sequence[float], warm_up: float) -> float:
    """Events per second after the first ``warm_up`` seconds."""
    ordered = sorted(times)
    late = [t for t in ordered if t >= ordered[0] + warm_up]
    return (len(late) - 1) / (late[-1] - late[0])


def test_custom_event_helper_maps_to_the_custom_endpoint_keyed_by_message_id() -> None:
    (request,) = expected_requests(custom_event("m-1", "u1"), START)
    assert request["path"] == CUSTOM_PATH
    assert request["body"]["externalEventId"] == "m-1"
    (cart,) = expected_requests(product_added("m-2", "u1"), START)
    assert cart["path"] == ADD_TO_CART_PATH


# F1: k × 500/502/503/504, then 200 → delivered, attempts = k + 1, nothing dead-lettered.
RETRIED = {
    "f1-k1": [500],
    "f1-k2": [502, 503],
    "f1-k3": [504, 500, 502],
    "f1-k4": [503, 504, 502, 500],
}


def test_f1_server_errors_then_success_are_delivered_with_k_plus_one_attempts(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    box.set_faults(scripts={key: [*steps, 200] for key, steps in RETRIED.items()})
    enqueue(queue, [custom_event(key, f"user-{key}") for key in RETRIED], time.time())

    run = run_sender(queue, settings_for(box))

    assert queue.counts()[State.DELIVERED] == len(RETRIED)
    assert queue.counts()[State.DEAD] == 0
    for key, steps in RETRIED.items():
        record = record_of(queue, key)
        assert record.state is State.DELIVERED
        assert record.attempts == len(steps) + 1
        assert [s.status for s in run.sent_for(key)] == [*steps, 200]
    assert Counter(accepted_ids(box)) == dict.fromkeys(RETRIED, 1)
    assert box.stats()["total"] == sum(len(steps) + 1 for steps in RETRIED.values())


# F2: 400 / 404 / 413 / 422 → one attempt; the dead letter holds status, body and request.
PERMANENT = {"f2-400": 400, "f2-404": 404, "f2-413": 413, "f2-422": 422}


def test_f2_permanent_errors_are_dead_lettered_after_one_attempt(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    box.set_faults(scripts={key: [status] for key, status in PERMANENT.items()})
    received_at = time.time()
    events = {key: custom_event(key, f"user-{key}") for key in PERMANENT}
    enqueue(queue, events.values(), received_at)

    run = run_sender(queue, settings_for(box))

    assert queue.counts()[State.DEAD] == len(PERMANENT)
    for key, status in PERMANENT.items():
        record = record_of(queue, key)
        assert record.state is State.DEAD
        assert record.reason == "permanent_error"
        assert record.attempts == 1
        assert len(run.sent_for(key)) == 1
        assert record.status == status
        assert orjson.loads(record.response or "null") == {"error": "injected", "status": status}
        assert record.endpoint == CUSTOM_PATH
        assert (
            orjson.loads(record.request or b"null")
            == expected_requests(events[key], received_at)[0]
        )
        assert record.first_attempt_at is not None
        assert record.last_attempt_at is not None
    assert box.stats()["total"] == len(PERMANENT)
    assert box.requests() == []


# F3: 401/403 on every request → sending stops; events stay queued; the operator is told.
def test_f3_refused_key_stops_sending_and_keeps_every_event_queued(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    token = "wrong-token-7f3a9c"
    events = [custom_event(f"f3-{i}", f"user-{i % 10}", i) for i in range(60)]
    enqueue(queue, events, time.time())
    settings = SenderSettings(base_url=box.url, token=token, concurrency=4, policy=FAST)

    run = run_sender(queue, settings)

    paused = run.sender.paused
    assert paused is not None
    assert (paused.status, paused.path) == (401, CUSTOM_PATH)
    stats = box.stats()
    assert stats["total"] <= settings.concurrency  # only the requests already under way
    assert stats["received"] == {CUSTOM_PATH: {"401": stats["total"]}}
    counts = queue.counts()
    assert counts[State.QUEUED] == len(events)
    assert sum(counts.values()) == len(events)
    records = queue.records(limit=len(events))
    assert [(r.attempts, r.throttles) for r in records] == [(0, 0)] * len(events)
    message = paused.explain()
    assert "401" in message
    assert "Sending stopped" in message
    assert token not in message
    assert run.sender.stats.settled == 0


def test_f3_deliver_job_exits_3_and_says_sending_stopped(
    box: SandboxProcess, queue: SQLiteQueue, tmp_path: Path
) -> None:
    box.set_faults(status_for_all=403)
    events = [custom_event(f"f3d-{i}", f"user-{i % 8}", i) for i in range(40)]
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
    settings = SenderSettings(base_url=box.url, token=box.token, concurrency=4, policy=FAST)

    with source.open("rb") as stream:
        run = asyncio.run(deliver(queue, settings, source=stream))

    assert run.exit_status == 3
    assert run.paused is not None
    assert run.paused.status == 403
    summary = run.render("deliver")
    assert "SENDING STOPPED" in summary
    assert "403" in summary
    assert box.token not in summary
    assert run.remaining[State.QUEUED] == len(events)
    assert run.remaining[State.DEAD] == 0
    assert box.stats()["total"] <= settings.concurrency


# F4: 429 with Retry-After (seconds, HTTP date, absurd) → waits as told, capped; not counted.
RETRY_AFTER_CAP = 45.0


@pytest.mark.parametrize(
    ("retry_after", "script", "waits"),
    [
        ("7", [429, 429, 200], [7.0, 7.0]),
        (format_datetime(datetime.fromtimestamp(START + 12, UTC), usegmt=True), [429, 200], [12.0]),
        ("1000000000", [429, 200], [RETRY_AFTER_CAP]),
    ],
    ids=["seconds", "http-date", "absurd"],
)
def test_f4_retry_after_is_honoured_capped_and_not_counted_as_an_attempt(
    box: SandboxProcess,
    queue: SQLiteQueue,
    retry_after: str,
    script: list[int],
    waits: list[float],
) -> None:
    box.set_faults(retry_after=retry_after, scripts={"f4-1": script})
    enqueue(queue, [custom_event("f4-1", "user-f4")], START)
    # One counted attempt and no window: a 429 counted as an attempt would dead-letter it.
    policy = RetryPolicy(
        max_attempts=1, window=0.0, base=0.01, cap=0.05, retry_after_cap=RETRY_AFTER_CAP
    )

    run = run_sender(queue, settings_for(box, policy=policy), virtual=VirtualTime())

    sent = run.sent_for("f4-1")
    assert [s.status for s in sent] == script
    expected = [START + sum(waits[:i]) for i in range(len(script))]
    assert [s.at for s in sent] == pytest.approx(expected, abs=1e-6)
    record = record_of(queue, "f4-1")
    assert record.state is State.DELIVERED
    assert record.attempts == 1
    assert record.throttles == len(waits)
    assert record.next_attempt_at == pytest.approx(START + sum(waits), abs=1e-6)
    assert record.first_attempt_at == START
    assert accepted_ids(box) == ["f4-1"]


# F5: 429 without Retry-After, limit enforced by the server → rate ≤ limit; few 429s.
def test_f5_server_limit_bounds_the_accepted_rate_and_429s_are_not_attempts(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    count = 75
    enqueue(queue, [product_added(f"f5a-{i}", f"user-{i}") for i in range(count)], time.time())
    policy = RetryPolicy(max_attempts=1, window=0.0, base=0.01, cap=0.05)

    run_sender(queue, settings_for(box, rate=100.0, policy=policy))

    assert queue.counts()[State.DELIVERED] == count
    assert queue.counts()[State.DEAD] == 0
    records = queue.records(limit=count)
    assert {r.attempts for r in records} == {1}
    answers = box.stats()["received"][ADD_TO_CART_PATH]
    assert answers["200"] == count
    assert answers["429"] > 0  # the server had to enforce its limit
    assert sum(r.throttles for r in records) == answers["429"]
    accepted = [seconds(r["received_at"]) for r in box.requests(ADD_TO_CART_PATH)]
    assert len(accepted) == count
    assert excess(accepted, LIMIT) <= LIMIT + 2  # the server's bucket holds one second
    assert steady_rate(accepted, warm_up=0.5) <= LIMIT * 1.1


def test_f5_sender_at_the_server_limit_provokes_few_429s(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    count = 45
    enqueue(queue, [product_added(f"f5b-{i}", f"user-{i}") for i in range(count)], time.time())

    run = run_sender(queue, settings_for(box, rate=float(LIMIT)))

    assert queue.counts()[State.DELIVERED] == count
    answers = box.stats()["received"][ADD_TO_CART_PATH]
    assert answers.get("429", 0) / sum(answers.values()) < 0.05
    sent_at = [s.at for s in run.sent]
    assert excess(sent_at, LIMIT) <= LIMIT * 0.1 + 1  # the sender's own burst: 0.1 s
    accepted = [seconds(r["received_at"]) for r in box.requests(ADD_TO_CART_PATH)]
    assert steady_rate(accepted, warm_up=0.3) <= LIMIT * 1.1


# F6: responses slower than the client timeout → retried; duplicates equal the timeouts.
TIMEOUTS = {"f6-1": 1, "f6-2": 2, "f6-3": 0}


def test_f6_timeouts_are_retried_and_each_one_is_a_duplicate_with_the_same_id(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    box.set_faults(
        hang_seconds=0.6,
        scripts={key: ["timeout"] * n + [200] for key, n in TIMEOUTS.items() if n},
    )
    enqueue(queue, [custom_event(key, f"user-{key}") for key in TIMEOUTS], time.time())

    run = run_sender(queue, settings_for(box, timeout=0.3))

    for key, n in TIMEOUTS.items():
        sent = run.sent_for(key)
        assert [(s.status, s.timed_out) for s in sent] == [(None, True)] * n + [(200, False)]
        record = record_of(queue, key)
        assert record.state is State.DELIVERED
        assert record.attempts == n + 1
    # The sandbox processes a hung request once its hang is over, as a slow server would.
    wait_until(lambda: box.stats()["total"] == len(run.sent))
    records = box.requests(CUSTOM_PATH)
    for key, n in TIMEOUTS.items():
        mine = [r for r in records if r["body"]["externalEventId"] == key]
        assert len(mine) == n + 1  # duplicates == timeouts
        assert sorted(r["fault"] or "" for r in mine) == [""] + ["timeout"] * n
        assert all(r["body"] == mine[0]["body"] for r in mine)
    assert queue.counts()[State.DEAD] == 0


# F7: connection refused and reset mid-response → retried, never dead-lettered early.
def test_f7_refused_connections_are_retried_past_max_attempts_within_the_window(
    queue: SQLiteQueue,
) -> None:
    keys = ["f7-1", "f7-2"]
    enqueue(queue, [custom_event(key, f"user-{key}") for key in keys], time.time())
    policy = RetryPolicy(max_attempts=3, window=3600.0, base=0.01, cap=0.05)
    settings = SenderSettings(
        base_url=f"http://127.0.0.1:{closed_port()}", token="f7-token-0123456789", policy=policy
    )

    def enough(sent: Sequence[Sent]) -> bool:
        return all(sum(s.event_id == key for s in sent) >= 6 for key in keys)

    run = run_sender(queue, settings, stop_when=enough)

    # (httpx-aiohttp reports a refused connection as ConnectTimeout, httpx as ConnectError.)
    assert {(s.status, s.transport_failed) for s in run.sent} == {(None, True)}
    for key in keys:
        record = record_of(queue, key)
        assert record.state is State.QUEUED
        assert record.attempts == len(run.sent_for(key))
        assert record.attempts > policy.max_attempts
        assert record.status is None
        assert "connect" in (record.response or "").lower()
    assert queue.counts()[State.DEAD] == 0


def test_f7_resets_mid_response_are_retried_and_delivered(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    box.set_faults(scripts={"f7-r": ["reset", "reset", "reset", 200]})
    enqueue(queue, [custom_event("f7-r", "user-r")], time.time())
    policy = RetryPolicy(max_attempts=2, window=3600.0, base=0.01, cap=0.05)

    run = run_sender(queue, settings_for(box, policy=policy))

    sent = run.sent_for("f7-r")
    assert [(s.status, s.cut_off) for s in sent] == [(None, True)] * 3 + [(200, False)]
    record = record_of(queue, "f7-r")
    assert record.state is State.DELIVERED
    assert record.attempts == 4
    # A reset cuts the answer off after processing: each one is a duplicate at Attentive.
    assert [r["fault"] for r in box.requests(CUSTOM_PATH)] == ["reset", "reset", "reset", None]


# F8: destination down longer than the retry window → dead once both limits pass, not before.
@pytest.mark.parametrize(
    ("max_attempts", "window", "offsets"),
    [
        # Backoff without jitter: 1, 2, 4, 4, ... seconds.
        (3, 20.0, [0, 1, 3, 7, 11, 15, 19, 23]),  # attempts reached first, then the window
        (5, 2.0, [0, 1, 3, 7, 11]),  # window passed first, then the attempts
    ],
    ids=["attempts-first", "window-first"],
)
def test_f8_dead_lettered_only_once_both_attempts_and_window_are_used_up(
    box: SandboxProcess,
    queue: SQLiteQueue,
    max_attempts: int,
    window: float,
    offsets: list[int],
) -> None:
    box.set_faults(status_for_all=503)
    enqueue(queue, [custom_event("f8-1", "user-f8")], START)
    policy = RetryPolicy(max_attempts=max_attempts, window=window, base=1.0, cap=4.0)

    run = run_sender(queue, settings_for(box, policy=policy), virtual=VirtualTime(), rng=NoJitter())

    sent = run.sent_for("f8-1")
    assert [s.at - START for s in sent] == pytest.approx(offsets, abs=1e-6)
    assert {s.status for s in sent} == {503}
    # Before the last attempt one of the two limits still held; at it, both had passed.
    assert len(offsets) - 1 < max_attempts or offsets[-2] < window
    assert len(offsets) >= max_attempts
    assert offsets[-1] >= window
    record = record_of(queue, "f8-1")
    assert record.state is State.DEAD
    assert record.reason == "retries_exhausted"
    assert record.attempts == len(offsets)
    assert record.status == 503
    assert record.first_attempt_at == pytest.approx(START)
    assert record.last_attempt_at == pytest.approx(START + offsets[-1])


def test_f3_f8_a_refused_key_does_not_start_the_retry_window(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    enqueue(queue, [custom_event("f38-1", "user-f38")], START)
    policy = RetryPolicy(max_attempts=3, window=20.0, base=1.0, cap=4.0)
    settings = settings_for(box, policy=policy)
    virtual = VirtualTime()
    box.set_faults(status_for_all=401)
    refused = run_sender(queue, settings, virtual=virtual, rng=NoJitter())
    assert refused.sender.paused is not None
    assert record_of(queue, "f38-1").attempts == 0

    # The key is fixed a minute later, while the destination happens to be down.
    box.set_faults(status_for_all=503)
    virtual.now = START + 60
    run = run_sender(queue, settings, virtual=virtual, rng=NoJitter())

    # As in F8 (attempts first): retried until the window has passed since the first
    # counted attempt, at START + 60.
    assert [s.at - START - 60 for s in run.sent] == pytest.approx([0, 1, 3, 7, 11, 15, 19, 23])
    record = record_of(queue, "f38-1")
    assert record.state is State.DEAD
    assert record.first_attempt_at == pytest.approx(START + 60)


# F13: the same batch sent 3 times → delivered once.
def batch() -> list[dict[str, Any]]:
    events = [custom_event(f"f13-{i}", f"user-{i % 3}", i) for i in range(9)]
    anonymous = custom_event("unused", "user-x", 99)
    del anonymous["messageId"]  # keyed by a digest of its content
    return [*events, anonymous]


def body_keys(sandbox: SandboxProcess) -> Counter[bytes]:
    return Counter(orjson.dumps(r["body"], option=orjson.OPT_SORT_KEYS) for r in sandbox.requests())


def test_f13_the_same_batch_queued_three_times_is_delivered_once(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    events = batch()
    received_at = time.time()
    results = [enqueue(queue, events, received_at + n) for n in range(3)]

    run_sender(queue, settings_for(box))

    assert [(r.accepted, r.duplicates) for r in results] == [(10, 0), (0, 10), (0, 10)]
    assert queue.counts()[State.DELIVERED] == len(events)
    bodies = body_keys(box)
    assert len(bodies) == len(events)
    assert set(bodies.values()) == {1}
    expected: dict[str | None, int] = {f"f13-{i}": 1 for i in range(9)}
    expected[None] = 1  # the event without a messageId has no externalEventId
    assert Counter(accepted_ids(box)) == expected


def test_f13_the_same_file_delivered_three_times_is_sent_once(
    box: SandboxProcess, queue: SQLiteQueue, tmp_path: Path
) -> None:
    events = batch()
    source = tmp_path / "batch.ndjson"
    source.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
    settings = settings_for(box)

    runs = []
    for _ in range(3):
        with source.open("rb") as stream:
            runs.append(asyncio.run(deliver(queue, settings, source=stream)))

    n = len(events)
    assert [(r.read, r.accepted, r.duplicates) for r in runs] == [(n, n, 0), (n, 0, n), (n, 0, n)]
    assert [r.stats.outcomes[State.DELIVERED.label] for r in runs] == [n, 0, 0]
    assert [r.exit_status for r in runs] == [0, 0, 0]
    bodies = body_keys(box)
    assert len(bodies) == n
    assert set(bodies.values()) == {1}


# F14: mixed per-user scripts → per-user delivery order kept.
USER_SCRIPTS: dict[str, list[list[int]]] = {
    "u1": [[500, 500, 200], [], [400], []],
    "u2": [[503, 200], [500, 200], [], []],
    "u3": [[400], [502, 502, 502, 200], [], [504, 200]],
    "u4": [[], [], [], []],
    "u5": [[429, 200], [], [500, 200], []],
}


def test_f14_per_user_order_is_kept_while_earlier_events_wait_to_retry(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    steps = len(next(iter(USER_SCRIPTS.values())))
    order = {user: [f"f14-{user}-{i}" for i in range(steps)] for user in USER_SCRIPTS}
    scripts = {
        f"f14-{user}-{i}": script
        for user, per_event in USER_SCRIPTS.items()
        for i, script in enumerate(per_event)
        if script
    }
    dead = {key for key, script in scripts.items() if script == [400]}
    box.set_faults(scripts=scripts)
    # Interleaved, as live traffic from several users arrives.
    events = [custom_event(order[u][i], u, i) for i in range(steps) for u in USER_SCRIPTS]
    enqueue(queue, events, time.time())

    run_sender(queue, settings_for(box, concurrency=8))

    assert {r.key for r in queue.records(State.DEAD)} == dead
    assert queue.counts()[State.DELIVERED] == len(events) - len(dead)
    records = box.requests(CUSTOM_PATH)
    for user, keys in order.items():
        accepted = [
            r["body"]["externalEventId"]
            for r in records
            if r["body"]["user"]["externalIdentifiers"]["clientUserId"] == user
        ]
        assert accepted == [key for key in keys if key not in dead], user


# F15: an event whose transform fails → that event dead-lettered; the worker goes on.
def test_f15_a_failing_transform_dead_letters_that_event_and_the_rest_are_delivered(
    box: SandboxProcess, queue: SQLiteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = "f15-2"
    real_route = route

    def exploding(event: object, ctx: Context) -> Outcome:
        if isinstance(event, dict) and event.get("messageId") == bad:
            raise RuntimeError("transform exploded")
        return real_route(event, ctx)

    monkeypatch.setattr(sender_module, "route", exploding)
    keys = [f"f15-{i}" for i in range(6)]
    events = [custom_event(key, f"user-{i % 2}", i) for i, key in enumerate(keys)]
    enqueue(queue, events, time.time())

    run = run_sender(queue, settings_for(box, concurrency=4))

    record = record_of(queue, bad)
    assert record.state is State.DEAD
    assert record.reason == "transform_error"
    assert "RuntimeError: transform exploded" in (record.message or "")
    assert run.sent_for(bad) == []
    others = [key for key in keys if key != bad]
    assert [record_of(queue, key).state for key in others] == [State.DELIVERED] * len(others)
    assert Counter(accepted_ids(box)) == dict.fromkeys(others, 1)


# F16: replay of dead letters → re-queued and delivered once; replaying twice adds nothing.
def test_f16_replayed_dead_letters_are_delivered_once_and_replaying_twice_adds_nothing(
    box: SandboxProcess, queue: SQLiteQueue
) -> None:
    box.set_faults(scripts={"f16-1": [400], "f16-2": [422]})
    keys = ["f16-1", "f16-2", "f16-3"]
    enqueue(queue, [custom_event(key, f"user-{key}") for key in keys], time.time())
    run_sender(queue, settings_for(box))
    assert {r.key for r in queue.records(State.DEAD)} == {"f16-1", "f16-2"}

    box.set_faults()  # the fault is gone
    first = record_of(queue, "f16-1")
    assert queue.replay([first.id], time.time()) == 1
    assert queue.replay([first.id], time.time()) == 0  # already queued again
    run = run_sender(queue, settings_for(box))
    assert [s.event_id for s in run.sent] == ["f16-1"]
    replayed = record_of(queue, "f16-1")
    assert replayed.state is State.DELIVERED
    assert (replayed.attempts, replayed.reason) == (1, None)
    assert record_of(queue, "f16-2").state is State.DEAD

    assert queue.replay(None, time.time()) == 1
    assert queue.replay(None, time.time()) == 0
    run_sender(queue, settings_for(box))
    assert queue.counts()[State.DELIVERED] == len(keys)
    assert queue.counts()[State.DEAD] == 0

    assert queue.replay(None, time.time()) == 0
    assert queue.replay([first.id], time.time()) == 0  # delivered: nothing to replay
    again = run_sender(queue, settings_for(box))
    assert again.sent == []
    assert Counter(accepted_ids(box)) == dict.fromkeys(keys, 1)
