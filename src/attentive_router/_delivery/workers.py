"""``deliver --follow`` on a Kafka queue: one worker of the queue's consumer group.

The worker is the same follower as on a queue file (``follow``: senders restarted after a
failure, a refused key paused and checked again, a line per burst of settled events) over a
``KafkaWork`` instead of a ``SQLiteQueue``. Two things differ: new events are announced by the
worker's fetch loop rather than found by polling a file, and the account's rate limits are
shared with the other workers: this one uses the fraction of the partitions it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import IO

from attrs import evolve

from attentive_router._delivery.follow import follow
from attentive_router._delivery.job import Run
from attentive_router._delivery.keycheck import KeyCheck
from attentive_router._delivery.ratelimit import Share
from attentive_router._delivery.sender import SenderSettings, Stats
from attentive_router._queue.kafka.settings import (
    DEFAULT_MAX_AHEAD,
    DEFAULT_MAX_HELD,
    KafkaSettings,
)
from attentive_router._queue.kafka.work import KafkaWork, Note

WAKE_INTERVAL = 0.05
"""Seconds between two looks at the worker's count of newly fetched events."""


async def follow_kafka(  # noqa: PLR0913 - optional parts are keyword-only
    queue: KafkaSettings,
    settings: SenderSettings,
    *,
    destination: str,
    out: IO[str],
    note: Note,
    dedupe_window: float,
    max_held: int = DEFAULT_MAX_HELD,
    max_ahead: int = DEFAULT_MAX_AHEAD,
    keys: KeyCheck | None = None,
    stop: asyncio.Event | None = None,
    signals: bool = True,
    started: Callable[[KafkaWork], None] | None = None,
    stats: Stats | None = None,
) -> Run:
    """Join the consumer group of ``queue`` and deliver its partitions until stopped.

    Args:
        queue: The Kafka queue.
        settings: How to deliver (its rates are the whole account's).
        destination: The destination delivered for.
        out: Where the lines about the work go.
        note: Log lines of the worker (assignments, revocations, back-pressure).
        dedupe_window: Seconds a ``messageId`` is remembered.
        max_held: Events held before fetching pauses.
        max_ahead: Events a partition is read past its oldest unsettled event before it waits.
        keys: The key's re-checks after a refusal.
        stop: Set it to stop.
        signals: Handle SIGINT, SIGTERM and SIGHUP here.
        started: Called with the worker once it has joined (for ``/metrics``).
        stats: Where to count what is settled while running (for ``/metrics``).

    Raises:
        QueueError: The brokers could not be reached at the start, or the topics are missing.
    """
    loop = asyncio.get_running_loop()
    share = Share(0.0)
    arrivals = [0]

    def on_change() -> None:
        arrivals[0] += 1

    def on_share(fraction: float) -> None:
        loop.call_soon_threadsafe(share.set, fraction)

    work = KafkaWork(
        queue,
        destination=destination,
        dedupe_window=dedupe_window,
        max_held=max_held,
        max_ahead=max_ahead,
        on_change=on_change,
        on_share=on_share,
        note=note,
    )
    try:
        await asyncio.to_thread(work.start)
        if started is not None:
            started(work)
        return await follow(
            work,
            evolve(settings, share=share),
            changes=lambda: arrivals[0],
            poll_interval=WAKE_INTERVAL,
            out=out,
            where=f"{queue.url} as a worker of the consumer group {queue.group}",
            stop=stop,
            keys=keys,
            signals=signals,
            looking="as the brokers hand them over",
            stats=stats,
        )
    finally:
        await asyncio.to_thread(work.close)
