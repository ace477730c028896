"""Group commit: the puts that wait while a commit runs share the next transaction.

A server answers a request only once its events are on disk, and each durable transaction
costs a few fsyncs whatever its size. ``GroupCommitter`` keeps one commit of its queue running
at a time: the requests that arrive meanwhile wait together, and the next commit stores all of
them in one ``Queue.put_many``. Each request learns its own ``Enqueued`` once that commit is
done, exactly as from a ``put`` of its own (a messageId in an earlier request of the group is
a duplicate in a later one); a commit that fails fails each of the requests it held, and only
those. Nothing waits on purpose: a request that finds no commit running starts one at once.

``Commits`` keeps one committer per queue object, so a process with several queues commits
each on its own; ``per_request`` turns grouping off (one transaction per request, as a
comparison and a fallback).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from attrs import define, field

from attentive_router._queue.interface import CommitMode, Enqueued, NewEvent, Queue

Runner = Callable[..., Awaitable[Any]]
"""``run(function, *args)``: calls ``function(*args)`` off the event loop (the queue's thread)
and returns its result."""

DEFAULT = "default"
"""The destination a queue's commits are counted under when none is named."""

MAX_GROUP_EVENTS = 20_000
"""Events at most in one group commit (a request larger than this is committed alone)."""


@define
class CommitStats:
    """What the commits of a process did, for ``/metrics``.

    Attributes:
        commits: Transactions by outcome (``committed`` or ``failed``).
        by_destination: Transactions by (destination, outcome): each destination has its own
            queue, so its own transactions.
        observe: Called after every commit with how many requests and events it held,
            whether it succeeded and the destination of its queue (the server's histograms).
    """

    commits: dict[str, int] = field(factory=lambda: {"committed": 0, "failed": 0})
    by_destination: dict[tuple[str, str], int] = field(factory=dict)
    observe: Callable[[int, int, bool, str], None] | None = None

    def record(self, requests: int, events: int, ok: bool, destination: str = DEFAULT) -> None:
        """Count one commit of ``requests`` requests holding ``events`` events."""
        outcome = "committed" if ok else "failed"
        self.commits[outcome] += 1
        key = (destination, outcome)
        self.by_destination[key] = self.by_destination.get(key, 0) + 1
        if self.observe is not None:
            self.observe(requests, events, ok, destination)


@define
class _Waiting:
    events: Sequence[NewEvent]
    now: float
    answer: asyncio.Future[Enqueued]


class GroupCommitter:
    """Commits the puts of one queue in groups (see the module's description).

    Args:
        queue: The queue; every commit is one ``queue.put_many``.
        run: Runs a queue call off the event loop (the thread the queue's writes use).
        stats: Where commits are counted.
        max_events: Events at most per group; the rest wait for the next commit.
        destination: The destination whose queue this is (commits are counted under it).
    """

    def __init__(
        self,
        queue: Queue,
        run: Runner,
        stats: CommitStats | None = None,
        max_events: int = MAX_GROUP_EVENTS,
        destination: str = DEFAULT,
    ) -> None:
        self.queue = queue
        self.destination = destination
        self.run = run
        self.stats = stats if stats is not None else CommitStats()
        self.max_events = max_events
        self._waiting: list[_Waiting] = []
        self._committing: asyncio.Task[None] | None = None

    async def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:
        """Store ``events`` in the next commit; its answer once that commit is on disk.

        Raises what the commit raised (``QueueError`` when storage failed): nothing of the
        request was stored then.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Enqueued] = loop.create_future()
        self._waiting.append(_Waiting(events, now, answer))
        if self._committing is None:
            self._committing = loop.create_task(self._commit_while_waiting())
        # A cancelled request (its client gone) does not cancel the commit of the others.
        return await asyncio.shield(answer)

    def _next_group(self) -> list[_Waiting]:
        size = 0
        taken = 0
        for waiting in self._waiting:
            size += len(waiting.events)
            if taken and size > self.max_events:
                break
            taken += 1
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return group

    async def _commit_while_waiting(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group = self._next_group()
                batches = [(waiting.events, waiting.now) for waiting in group]
                events = sum(len(waiting.events) for waiting in group)
                try:
                    answers: list[Enqueued] = await self.run(self.queue.put_many, batches)
                except Exception as error:  # noqa: BLE001 - each request of the group gets it
                    self.stats.record(len(group), events, ok=False, destination=self.destination)
                    for waiting in group:
                        if not waiting.answer.done():
                            waiting.answer.set_exception(error)
                            # Retrieved here: a request that went away must not leave an
                            # "exception was never retrieved" warning behind.
                            waiting.answer.exception()
                    continue
                self.stats.record(len(group), events, ok=True, destination=self.destination)
                for waiting, answer in zip(group, answers, strict=True):
                    if not waiting.answer.done():
                        waiting.answer.set_result(answer)
        finally:
            # Only when cancelled (the loop is closing): whoever still waits is cancelled too.
            self._committing = None
            for waiting in [*group, *self._waiting]:
                if not waiting.answer.done():
                    waiting.answer.cancel()
            self._waiting.clear()


class PerRequest:
    """One transaction per request (``serve --commit per-request``): ``queue.put`` each."""

    def __init__(
        self,
        queue: Queue,
        run: Runner,
        stats: CommitStats | None = None,
        destination: str = DEFAULT,
    ) -> None:
        self.queue = queue
        self.destination = destination
        self.run = run
        self.stats = stats if stats is not None else CommitStats()

    async def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:
        """Store ``events`` in a transaction of their own."""
        try:
            answer: Enqueued = await self.run(self.queue.put, events, now)
        except Exception:
            self.stats.record(1, len(events), ok=False, destination=self.destination)
            raise
        self.stats.record(1, len(events), ok=True, destination=self.destination)
        return answer


class Commits:
    """The committers of a process, one per queue object, all counted in one ``stats``."""

    def __init__(
        self, run: Runner, mode: CommitMode = "group", stats: CommitStats | None = None
    ) -> None:
        self.run = run
        self.mode = mode
        self.stats = stats if stats is not None else CommitStats()
        self._committers: dict[int, tuple[Queue, GroupCommitter | PerRequest]] = {}

    def committer(self, queue: Queue, destination: str = DEFAULT) -> GroupCommitter | PerRequest:
        """The committer of ``queue`` (made on first use), counted under ``destination``."""
        known = self._committers.get(id(queue))
        if known is not None and known[0] is queue:
            return known[1]
        made: GroupCommitter | PerRequest
        if self.mode == "group":
            made = GroupCommitter(queue, self.run, self.stats, destination=destination)
        else:
            made = PerRequest(queue, self.run, self.stats, destination=destination)
        self._committers[id(queue)] = (queue, made)
        return made

    async def put(
        self, queue: Queue, events: Sequence[NewEvent], now: float, destination: str = DEFAULT
    ) -> Enqueued:
        """Store ``events`` in ``queue`` (``destination``'s); the answer once they are on disk."""
        return await self.committer(queue, destination).put(events, now)
