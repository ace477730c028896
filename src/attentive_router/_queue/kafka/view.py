"""What a Kafka queue holds, as the operator console shows it: read, never taken part in.

``KafkaView`` reads the events topic's newest records (``tail``), the delivery group's
committed offset against each partition's end (``lag``), and the dead letters (through
``KafkaDeadLetters``). It never joins the consumer group ``PREFIX.delivery``: the committed
offsets are asked for by a consumer that names the group but neither subscribes nor is
assigned anything, so the group's workers keep their partitions.

A partition's end is the high watermark of a fetch answer, as in ``reading``; its start is the
broker's earliest offset. Every Kafka client lives on the private loop of a ``Runner``; the
blocking calls wait for it and may come from any thread (they are taken one at a time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from attrs import frozen

from attentive_router._queue.interface import QueueError
from attentive_router._queue.kafka.codec import UnreadableRecordError, read_event
from attentive_router._queue.kafka.dead_letters import KafkaDeadLetters
from attentive_router._queue.kafka.reading import FETCH_WAIT_MS, read_range
from attentive_router._queue.kafka.runner import Runner
from attentive_router._queue.kafka.settings import KafkaSettings

WAIT = 30.0
"""Seconds a blocking call waits for the brokers before giving up with a ``QueueError``."""
SCAN = 20_000
"""Records of one partition ``tail`` reads at most, looking for the destination's events."""
STEP = 200
"""Records of one partition ``tail`` reads first, back from the end (doubled each time)."""


@frozen
class TailEvent:
    """One record of ``PREFIX.events``, as the console lists it.

    Attributes:
        partition: The partition it is in.
        offset: Its offset there.
        received_at: When it was accepted (the receipt-time header, else the record's
            timestamp), seconds since the epoch.
        key: Its ``messageId`` (the deduplication key).
        source: The write key's source it came in with.
        user: The user it is for.
        destination: The destination it was queued for.
        event: The event's JSON, as queued.
        rejected: ``(reason, message)`` when it was stored as rejected, else None.
        replayed: Whether a dead-letter replay wrote it back.
    """

    partition: int
    offset: int
    received_at: float
    key: str
    source: str
    user: str
    destination: str
    event: bytes
    rejected: tuple[str, str] | None
    replayed: bool


@frozen
class GroupLag:
    """One partition of ``PREFIX.events`` against the delivery group ``PREFIX.delivery``.

    Attributes:
        partition: Its number.
        committed: The group's committed offset, or None when none was committed yet.
        end: The high watermark: the offset the next record will get.
        lag: Records not yet settled by the group: ``end`` minus the committed offset (or
            minus the partition's first offset when nothing was committed).
    """

    partition: int
    committed: int | None
    end: int
    lag: int


class KafkaView:
    """A read-only look at a Kafka queue: recent events, the group's lag, the dead letters.

    Args:
        settings: The queue.
        destination: The destination whose events ``tail`` lists (and dead letters are
            replayed for).
    """

    def __init__(self, settings: KafkaSettings, destination: str = "default") -> None:
        self.settings = settings
        self.destination = destination
        self._runner = Runner("kafka-view")
        self._dead_letters = KafkaDeadLetters(settings, destination, self._runner)
        self._where = f"Kafka at {','.join(settings.bootstrap)}"
        self._reader: Any = None
        """A consumer without a group: fetches records and high watermarks."""
        self._offsets: Any = None
        """A consumer naming the group, only asked for committed offsets (never subscribed)."""
        self._ends: dict[int, int] = {}
        """The last high watermark seen of each partition: where the next look starts."""
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def dead_letters(self) -> KafkaDeadLetters:
        """The dead-letter topic: ``records``, ``record``, ``replay`` (on this view's loop)."""
        return self._dead_letters

    def tail(self, limit: int = 200) -> list[TailEvent]:
        """The newest ``limit`` records of ``PREFIX.events`` for this destination, newest first.

        Each partition is read back from its end until it has given ``limit`` of the
        destination's events, its first record, or ``SCAN`` records; the partitions' records
        are then ordered by receipt time (then offset), newest first. Records this project did
        not write are left out.

        Raises:
            QueueError: The brokers did not answer, or the events topic is missing.
        """
        if limit < 1:
            return []
        return self._call(self._tail(limit))  # type: ignore[no-any-return]

    def lag(self) -> list[GroupLag]:
        """Each partition of ``PREFIX.events``: the group's committed offset, end and lag.

        The committed offsets are fetched (OffsetFetch) without joining the group, so the
        workers keep their partitions.

        Raises:
            QueueError: The brokers did not answer, or the events topic is missing.
        """
        return self._call(self._lag())  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the clients and the loop.

        Raises:
            QueueError: A client did not stop cleanly (the loop is stopped all the same).
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.call(self._stop(), WAIT, self._where)
        finally:
            self._runner.stop()

    def _call(self, coroutine: Any) -> Any:
        if self._closed:
            coroutine.close()
            raise QueueError(f"{self.settings.url}: the view is closed")
        return self._runner.call(coroutine, WAIT, self._where)

    # -- on the loop ---------------------------------------------------------------------------

    async def _partitions(self) -> list[Any]:
        """The events topic's partitions, connecting first when needed.

        Raises:
            QueueError: The topic is missing (``attentive-router kafka init`` creates it).
        """
        from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 - Kafka only

        if self._reader is None:
            options = self.settings.client_options()
            reader = AIOKafkaConsumer(
                **options,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=FETCH_WAIT_MS,
            )
            offsets = AIOKafkaConsumer(**options, group_id=self.settings.group)
            try:
                await reader.start()
                await offsets.start()
            except BaseException:
                await reader.stop()
                await offsets.stop()
                raise
            self._reader, self._offsets = reader, offsets
        # All topics' metadata, fresh: asking about a missing topic by name may create it, and
        # the consumer's public calls only know the topics it was assigned.
        cluster = await self._reader._client.fetch_all_metadata()  # noqa: SLF001 - see above
        numbers = cluster.partitions_for_topic(self.settings.events_topic)
        if not numbers:
            raise QueueError(
                f"{self.settings.url}: the topic {self.settings.events_topic} does not exist; "
                f"create the topics with `attentive-router kafka init --queue {self.settings.url}`"
            )
        return [TopicPartition(self.settings.events_topic, number) for number in sorted(numbers)]

    async def _high_watermarks(
        self, partitions: list[Any], floors: dict[Any, int]
    ) -> dict[Any, int]:
        """Each partition's end, from a fetch answer.

        The fetch asks from the last end seen, or from the partition's offset in ``floors``
        when that is further on, so that it carries few records.
        """
        reader = self._reader
        starts = {tp: max(floors[tp], self._ends.get(tp.partition, 0)) for tp in partitions}
        reader.assign(list(starts))  # a fresh assignment: no high watermark known yet
        for topic_partition, offset in starts.items():
            reader.seek(topic_partition, offset)
        deadline = time.monotonic() + WAIT / 2
        while any(reader.highwater(tp) is None for tp in starts):
            if time.monotonic() > deadline:
                raise QueueError(f"{self._where}: no fetch answer gave the partitions' ends")
            await reader.getmany(timeout_ms=FETCH_WAIT_MS, max_records=1)
        ends = {tp: int(reader.highwater(tp)) for tp in starts}
        reader.unsubscribe()  # nothing is fetched between two looks
        self._ends.update({tp.partition: end for tp, end in ends.items()})
        return ends

    async def _lag(self) -> list[GroupLag]:
        async with self._lock:
            partitions = await self._partitions()
            firsts = await self._reader.beginning_offsets(partitions)
            answers = await asyncio.gather(*(self._offsets.committed(tp) for tp in partitions))
            committed: dict[Any, int | None] = dict(zip(partitions, answers, strict=True))
            floors = {tp: max(committed[tp] or 0, firsts[tp]) for tp in partitions}
            ends = await self._high_watermarks(partitions, floors)
        found = []
        for tp in partitions:
            done = committed[tp]
            base = firsts[tp] if done is None else done
            found.append(GroupLag(tp.partition, done, ends[tp], max(0, ends[tp] - base)))
        return found

    async def _tail(self, limit: int) -> list[TailEvent]:
        async with self._lock:
            partitions = await self._partitions()
            firsts = await self._reader.beginning_offsets(partitions)
            ends = await self._high_watermarks(partitions, firsts)
            found: list[TailEvent] = []
            for tp in partitions:
                found += await self._tail_of(tp, firsts[tp], ends[tp], limit)
            self._reader.unsubscribe()
        found.sort(key=lambda item: (item.received_at, item.offset, item.partition), reverse=True)
        return found[:limit]

    async def _tail_of(
        self, topic_partition: Any, first: int, end: int, limit: int
    ) -> list[TailEvent]:
        """Up to ``limit`` of the destination's newest events in one partition."""
        found: list[TailEvent] = []
        stop, step, read = end, STEP, 0
        while len(found) < limit and stop > first and read < SCAN:
            start = max(first, stop - step, stop - (SCAN - read))
            chunk: list[TailEvent] = []
            async for record in read_range(self._reader, topic_partition, start, stop):
                read += 1
                item = self._tail_event(topic_partition.partition, record)
                if item is not None:
                    chunk.append(item)
            found = chunk + found
            stop, step = start, step * 2
        return found[-limit:]

    def _tail_event(self, partition: int, record: Any) -> TailEvent | None:
        try:
            incoming = read_event(record.value, record.headers, record.timestamp)
        except UnreadableRecordError:
            return None
        if incoming.destination and incoming.destination != self.destination:
            return None
        return TailEvent(
            partition=partition,
            offset=record.offset,
            received_at=incoming.received_at,
            key=incoming.key,
            source=incoming.source,
            user=incoming.user,
            destination=incoming.destination,
            event=incoming.event,
            rejected=incoming.rejected,
            replayed=incoming.replayed,
        )

    async def _stop(self) -> None:
        for consumer in (self._reader, self._offsets):
            if consumer is not None:
                await consumer.stop()
        self._reader = self._offsets = None
