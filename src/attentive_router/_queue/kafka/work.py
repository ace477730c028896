"""The delivery side of a Kafka queue: one worker of the consumer group ``PREFIX.delivery``.

``KafkaWork`` gives the sender the queue interface's delivery calls (``claim``, ``settle``,
``release``, ``recover``, ``next_due``) over the partitions the group assigned to this worker.
It does not pretend to be a database: the events of those partitions are read into a bounded
buffer, the sender claims and settles them there, and the log is told how far everything is
settled by committing offsets.

- **Order.** A user's events share a partition (the record key is destination and user); a
  user's next event is claimable only once the previous one is settled, while other users'
  events go ahead, retries included.
- **Offsets.** A partition's committed offset is its oldest unsettled event (or the next to
  read): a worker killed at any moment loses nothing, and the next owner repeats only events
  from there on that were delivered already. Those are not only the ones in flight or waiting
  for a retry: while an older event waits (for a retry, or behind its user's earlier ones),
  other users' later events of the partition go ahead and are delivered, and they come again
  after a handover. ``max_ahead`` bounds them: a partition read that far past its oldest
  unsettled event stops fetching until that event is settled. A dead letter is acknowledged by
  the dead-letter topic before its offset can be committed.
- **Duplicates.** ``messageId`` (per source) is remembered for the deduplication window, per
  partition; when a partition is assigned, what was settled before its committed offset is read
  again from the log (from the window's start, as far as the topic's retention keeps it) to
  rebuild that memory. A batch resent to another ``serve`` is still delivered once, because
  its events land in the same partitions.
- **Back-pressure.** At ``max_held`` events held, fetching pauses until the sender catches up.
- **Rate share.** ``on_share`` is told the fraction of the partitions this worker holds after
  every rebalance, so that the workers of one account together stay inside its limits.

Every Kafka client and every piece of state lives on the private loop of a ``Runner``; the
blocking calls wait for it. ``on_change`` and ``on_share`` are called on that loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from attrs import define, field, frozen

from attentive_router._queue.interface import (
    DEFAULT_DEDUPE_WINDOW,
    Claim,
    Enqueued,
    NewEvent,
    QueueError,
    Record,
    Settlement,
    State,
)
from attentive_router._queue.kafka.codec import (
    Incoming,
    UnreadableRecordError,
    dead_letter_value,
    read_event,
)
from attentive_router._queue.kafka.dead_letters import KafkaDeadLetters
from attentive_router._queue.kafka.intake import send_events
from attentive_router._queue.kafka.reach import PING_EVERY, Reach
from attentive_router._queue.kafka.reading import read_range
from attentive_router._queue.kafka.runner import Runner
from attentive_router._queue.kafka.settings import (
    DEFAULT_MAX_AHEAD,
    DEFAULT_MAX_HELD,
    KafkaSettings,
)

COMMIT_INTERVAL = 0.5
"""Seconds between offset commits while events settle."""
FETCH_WAIT_MS = 200
REVOKE_GRACE = 5.0
"""Seconds a rebalance waits for the events in flight of the partitions leaving this worker."""
WAIT = 20.0
"""Seconds a blocking call waits for the worker's loop (or the brokers) before giving up."""

Note = Callable[[int, str, dict[str, object]], None]


def _quiet(_level: int, _text: str, _fields: dict[str, object]) -> None:
    return None


@define
class _Held:
    """An event read from an assigned partition and not yet settled."""

    id: int
    partition: int
    offset: int
    user: bytes
    incoming: Incoming
    state: State = State.QUEUED
    attempts: int = 0
    throttles: int = 0
    done: int = 0
    first_attempt_at: float | None = None
    next_attempt_at: float = 0.0


@define
class _Partition:
    """What the worker knows of one assigned partition."""

    topic_partition: Any
    position: int | None
    """The next offset to read; None before the first record when nothing was committed."""
    committed: int | None
    open: set[int] = field(factory=set)
    seen: dict[tuple[str, str], tuple[float, int]] = field(factory=dict)
    """(source, messageId) -> (when it was received, the offset of its record)."""
    ready: bool = False
    """False while its ``messageId`` memory is being rebuilt: records are not taken yet."""


@frozen
class PartitionLag:
    """One assigned partition, for ``/metrics``.

    Attributes:
        partition: Its number.
        end: The broker's high watermark (None before the first fetch answer).
        committed: The offset committed for the group.
        held: Events of it held by this worker, unsettled.
    """

    partition: int
    end: int | None
    committed: int | None
    held: int

    @property
    def lag(self) -> int | None:
        """Records not yet settled by the group (end minus committed)."""
        if self.end is None:
            return None
        return max(0, self.end - (self.committed or 0))


class KafkaWork:
    """One delivery worker's share of a Kafka queue, behind the queue interface.

    Args:
        settings: The queue.
        destination: The destination this worker delivers for (recorded with dead letters).
        dedupe_window: Seconds a ``messageId`` is remembered.
        max_held: Events held before fetching pauses.
        max_ahead: Events a partition is read past its oldest unsettled event before its
            fetching pauses: what a successor may repeat when this worker dies.
        on_change: Called when new events can be claimed.
        on_share: Called with the fraction of the partitions held, after every rebalance.
        note: ``(level, text, fields)`` for what an operator should see in the logs.
        clock: Seconds since the epoch.
    """

    def __init__(  # noqa: PLR0913 - the collaborators are keyword-only, as documented
        self,
        settings: KafkaSettings,
        *,
        destination: str = "default",
        dedupe_window: float = DEFAULT_DEDUPE_WINDOW,
        max_held: int = DEFAULT_MAX_HELD,
        max_ahead: int = DEFAULT_MAX_AHEAD,
        on_change: Callable[[], None] | None = None,
        on_share: Callable[[float], None] | None = None,
        note: Note = _quiet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.destination = destination
        self.dedupe_window = dedupe_window
        self.max_held = max_held
        self.max_ahead = max_ahead
        self.on_change = on_change
        self.on_share = on_share
        self.note = note
        self.clock = clock
        self.duplicates = 0
        """Events not delivered because their ``messageId`` was seen within the window."""
        self.unreadable = 0
        """Records of the events topic that this project did not write (left alone)."""
        self.foreign = 0
        """Events recorded for another destination (not delivered by this worker)."""
        self.share = 0.0
        self.reach = Reach()
        """Whether the brokers answered the last check (every ``PING_EVERY`` seconds)."""
        self._runner = Runner("kafka-work")
        self._dead_letters = KafkaDeadLetters(settings, destination, self._runner)
        self._consumer: Any = None
        self._producer: Any = None
        self._fetching: asyncio.Task[None] | None = None
        self._pinging: asyncio.Task[None] | None = None
        self._parts: dict[int, _Partition] = {}
        self._held: dict[int, _Held] = {}
        self._users: dict[bytes, deque[_Held]] = {}
        self._heads: dict[int, _Held] = {}
        self._settled: dict[State, int] = dict.fromkeys(State, 0)
        self._next_id = 1
        self._paused = False
        self._held_back: set[Any] = set()
        self._kept: dict[int, tuple[int, dict[tuple[str, str], tuple[float, int]]]] = {}
        self._last_commit = 0.0
        self._dirty = False
        self._closed = False

    # -- starting and stopping ---------------------------------------------------------------

    def start(self, wait: float = WAIT) -> None:
        """Join the consumer group and start reading.

        Raises:
            QueueError: The brokers did not answer within ``wait`` seconds, or the events topic
                is missing (``attentive-router kafka init`` creates it).
        """
        self._call(self._start(), wait)

    async def _start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: PLC0415 - Kafka only

        options = self.settings.client_options()
        self._producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=False)
        self._consumer = AIOKafkaConsumer(
            **options,
            group_id=self.settings.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=1000,
            session_timeout_ms=int(self.settings.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(self.settings.session_timeout * 1000 / 3)),
            # A rebalance must wait for this worker's events in flight (REVOKE_GRACE).
            rebalance_timeout_ms=int(max(self.settings.session_timeout, 2 * REVOKE_GRACE) * 1000),
        )
        await self._producer.start()
        await self._consumer.start()
        topics = await self._consumer.topics()
        if self.settings.events_topic not in topics:
            raise QueueError(
                f"{self.settings.url}: the topic {self.settings.events_topic} does not exist; "
                f"create the topics with `attentive-router kafka init --queue {self.settings.url}`"
            )
        self._consumer.subscribe([self.settings.events_topic], listener=_listener(self))
        self.reach.answered()
        self._fetching = asyncio.create_task(self._fetch_forever())
        self._pinging = asyncio.create_task(self._ping_forever())

    def close(self) -> None:
        """Commit what is settled, leave the group (its partitions go to the others), stop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self._stop(), WAIT)
        except Exception as error:  # noqa: BLE001 - closing goes on whatever failed
            self.note(
                logging.WARNING, "the Kafka clients did not stop cleanly", {"error": str(error)}
            )
        self._runner.stop()

    async def _stop(self) -> None:
        for task in (self._fetching, self._pinging):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._consumer is not None:
            await self._commit(force=True)
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    def _call(self, coroutine: Any, wait: float = WAIT) -> Any:
        return self._runner.call(coroutine, wait, f"Kafka at {','.join(self.settings.bootstrap)}")

    # -- reading the partitions --------------------------------------------------------------

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            if not await self.reach.ping(self._producer):
                continue
            if self.reach.reachable:
                self.note(logging.INFO, "Kafka answers again", {})
            else:
                self.note(logging.WARNING, "Kafka does not answer", {"error": self.reach.problem})

    async def _fetch_forever(self) -> None:
        from aiokafka.errors import KafkaError  # noqa: PLC0415 - Kafka only

        while True:
            self._apply_back_pressure()
            try:
                # A fetch may run a partition past max_ahead by at most half of it.
                room = max(1, min(1000, self.max_ahead // 2, self.max_held - len(self._held)))
                batch = await self._consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=room)
            except KafkaError as error:
                self.note(logging.WARNING, "reading from Kafka failed", {"error": str(error)})
                await asyncio.sleep(1.0)
                continue
            added = 0
            for topic_partition, records in batch.items():
                part = self._parts.get(topic_partition.partition)
                if part is None or not part.ready:
                    # Fetched before the partition was ready (or after it was revoked): read
                    # them again later, never skip them.
                    with contextlib.suppress(Exception):
                        self._consumer.seek(topic_partition, records[0].offset)
                    continue
                for record in records:
                    added += self._take(part, record)
            if added and self.on_change is not None:
                self.on_change()
            if self._dirty and self.clock() - self._last_commit >= COMMIT_INTERVAL:
                await self._commit()

    def _apply_back_pressure(self) -> None:
        """Pause fetching where it must wait.

        Every partition while ``max_held`` events are held; each partition whose reading ran
        ``max_ahead`` events past its oldest unsettled event, until that event is settled.
        """
        assigned = set(self._consumer.assignment())
        full = len(self._held) >= self.max_held or (
            self._paused and len(self._held) >= self.max_held * 0.8
        )
        if full and not self._paused:
            self.note(
                logging.INFO,
                "fetching paused: the worker holds as many events as it may",
                {"held": len(self._held), "max_held": self.max_held},
            )
        self._paused = full
        ahead = {
            part.topic_partition for part in self._parts.values() if _ahead(part) >= self.max_ahead
        }
        for topic_partition in ahead - self._held_back:
            self.note(
                logging.INFO,
                "a partition waits for its oldest unsettled event before reading further",
                {"partition": topic_partition.partition, "max_ahead": self.max_ahead},
            )
        self._held_back = ahead
        stopped = assigned if full else ahead & assigned
        paused = set(self._consumer.paused())
        if stopped - paused:
            self._consumer.pause(*(stopped - paused))
        if (paused & assigned) - stopped:
            self._consumer.resume(*((paused & assigned) - stopped))

    def _take(self, part: _Partition, record: Any) -> int:
        """Hold one record of ``part``; return 1 when it can be claimed, else 0."""
        part.position = record.offset + 1
        self._dirty = True
        try:
            incoming = read_event(record.value, record.headers, record.timestamp)
        except UnreadableRecordError as error:
            self.unreadable += 1
            self.note(
                logging.WARNING,
                "a record of the events topic is not an event written by attentive-router: "
                "left alone",
                {
                    "partition": part.topic_partition.partition,
                    "offset": record.offset,
                    "error": str(error),
                },
            )
            return 0
        if incoming.destination and incoming.destination != self.destination:
            self.foreign += 1
            self.note(
                logging.WARNING,
                "an event of the topic was queued for another destination: not delivered with "
                "this destination's key (give each destination its own topic prefix)",
                {"queued_for": incoming.destination, "destination": self.destination},
            )
            return 0
        if incoming.rejected is not None:
            self._settled[State.REJECTED] += 1
            return 0
        seen_key = (incoming.source, incoming.key)
        if not incoming.replayed:
            seen = part.seen.get(seen_key)
            # The same record read again (after a seek or a rebalance) is not a duplicate.
            if (
                seen is not None
                and seen[1] != record.offset
                and incoming.received_at - seen[0] < self.dedupe_window
            ):
                self.duplicates += 1
                return 0
        part.seen[seen_key] = (incoming.received_at, record.offset)
        held = _Held(
            id=self._next_id,
            partition=part.topic_partition.partition,
            offset=record.offset,
            user=record.key or incoming.user.encode(),
            incoming=incoming,
            done=incoming.done,
            next_attempt_at=incoming.received_at,  # due once received, as in a queue file
        )
        self._next_id += 1
        self._held[held.id] = held
        part.open.add(record.offset)
        line = self._users.setdefault(held.user, deque())
        line.append(held)
        if len(line) == 1:
            self._heads[held.id] = held
        return 1

    # -- the rebalance -----------------------------------------------------------------------

    async def _assigned(self, assigned: Iterable[Any]) -> None:
        mine = [tp for tp in assigned if tp.topic == self.settings.events_topic]
        parts = []
        for topic_partition in mine:
            committed = await self._consumer.committed(topic_partition)
            part = _Partition(topic_partition, position=committed, committed=committed)
            self._parts[topic_partition.partition] = part
            parts.append(part)
        for part in parts:
            kept = self._kept.pop(part.topic_partition.partition, None)
            if kept is not None and part.committed is not None and part.committed <= kept[0]:
                # Back after a rebalance and nobody settled past what this worker read: what
                # it remembers is complete below the committed offset.
                part.seen = {k: v for k, v in kept[1].items() if v[1] < part.committed}
            elif part.committed:
                await self._remember(part, part.committed)
            part.ready = True
        self._update_share()
        self.note(
            logging.INFO,
            "partitions assigned",
            {
                "topic": self.settings.events_topic,
                "partitions": sorted(self._parts),
                "share": round(self.share, 4),
            },
        )

    async def _remember(self, part: _Partition, committed: int) -> None:
        """Read the partition's settled window again: the ``messageId`` values seen in it."""
        from aiokafka import AIOKafkaConsumer  # noqa: PLC0415 - Kafka only

        reader = AIOKafkaConsumer(
            **self.settings.client_options(), group_id=None, enable_auto_commit=False
        )
        await reader.start()
        try:
            start = None
            since = int((self.clock() - self.dedupe_window) * 1000)
            try:
                found = await reader.offsets_for_times({part.topic_partition: since})
                hit = found.get(part.topic_partition)
                start = None if hit is None else hit.offset
            except Exception:  # noqa: BLE001 - a broker without timestamps: read it all
                start = None
            read = 0
            async for record in read_range(reader, part.topic_partition, start, committed):
                try:
                    incoming = read_event(record.value, record.headers, record.timestamp)
                except UnreadableRecordError:
                    continue
                part.seen[incoming.source, incoming.key] = (incoming.received_at, record.offset)
                read += 1
        finally:
            await reader.stop()
        if read:
            self.note(
                logging.DEBUG,
                "messageIds remembered from the log",
                {"partition": part.topic_partition.partition, "records": read},
            )

    async def _revoked(self, revoked: Iterable[Any]) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == self.settings.events_topic}
        for number in gone:
            if number in self._parts:
                self._parts[number].ready = False  # nothing more is claimed from it
        # Let what is in flight finish (briefly), so that the next owner repeats less.
        deadline = self.clock() + REVOKE_GRACE
        # Verdicts arrive as calls scheduled on this loop, run while this one sleeps.
        while self.clock() < deadline and self._in_flight(gone):  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.05)
        await self._commit(force=True)
        self._kept = {}
        for number in gone:
            part = self._parts.pop(number, None)
            if part is not None and part.position is not None:
                self._kept[number] = (part.position, part.seen)
        dropped = [held for held in self._held.values() if held.partition in gone]
        for held in dropped:
            del self._held[held.id]
            self._heads.pop(held.id, None)
            self._users.pop(held.user, None)
        self._update_share()
        if gone:
            self.note(
                logging.INFO,
                "partitions revoked",
                {
                    "topic": self.settings.events_topic,
                    "partitions": sorted(gone),
                    "unsettled_left_to_next_owner": len(dropped),
                },
            )

    def _in_flight(self, partitions: set[int]) -> bool:
        return any(
            held.state is State.IN_FLIGHT and held.partition in partitions
            for held in self._held.values()
        )

    def _update_share(self) -> None:
        total = self._consumer.partitions_for_topic(self.settings.events_topic) or set()
        self.share = len(self._parts) / len(total) if total else 0.0
        if self.on_share is not None:
            self.on_share(self.share)

    async def _commit(self, *, force: bool = False) -> None:
        from aiokafka.errors import KafkaError  # noqa: PLC0415 - Kafka only

        offsets = {}
        for part in self._parts.values():
            if part.position is None:
                continue
            target = min(part.open) if part.open else part.position
            if target != part.committed:
                offsets[part.topic_partition] = target
        self._last_commit = self.clock()
        self._dirty = False
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as error:
            # A rebalance in progress, or the broker away: committed again next time; what
            # is not committed is only delivered again, never lost.
            self._dirty = True
            level = logging.DEBUG if not force else logging.WARNING
            self.note(level, "offsets not committed yet", {"error": str(error)})
            return
        for topic_partition, offset in offsets.items():
            still = self._parts.get(topic_partition.partition)
            if still is not None:
                still.committed = offset

    # -- the queue interface (delivery side) --------------------------------------------------

    def claim(self, now: float, limit: int) -> list[Claim]:
        """Mark up to ``limit`` due events in flight: per user, only the oldest unsettled one."""
        return self._call(self._claim(now, limit))  # type: ignore[no-any-return]

    async def _claim(self, now: float, limit: int) -> list[Claim]:
        due = [
            held
            for held in self._heads.values()
            if held.state is State.QUEUED
            and held.next_attempt_at <= now
            and self._ready(held.partition)
        ]
        due.sort(key=lambda held: (held.next_attempt_at, held.id))
        claims = []
        for held in due[:limit]:
            held.state = State.IN_FLIGHT
            claims.append(
                Claim(
                    id=held.id,
                    key=held.incoming.key,
                    event=held.incoming.event,
                    received_at=held.incoming.received_at,
                    attempts=held.attempts,
                    throttles=held.throttles,
                    first_attempt_at=held.first_attempt_at,
                    done=held.done,
                )
            )
        return claims

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record verdicts; dead letters are written to the dead-letter topic first.

        A verdict on an event whose partition was revoked meanwhile is ignored: the partition's
        next owner delivers it again from the committed offset.

        Raises:
            QueueError: The dead-letter topic did not acknowledge; those events stay in flight
                (``recover`` puts them back) and their offsets are not committed.
        """
        self._call(self._settle(settlements))

    async def _settle(self, settlements: Sequence[Settlement]) -> None:
        dead: list[tuple[_Held, Settlement]] = []
        for settlement in settlements:
            held = self._held.get(settlement.id)
            if held is None or held.state is not State.IN_FLIGHT:
                continue
            if settlement.state is State.QUEUED:
                held.state = State.QUEUED
                held.attempts = settlement.attempts
                held.throttles = settlement.throttles
                held.done = settlement.done
                held.first_attempt_at = settlement.first_attempt_at
                held.next_attempt_at = settlement.next_attempt_at or 0.0
            elif settlement.state is State.DEAD:
                dead.append((held, settlement))
            else:
                self._finish(held, settlement.state)
        if dead:
            await self._write_dead_letters(dead)
            for held, _settlement in dead:
                self._finish(held, State.DEAD)
        if self.on_change is not None and (dead or settlements):
            self.on_change()

    async def _write_dead_letters(self, dead: list[tuple[_Held, Settlement]]) -> None:
        from aiokafka.errors import KafkaError  # noqa: PLC0415 - Kafka only

        try:
            sent = [
                await self._producer.send(
                    self.settings.dead_letter_topic,
                    value=dead_letter_value(_dead_record(held, settlement, self.destination)),
                    key=f"{held.partition}:{held.offset}".encode(),
                )
                for held, settlement in dead
            ]
            await asyncio.wait_for(asyncio.gather(*sent), WAIT)
        except (KafkaError, TimeoutError) as error:
            raise QueueError(
                f"the dead-letter topic {self.settings.dead_letter_topic} did not acknowledge "
                f"{len(dead)} dead letter(s): {error or type(error).__name__}"
            ) from error

    def _finish(self, held: _Held, state: State) -> None:
        del self._held[held.id]
        self._settled[state] += 1
        part = self._parts.get(held.partition)
        if part is not None:
            part.open.discard(held.offset)
        self._dirty = True
        self._heads.pop(held.id, None)
        line = self._users.get(held.user)
        if line is None:
            return
        if line and line[0] is held:
            line.popleft()
        else:  # not the head: cannot happen with per-user claims, but never leave it behind
            line.remove(held)
        if line:
            self._heads[line[0].id] = line[0]
        else:
            del self._users[held.user]

    def _ready(self, partition: int) -> bool:
        part = self._parts.get(partition)
        return part is not None and part.ready

    def release(self, ids: Iterable[int]) -> None:
        """Put claimed events back unchanged."""
        self._call(self._release(list(ids)))

    async def _release(self, ids: list[int]) -> None:
        for number in ids:
            held = self._held.get(number)
            if held is not None and held.state is State.IN_FLIGHT:
                held.state = State.QUEUED

    def recover(self) -> int:
        """Put every event in flight back (after a failed settle); return how many."""
        return self._call(self._recover())  # type: ignore[no-any-return]

    async def _recover(self) -> int:
        flying = [held for held in self._held.values() if held.state is State.IN_FLIGHT]
        for held in flying:
            held.state = State.QUEUED
        return len(flying)

    def next_due(self) -> float | None:
        """The earliest next-attempt time of a claimable event, or None."""
        return self._call(self._next_due())  # type: ignore[no-any-return]

    async def _next_due(self) -> float | None:
        times = [h.next_attempt_at for h in self._heads.values() if h.state is State.QUEUED]
        return min(times) if times else None

    def counts(self) -> dict[State, int]:
        """Held events by state, and the events this worker settled since it started."""
        return self._call(self._counts())  # type: ignore[no-any-return]

    async def _counts(self) -> dict[State, int]:
        found = dict(self._settled)
        found[State.QUEUED] = sum(1 for h in self._held.values() if h.state is State.QUEUED)
        found[State.IN_FLIGHT] = len(self._held) - found[State.QUEUED]
        return found

    def oldest_queued(self) -> float | None:
        """The receipt time of the oldest event held and not settled, or None."""
        return self._call(self._oldest())  # type: ignore[no-any-return]

    async def _oldest(self) -> float | None:
        return min((h.incoming.received_at for h in self._held.values()), default=None)

    def lag(self) -> list[PartitionLag]:
        """The assigned partitions: end, committed offset and events held."""
        return self._call(self._lag())  # type: ignore[no-any-return]

    async def _lag(self) -> list[PartitionLag]:
        held: dict[int, int] = {}
        for item in self._held.values():
            held[item.partition] = held.get(item.partition, 0) + 1
        return [
            PartitionLag(
                number,
                self._consumer.highwater(part.topic_partition),
                part.committed,
                held.get(number, 0),
            )
            for number, part in sorted(self._parts.items())
        ]

    def prune(self, now: float) -> int:
        """Forget ``messageId`` values older than the window; return 0 (the log keeps events)."""
        self._call(self._prune(now))
        return 0

    async def _prune(self, now: float) -> None:
        horizon = now - self.dedupe_window
        for part in self._parts.values():
            part.seen = {key: seen for key, seen in part.seen.items() if seen[0] >= horizon}

    # -- the rest of the interface: writing events, and the dead letters ----------------------

    def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:
        """Write ``events`` to the events topic, acknowledged by every in-sync replica.

        Duplicates are recognised by the workers when they read the events, not here.
        """
        return self.put_many([(events, now)])[0]

    def put_many(self, batches: Sequence[tuple[Sequence[NewEvent], float]]) -> list[Enqueued]:
        """``put`` for several batches, all acknowledged before this returns."""
        return self._call(self._put_many(batches))  # type: ignore[no-any-return]

    async def _put_many(
        self, batches: Sequence[tuple[Sequence[NewEvent], float]]
    ) -> list[Enqueued]:
        flat = [event for batch, _now in batches for event in batch]
        sent = await send_events(self._producer, self.settings, self.destination, flat)
        await asyncio.wait_for(asyncio.gather(*sent), WAIT)
        return [
            Enqueued(
                accepted=len(events),
                duplicates=0,
                rejected=tuple(event.rejected[0] for event in events if event.rejected),
            )
            for events, _now in batches
        ]

    def records(self, state: State | None = None, limit: int = 100, after: int = 0) -> list[Record]:
        """The dead letters (a Kafka queue keeps no other per-event records)."""
        return self._dead_letters.records(state, limit, after)

    def record(self, id_or_key: int | str) -> Record | None:
        """One dead letter by id or ``messageId``."""
        return self._dead_letters.record(id_or_key)

    def replay(self, ids: Iterable[int] | None, now: float) -> int:
        """Write dead letters back to the events topic; return how many."""
        return self._dead_letters.replay(ids, now)


def _dead_record(held: _Held, settlement: Settlement, destination: str) -> Record:
    incoming = held.incoming
    return Record(
        id=held.id,
        key=incoming.key,
        source=incoming.source,
        user=incoming.user,
        state=State.DEAD,
        event=incoming.event,
        received_at=incoming.received_at,
        attempts=settlement.attempts,
        throttles=settlement.throttles,
        done=settlement.done,
        first_attempt_at=settlement.first_attempt_at,
        last_attempt_at=settlement.last_attempt_at,
        next_attempt_at=None,
        status=settlement.status,
        response=settlement.response,
        reason=settlement.reason,
        message=settlement.message,
        endpoint=settlement.endpoint,
        request=settlement.request,
        line=incoming.line,
        index=incoming.index,
        destination=incoming.destination or destination,
    )


def _ahead(part: _Partition) -> int:
    """How far the reading of ``part`` has run past its oldest unsettled event."""
    if not part.open or part.position is None:
        return 0
    return part.position - min(part.open)


def _listener(work: KafkaWork) -> Any:
    """The consumer group's rebalance callbacks, handed to the worker."""
    from aiokafka import ConsumerRebalanceListener  # noqa: PLC0415 - Kafka only

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc] # untyped library
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await work._revoked(revoked)  # noqa: SLF001 - the worker's own listener

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await work._assigned(assigned)  # noqa: SLF001 - the worker's own listener

    return Listener()
