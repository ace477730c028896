"""Accepting events into a Kafka queue (``serve``): every event acknowledged before the 200.

Each request's events are written to the events topic with ``acks=all`` and awaited together:
``put`` returns only once every in-sync replica of every event's partition has it, and raises
``QueueError`` (the request gets 503 and the client sends again) when that does not happen in
time. A request that timed out may still reach the log later; its events are then delivered
once all the same, as the workers recognise the resent copies by their ``messageId``.

Duplicates are not looked for here: several ``serve`` processes write to the same topic and
share no memory; the delivery workers, which read each partition in order, drop them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from attentive_router._queue.interface import Enqueued, NewEvent, QueueError
from attentive_router._queue.kafka.codec import event_headers, record_key
from attentive_router._queue.kafka.reach import PING_EVERY, Reach
from attentive_router._queue.kafka.settings import KafkaSettings


async def send_events(
    producer: Any, settings: KafkaSettings, destination: str, events: Sequence[NewEvent]
) -> list[Any]:
    """Hand ``events`` to ``producer`` for the events topic; return their acknowledgements.

    Each record is keyed by destination and user, so that one user's events share a partition.
    """
    return [
        await producer.send(
            settings.events_topic,
            value=event.event,
            key=record_key(destination, event.user),
            headers=event_headers(event, destination),
        )
        for event in events
    ]


class KafkaIntake:
    """The producer of one destination's events, on the caller's event loop.

    Args:
        settings: The queue.
        destination: The destination the events are for (part of each record's key).
        ack_timeout: Seconds a request waits for every acknowledgement before its 503.
    """

    def __init__(self, settings: KafkaSettings, destination: str, ack_timeout: float) -> None:
        self.settings = settings
        self.destination = destination
        self.ack_timeout = ack_timeout
        self.reach = Reach()
        """Whether the brokers answered the last check (or the last write)."""
        self._producer: Any = None

    async def start(self) -> None:
        """Connect to the brokers and check that the events topic exists.

        Raises:
            QueueError: No broker answered, or the topic is missing.
        """
        from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - Kafka only
        from aiokafka.errors import KafkaError  # noqa: PLC0415

        self._producer = AIOKafkaProducer(
            **self.settings.client_options(),
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=max(1000, int(self.ack_timeout * 1000)),
        )
        where = ",".join(self.settings.bootstrap)
        try:
            await asyncio.wait_for(self._producer.start(), max(self.ack_timeout, 10.0))
            partitions = await self._producer.partitions_for(self.settings.events_topic)
        except (KafkaError, TimeoutError, OSError) as error:
            await self.stop()
            raise QueueError(
                f"Kafka at {where}: {error or type(error).__name__}; check the address and the "
                "[kafka] security settings"
            ) from error
        if not partitions:
            await self.stop()
            raise QueueError(
                f"{self.settings.url}: the topic {self.settings.events_topic} does not exist; "
                f"create the topics with `attentive-router kafka init --queue {self.settings.url}`"
            )
        self.reach.answered()

    async def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:  # noqa: ARG002 - as the committers
        """Write ``events`` and wait until the brokers acknowledged every one.

        Raises:
            QueueError: Not every event was acknowledged within ``ack_timeout`` seconds.
        """
        from aiokafka.errors import KafkaError  # noqa: PLC0415 - Kafka only

        try:
            async with asyncio.timeout(self.ack_timeout):
                sent = await send_events(self._producer, self.settings, self.destination, events)
                await asyncio.gather(*sent)
        except TimeoutError as error:
            self.reach.unanswered(f"no acknowledgement within {self.ack_timeout:g} s")
            raise QueueError(
                f"Kafka did not acknowledge the events within {self.ack_timeout:g} s"
            ) from error
        except KafkaError as error:
            self.reach.unanswered(str(error) or type(error).__name__)
            raise QueueError(f"Kafka refused the events: {error}") from error
        self.reach.answered()
        return Enqueued(
            accepted=len(events),
            duplicates=0,
            rejected=tuple(event.rejected[0] for event in events if event.rejected),
        )

    async def watch(self, stop: asyncio.Event) -> None:
        """Check the brokers every ``PING_EVERY`` seconds until ``stop``."""
        while not stop.is_set():
            await self.reach.ping(self._producer)
            try:
                await asyncio.wait_for(stop.wait(), PING_EVERY)
            except TimeoutError:
                continue

    async def stop(self) -> None:
        """Flush what can be flushed in a few seconds and disconnect."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        try:
            await asyncio.wait_for(producer.stop(), 5.0)
        except TimeoutError:
            # Only events never acknowledged to a client are left: they are sent again.
            return
