"""``_queue.group``: the group committer over a real SQLite queue, step by step.

The committer runs its commits through a ``run`` function; here it is a gate that lets one
commit through at a time on the queue's thread, so that the tests decide which requests are
waiting when a commit starts. Everything is stored in a real SQLite file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from attentive_router._queue.group import Commits, CommitStats, GroupCommitter
from attentive_router._queue.interface import Enqueued, NewEvent, QueueError, State
from attentive_router._queue.sqlite import SQLiteQueue

T0 = 1_800_000_000.0


def event(key: str, user: str = "u1") -> NewEvent:
    body = f'{{"messageId":"{key}","userId":"{user}"}}'.encode()
    return NewEvent(key, f"user:{user}", body, T0)


class Gate:
    """``run`` for the committer: each call waits for ``open_one()``, then runs on a thread."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1)
        self.calls: list[list[int]] = []
        """The sizes of the batches of each commit that was let through."""
        self._tickets: asyncio.Queue[None] = asyncio.Queue()
        self.waiting = asyncio.Event()

    async def __call__(self, action: Callable[..., Any], *args: Any) -> Any:
        self.waiting.set()
        await self._tickets.get()
        self.waiting.clear()
        if args and isinstance(args[0], list):
            self.calls.append([len(events) for events, _ in args[0]])
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, action, *args)

    async def open_one(self) -> None:
        """Let the commit that waits through (waiting until one does)."""
        await self.waiting.wait()
        self._tickets.put_nowait(None)
        await asyncio.sleep(0)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SQLiteQueue]:
    store = SQLiteQueue(tmp_path / "q.db")
    yield store
    store.close()


async def settle_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_arriving_during_a_commit_share_the_next_one(queue: SQLiteQueue) -> None:
    async def scenario() -> list[Enqueued]:
        gate = Gate()
        seen: list[tuple[int, int, bool, str]] = []
        stats = CommitStats(observe=lambda r, e, ok, to: seen.append((r, e, ok, to)))
        committer = GroupCommitter(queue, gate, stats, destination="brand_a")
        first = asyncio.ensure_future(committer.put([event("a")], T0))
        await settle_loop()  # the first commit has started with "a" alone
        later = [
            asyncio.ensure_future(committer.put([event("b"), event("c")], T0 + 1)),
            asyncio.ensure_future(committer.put([event("b", "u2")], T0 + 2)),
            asyncio.ensure_future(committer.put([event("d")], T0 + 3)),
        ]
        await settle_loop()
        assert not any(f.done() for f in [first, *later])
        await gate.open_one()
        assert await first == Enqueued(1, 0)
        assert not any(f.done() for f in later)  # their commit has not run yet
        await gate.open_one()
        answers = [await f for f in later]
        assert gate.calls == [[1], [2, 1, 1]]
        assert seen == [(1, 1, True, "brand_a"), (3, 4, True, "brand_a")]
        assert stats.commits == {"committed": 2, "failed": 0}
        assert stats.by_destination == {("brand_a", "committed"): 2}
        gate.executor.shutdown()
        return answers

    # "b" again in the same group is a duplicate, exactly as in a commit after the first.
    assert asyncio.run(scenario()) == [Enqueued(2, 0), Enqueued(0, 1), Enqueued(1, 0)]
    assert [r.key for r in queue.records()] == ["a", "b", "c", "d"]
    assert queue.record("b") is not None


def _fail_when(queue: SQLiteQueue, condition: str) -> None:
    """Make the file refuse a write through a trigger, as a full disk would."""
    other = sqlite3.connect(queue.path, isolation_level=None)
    try:
        other.execute(
            f"CREATE TRIGGER fail {condition} BEGIN SELECT RAISE(ABORT, 'storage failed'); END"
        )
    finally:
        other.close()


def test_a_failing_commit_fails_exactly_the_requests_it_held(queue: SQLiteQueue) -> None:
    _fail_when(queue, "BEFORE INSERT ON events WHEN NEW.key = 'boom'")

    async def scenario() -> list[Any]:
        gate = Gate()
        committer = GroupCommitter(queue, gate)
        first = asyncio.ensure_future(committer.put([event("a")], T0))
        await settle_loop()
        failing = [
            asyncio.ensure_future(committer.put([event("b")], T0)),
            asyncio.ensure_future(committer.put([event("boom"), event("c")], T0)),
        ]
        await settle_loop()
        await gate.open_one()
        assert await first == Enqueued(1, 0)
        after = asyncio.ensure_future(committer.put([event("d")], T0))  # the third commit
        await gate.open_one()
        outcomes = await asyncio.gather(*failing, return_exceptions=True)
        await gate.open_one()
        outcomes.append(await after)
        assert committer.stats.commits == {"committed": 2, "failed": 1}
        gate.executor.shutdown()
        return outcomes

    failed_b, failed_boom, answered = asyncio.run(scenario())
    assert isinstance(failed_b, QueueError)
    assert failed_boom is failed_b  # one failure, told to each request of the group
    assert "storage failed" in str(failed_b)
    assert answered == Enqueued(1, 0)
    assert [r.key for r in queue.records()] == ["a", "d"]


def test_a_request_that_goes_away_leaves_the_others_and_its_events_stored(
    queue: SQLiteQueue,
) -> None:
    async def scenario() -> Enqueued:
        gate = Gate()
        committer = GroupCommitter(queue, gate)
        first = asyncio.ensure_future(committer.put([event("a")], T0))
        await settle_loop()
        gone = asyncio.ensure_future(committer.put([event("b")], T0))
        stays = asyncio.ensure_future(committer.put([event("c")], T0))
        await settle_loop()
        gone.cancel()
        await gate.open_one()
        await first
        await gate.open_one()
        answer = await stays
        gate.executor.shutdown()
        return answer

    assert asyncio.run(scenario()) == Enqueued(1, 0)
    # The request went away after it was handed over: its commit stored it (a client that
    # sends it again gets it counted as a duplicate, never stored twice).
    assert [r.key for r in queue.records()] == ["a", "b", "c"]


def test_a_group_holds_at_most_max_events(queue: SQLiteQueue) -> None:
    async def scenario() -> list[list[int]]:
        gate = Gate()
        committer = GroupCommitter(queue, gate, max_events=5)
        first = asyncio.ensure_future(committer.put([event("a")], T0))
        await settle_loop()
        sizes = [3, 2, 4, 7, 1]
        puts = [
            asyncio.ensure_future(
                committer.put([event(f"k{n}-{i}", f"u{n}") for i in range(size)], T0)
            )
            for n, size in enumerate(sizes)
        ]
        await settle_loop()
        for _ in range(5):
            await gate.open_one()
        await first
        answers = [await f for f in puts]
        assert [a.accepted for a in answers] == sizes
        gate.executor.shutdown()
        return gate.calls

    # 3 + 2, then 4 (with 7 it would pass 5), then 7 alone (larger than a group), then 1.
    assert asyncio.run(scenario()) == [[1], [3, 2], [4], [7], [1]]
    assert queue.counts()[State.QUEUED] == 18


def test_commits_keeps_one_committer_per_queue(tmp_path: Path) -> None:
    one, two = SQLiteQueue(tmp_path / "one.db"), SQLiteQueue(tmp_path / "two.db")
    try:

        async def scenario() -> None:
            executor = ThreadPoolExecutor(1)

            async def run(action: Callable[..., Any], *args: Any) -> Any:
                return await asyncio.get_running_loop().run_in_executor(executor, action, *args)

            commits = Commits(run)
            assert commits.committer(one) is commits.committer(one)
            assert commits.committer(one) is not commits.committer(two)
            answers = await asyncio.gather(
                commits.put(one, [event("a")], T0),
                commits.put(two, [event("a")], T0),
                commits.put(one, [event("a")], T0),
            )
            assert list(answers) == [Enqueued(1, 0), Enqueued(1, 0), Enqueued(0, 1)]
            per_request = Commits(run, "per-request")
            assert await per_request.put(two, [event("b")], T0) == Enqueued(1, 0)
            assert per_request.stats.commits == {"committed": 1, "failed": 0}
            executor.shutdown()

        asyncio.run(scenario())
        assert [r.key for r in one.records()] == ["a"]
        assert [r.key for r in two.records()] == ["a", "b"]
    finally:
        one.close()
        two.close()
