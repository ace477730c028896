"""The dead-letter topic: list, show and replay dead letters of a Kafka queue.

A dead letter is a record keyed by the event record it came from (``PARTITION:OFFSET`` of the
events topic); a replay writes the event back to the events topic, then a tombstone (no value)
under the same key, so a later reading no longer lists it. The topic has one partition; a dead
letter's id is its offset there plus one: ids start at 1, as a queue file's do (and as
``records(after=0)`` expects).
"""

from __future__ import annotations

from collections.abc import Iterable

from attentive_router._queue.interface import Record, State
from attentive_router._queue.kafka.codec import (
    UnreadableRecordError,
    read_dead_letter,
    record_key,
    replay_headers,
)
from attentive_router._queue.kafka.reading import read_range
from attentive_router._queue.kafka.runner import Runner
from attentive_router._queue.kafka.settings import KafkaSettings

WAIT = 20.0
"""Seconds to wait for the brokers before a command gives up with a ``QueueError``."""


async def read_dead_letters(settings: KafkaSettings) -> dict[str, Record]:
    """Every dead letter not yet replayed, by its key, in the topic's order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 - Kafka only

    consumer = AIOKafkaConsumer(
        **settings.client_options(), group_id=None, enable_auto_commit=False
    )
    letters: dict[str, Record] = {}
    await consumer.start()
    try:
        partition = TopicPartition(settings.dead_letter_topic, 0)
        async for message in read_range(consumer, partition, None, None):
            key = (message.key or b"").decode("utf-8", "replace")
            letters.pop(key, None)
            if message.value is None:  # a tombstone: replayed
                continue
            try:
                letters[key] = read_dead_letter(message.offset + 1, message.value)
            except UnreadableRecordError:
                continue
    finally:
        await consumer.stop()
    return letters


class KafkaDeadLetters:
    """The dead letters of a Kafka queue, behind the queue interface's blocking calls.

    Args:
        settings: The queue.
        destination: The destination the events are replayed for (their record key).
        runner: The loop to use (default: a loop of its own, stopped by ``close``).
    """

    def __init__(
        self, settings: KafkaSettings, destination: str = "default", runner: Runner | None = None
    ) -> None:
        self.settings = settings
        self.destination = destination
        self._own = runner is None
        self._runner = runner or Runner("kafka-dead-letters")
        self._where = f"Kafka at {','.join(settings.bootstrap)}"

    def _letters(self) -> dict[str, Record]:
        return self._runner.call(read_dead_letters(self.settings), WAIT * 2, self._where)

    def records(self, state: State | None = None, limit: int = 100, after: int = 0) -> list[Record]:
        """Dead letters with ids above ``after`` (a Kafka queue keeps no other records)."""
        if state not in {None, State.DEAD}:
            return []
        found = sorted(self._letters().values(), key=lambda record: record.id)
        return [record for record in found if record.id > after][:limit]

    def record(self, id_or_key: int | str) -> Record | None:
        """One dead letter by id (its offset plus one) or by ``messageId``."""
        for record in self._letters().values():
            if id_or_key in (record.id, record.key):
                return record
        return None

    def counts(self) -> dict[State, int]:
        """The number of dead letters (the only state the topics keep)."""
        return {State.DEAD: len(self._letters())}

    def replay(self, ids: Iterable[int] | None, now: float) -> int:  # noqa: ARG002 - as Queue
        """Write dead letters back to the events topic, then their tombstones; return how many."""
        letters = self._letters()
        chosen = None if ids is None else set(ids)
        picked = {
            key: record for key, record in letters.items() if chosen is None or record.id in chosen
        }
        if picked:
            self._runner.call(self._replay(picked), WAIT * 2, self._where)
        return len(picked)

    async def _replay(self, picked: dict[str, Record]) -> None:
        from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - Kafka only

        producer = AIOKafkaProducer(**self.settings.client_options(), acks="all")
        await producer.start()
        try:
            # The events first, every one acknowledged, then the tombstones: a failure between
            # the two leaves a dead letter listed that was also replayed (delivered once more
            # at worst), never one that is gone without having been replayed.
            sent = [
                await producer.send(
                    self.settings.events_topic,
                    value=record.event,
                    key=record_key(record.destination or self.destination, record.user),
                    headers=replay_headers(record, record.destination or self.destination),
                )
                for record in picked.values()
            ]
            for future in sent:
                await future
            tombstones = [
                await producer.send(self.settings.dead_letter_topic, value=None, key=key.encode())
                for key in picked
            ]
            for future in tombstones:
                await future
        finally:
            await producer.stop()

    def close(self) -> None:
        """Stop the loop when it is this object's own."""
        if self._own:
            self._runner.stop()
