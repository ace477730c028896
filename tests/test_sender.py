"""Sender behaviour that a real server cannot provoke: a failing queue, a failing transport."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from attentive_router._delivery.retry import RetryPolicy
from attentive_router._delivery.sender import Sender, SenderSettings
from attentive_router._queue.intake import new_event
from attentive_router._queue.interface import QueueError, Settlement, State
from attentive_router._queue.sqlite import SQLiteQueue

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.delivery_harness import custom_event  # noqa: E402

NOW = time.time()


def events(count: int) -> list[dict[str, object]]:
    return [custom_event(f"m{i}", f"u{i}", i) for i in range(count)]


class FailingSettles(SQLiteQueue):
    """A queue whose disk fills up after ``good`` settle calls."""

    def __init__(self, path: Path, good: int) -> None:
        super().__init__(path)
        self.good = good

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if self.good <= 0:
            raise QueueError("queue q.db: database or disk is full")
        self.good -= 1
        super().settle(settlements)


def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={})


async def drain(queue: SQLiteQueue, handler: object, **settings: object) -> Sender:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport) as client:
        sender = Sender(
            queue,
            client,
            SenderSettings(base_url="http://127.0.0.1:9", token="t", **settings),  # type: ignore[arg-type]
        )
        await asyncio.wait_for(sender.run(), 30)  # a regression here used to hang
    return sender


def test_a_failing_queue_ends_the_run_with_its_error_and_loses_nothing(tmp_path: Path) -> None:
    queue = FailingSettles(tmp_path / "q.db", good=1)
    queue.put([new_event(e, NOW) for e in events(50)], NOW)
    with pytest.raises(QueueError, match="disk is full"):
        asyncio.run(drain(queue, ok, concurrency=4))
    counts = queue.counts()
    assert counts[State.QUEUED] + counts[State.IN_FLIGHT] + counts[State.DELIVERED] == 50
    assert counts[State.IN_FLIGHT] > 0  # what could not be written is still claimed
    queue.good = 10**6
    assert queue.recover() == counts[State.IN_FLIGHT]
    asyncio.run(drain(queue, ok))
    assert queue.counts()[State.DELIVERED] == 50


def test_an_unexpected_transport_exception_is_retried_not_fatal(tmp_path: Path) -> None:
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) <= 3:
            raise RuntimeError("transport bug")
        return httpx.Response(200, json={})

    queue = SQLiteQueue(tmp_path / "q.db")
    queue.put([new_event(e, NOW) for e in events(1)], NOW)
    policy = RetryPolicy(base=0.001, cap=0.002)
    sender = asyncio.run(drain(queue, flaky, policy=policy))
    (record,) = queue.records()
    assert record.state is State.DELIVERED
    assert record.attempts == 4
    assert sender.stats.retries == 3
    assert len(calls) == 4
