"""The queue interface between accepting events and delivering them.

A queue holds every accepted event until it reaches a final state. The sender and the commands
only use this interface, and one shared test suite checks every backend against it. Two
backends implement it, each in its own shape:

- the embedded one (``sqlite``) is a table: every event is a row whose state changes, kept
  after it is settled, so every call applies;
- the Kafka one (``kafka``) is a log: writers append (``kafka.intake``) and do not look for
  duplicates; a delivery worker (``kafka.work``) holds its partitions' unsettled events in
  memory behind ``claim``, ``settle``, ``release``, ``recover`` and ``next_due``, drops
  duplicates as it reads, and commits offsets; ``records``, ``record`` and ``replay`` see the
  dead letters only, and ``counts`` what the worker holds and settled since it started.

The values here are plain data. Times are seconds since the epoch (floats), always passed in
by the caller: a backend never reads the clock, so schedules can be tested without waiting.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from attrs import frozen

DEFAULT_DEDUPE_WINDOW = 24 * 3600.0
"""``messageId`` deduplication window in seconds (Segment's is about 24 hours)."""

CommitMode = Literal["group", "per-request"]
COMMIT_MODES: tuple[CommitMode, ...] = ("group", "per-request")
"""How ``serve`` commits requests (``_queue.group``); here, where the parser can read them
without the event loop."""


class QueueError(Exception):
    """The queue's storage failed (disk full, database locked, …); nothing was changed."""


class State(enum.IntEnum):
    """Where an event is in its life. Only ``QUEUED`` and ``IN_FLIGHT`` are not final."""

    QUEUED = 0
    IN_FLIGHT = 1
    DELIVERED = 2
    SKIPPED = 3
    REJECTED = 4
    DEAD = 5

    @property
    def label(self) -> str:
        """The name shown to people and in JSON (``queued``, ``dead_lettered``, and so on)."""
        return _LABELS[self]


_LABELS = {
    State.QUEUED: "queued",
    State.IN_FLIGHT: "in_flight",
    State.DELIVERED: "delivered",
    State.SKIPPED: "skipped",
    State.REJECTED: "rejected",
    State.DEAD: "dead_lettered",
}

FINAL_STATES = frozenset({State.DELIVERED, State.SKIPPED, State.REJECTED, State.DEAD})


@frozen
class NewEvent:
    """An event offered to the queue.

    Attributes:
        key: Deduplication key: the ``messageId``, or a digest of the event when it has none.
        user: Ordering key: events with the same ``user`` are delivered in ``put`` order.
        event: The event as JSON bytes (exactly what will be transformed).
        received_at: When the router received it (the transform's receipt time).
        source: Deduplication scope, e.g. the write key; keys only collide within a source.
        rejected: ``(reason, message)`` for an input that could not even be read as an
            event; it is stored as ``REJECTED`` so that nothing disappears without a record.
        line: The input line it was read from (a file's events), else None.
        index: Its position inside a JSON array or batch envelope on that line, else None.
    """

    key: str
    user: str
    event: bytes
    received_at: float
    source: str = "default"
    rejected: tuple[str, str] | None = None
    line: int | None = None
    index: int | None = None


@frozen
class Enqueued:
    """What ``put`` did with a batch.

    Attributes:
        accepted: New events stored (including those stored as rejected).
        duplicates: Events ignored because their key was seen within the window.
        rejected: The reasons of the accepted events that were stored as rejected.
    """

    accepted: int
    duplicates: int
    rejected: tuple[str, ...] = ()


@frozen
class Claim:
    """An event handed to a sender; it stays ``IN_FLIGHT`` until settled or released.

    Attributes:
        id: The queue's identifier of the event.
        key: Its deduplication key (the ``messageId``).
        event: The event as JSON bytes.
        received_at: When it was received.
        attempts: Attempts counted so far (throttled answers are not counted).
        throttles: Throttled (429) answers so far.
        first_attempt_at: Time of the first attempt, or None before any.
        done: How many of the event's requests were already delivered, in order.
    """

    id: int
    key: str
    event: bytes
    received_at: float
    attempts: int = 0
    throttles: int = 0
    first_attempt_at: float | None = None
    done: int = 0


@frozen
class Settlement:
    """The sender's verdict on one claimed event.

    ``state`` is ``QUEUED`` for a retry (at ``next_attempt_at``) or a final state. The other
    fields describe the last attempt and are kept with the event (a dead letter shows them).
    """

    id: int
    state: State
    attempts: int
    throttles: int = 0
    done: int = 0
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    status: int | None = None
    response: str | None = None
    reason: str | None = None
    message: str | None = None
    endpoint: str | None = None
    request: bytes | None = None


@frozen
class Record:
    """Everything the queue knows about one event (dead letters are shown this way)."""

    id: int
    key: str
    source: str
    user: str
    state: State
    event: bytes
    received_at: float
    attempts: int
    throttles: int
    done: int
    first_attempt_at: float | None
    last_attempt_at: float | None
    next_attempt_at: float | None
    status: int | None
    response: str | None
    reason: str | None
    message: str | None
    endpoint: str | None
    request: bytes | None
    line: int | None = None
    index: int | None = None
    destination: str | None = None
    """The destination the event was queued for; None in a queue written without one."""


class Queue(Protocol):
    """What every queue backend provides. Calls may block; the sender runs them off its loop.

    A failing store raises ``QueueError`` and leaves the queue as it was.
    """

    def put(self, events: Sequence[NewEvent], now: float) -> Enqueued:
        """Store ``events`` durably in one transaction; skip keys seen within the window."""
        ...

    def put_many(self, batches: Sequence[tuple[Sequence[NewEvent], float]]) -> list[Enqueued]:
        """Store several ``(events, now)`` batches durably in one transaction (group commit).

        Each batch's ``Enqueued`` is what ``put(events, now)`` would have answered had the
        batches been put one after another in this order (a key in an earlier batch of the
        group is a duplicate in a later one); either every batch is stored or none is.
        """
        ...

    def claim(self, now: float, limit: int) -> list[Claim]:
        """Mark up to ``limit`` due events ``IN_FLIGHT`` and return them.

        An event is due when it is queued, its next attempt time has come, and no earlier
        event of the same user is still queued or in flight.
        """
        ...

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record the sender's verdicts in one transaction."""
        ...

    def release(self, ids: Iterable[int]) -> None:
        """Put claimed events back unchanged (shutdown, or sending paused)."""
        ...

    def recover(self) -> int:
        """After a crash: put every ``IN_FLIGHT`` event back in the queue; return how many."""
        ...

    def next_due(self) -> float | None:
        """The earliest next-attempt time of a queued event, or None when none is queued."""
        ...

    def counts(self) -> dict[State, int]:
        """Number of events in each state."""
        ...

    def oldest_queued(self) -> float | None:
        """The receipt time of the oldest event not yet settled (queued or in flight), or None."""
        ...

    def records(self, state: State | None = None, limit: int = 100, after: int = 0) -> list[Record]:
        """Events in id order (optionally only those in ``state``), ids above ``after``."""
        ...

    def record(self, id_or_key: int | str) -> Record | None:
        """One event by id, or by key."""
        ...

    def replay(self, ids: Iterable[int] | None, now: float) -> int:
        """Re-queue dead letters (all of them when ``ids`` is None); return how many.

        Attempt counts start again; requests of the event already delivered are not sent
        again. Replaying an event that is no longer dead-lettered does nothing.
        """
        ...

    def prune(self, now: float) -> int:
        """Forget old finished events and old keys; return how many events were forgotten.

        Delivered, skipped and rejected events older than the retention go, and keys older
        than the deduplication window; dead letters stay until replayed.
        """
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...
