"""How events and dead letters are written to Kafka records, and read back.

An event record's value is the event's JSON, exactly as queued; its key is the destination and
the user (so a user's events share a partition and keep their order); the rest travels in
headers. A dead letter's value is a JSON object with everything a SQLite queue keeps of a dead
letter; its key names the event record it came from, so that a replay can write a tombstone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from attrs import frozen

from attentive_router._queue.interface import NewEvent, Record, State

Headers = Sequence[tuple[str, bytes]]

MESSAGE_ID = "message-id"
SOURCE = "source"
USER = "user"
DESTINATION = "destination"
RECEIVED_AT = "received-at"
REJECTED_REASON = "rejected-reason"
REJECTED_MESSAGE = "rejected-message"
LINE = "line"
INDEX = "index"
REPLAYED = "replayed"
"""On an event written back by a replay: it is delivered even though its key was seen."""
DONE = "done"
"""On a replayed event: how many of its requests were delivered before it was dead-lettered."""


def record_key(destination: str, user: str) -> bytes:
    """The partitioning key: one destination's user."""
    return f"{destination}\x1f{user}".encode()


def event_headers(event: NewEvent, destination: str) -> list[tuple[str, bytes]]:
    """The headers of an event record."""
    headers = [
        (MESSAGE_ID, event.key.encode()),
        (SOURCE, event.source.encode()),
        (USER, event.user.encode()),
        (DESTINATION, destination.encode()),
        (RECEIVED_AT, repr(event.received_at).encode()),
    ]
    if event.rejected is not None:
        headers.append((REJECTED_REASON, event.rejected[0].encode()))
        headers.append((REJECTED_MESSAGE, event.rejected[1].encode()))
    if event.line is not None:
        headers.append((LINE, str(event.line).encode()))
    if event.index is not None:
        headers.append((INDEX, str(event.index).encode()))
    return headers


@frozen
class Incoming:
    """An event record read back from the events topic."""

    key: str
    source: str
    user: str
    destination: str
    received_at: float
    event: bytes
    rejected: tuple[str, str] | None = None
    line: int | None = None
    index: int | None = None
    replayed: bool = False
    done: int = 0


class UnreadableRecordError(ValueError):
    """A record in the events topic that this project did not write (or that was damaged)."""


def read_event(value: bytes | None, headers: Headers, timestamp_ms: int) -> Incoming:
    """An event record's value and headers as an ``Incoming``.

    Raises:
        UnreadableRecordError: The record lacks the value or a header every event carries.
    """
    if value is None:
        raise UnreadableRecordError("the record has no value")
    found: dict[str, str] = {}
    for name, raw in headers:
        try:
            found[name] = raw.decode()
        except UnicodeDecodeError as error:
            raise UnreadableRecordError(f"header {name!r} is not UTF-8") from error
    missing = [name for name in (MESSAGE_ID, SOURCE, USER) if name not in found]
    if missing:
        raise UnreadableRecordError(f"the record lacks the header(s) {', '.join(missing)}")
    try:
        received_at = float(found.get(RECEIVED_AT, timestamp_ms / 1000))
        line = int(found[LINE]) if LINE in found else None
        index = int(found[INDEX]) if INDEX in found else None
        done = int(found.get(DONE, "0"))
    except ValueError as error:
        raise UnreadableRecordError(f"a numeric header is not a number: {error}") from error
    rejected = None
    if REJECTED_REASON in found:
        rejected = (found[REJECTED_REASON], found.get(REJECTED_MESSAGE, ""))
    return Incoming(
        key=found[MESSAGE_ID],
        source=found[SOURCE],
        user=found[USER],
        destination=found.get(DESTINATION, ""),
        received_at=received_at,
        event=value,
        rejected=rejected,
        line=line,
        index=index,
        replayed=REPLAYED in found,
        done=done,
    )


def replay_headers(record: Record, destination: str) -> list[tuple[str, bytes]]:
    """The headers of a dead letter written back to the events topic."""
    replayed = NewEvent(
        key=record.key,
        user=record.user,
        event=record.event,
        received_at=record.received_at,
        source=record.source,
        line=record.line,
        index=record.index,
    )
    return [
        *event_headers(replayed, destination),
        (REPLAYED, b"1"),
        (DONE, str(record.done).encode()),
    ]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def dead_letter_value(record: Record) -> bytes:
    """A dead letter as the JSON value of a dead-letter record (everything ``Record`` holds)."""
    return orjson.dumps(
        {
            "key": record.key,
            "source": record.source,
            "user": record.user,
            "destination": record.destination,
            "event": _text(record.event),
            "received_at": record.received_at,
            "attempts": record.attempts,
            "throttles": record.throttles,
            "done": record.done,
            "first_attempt_at": record.first_attempt_at,
            "last_attempt_at": record.last_attempt_at,
            "status": record.status,
            "response": record.response,
            "reason": record.reason,
            "message": record.message,
            "endpoint": record.endpoint,
            "request": _text(record.request),
            "line": record.line,
            "index": record.index,
        }
    )


def read_dead_letter(record_id: int, value: bytes) -> Record:
    """A dead-letter record's value as a ``Record`` with the id ``record_id``.

    Raises:
        UnreadableRecordError: The value is not a dead letter written by this project.
    """
    try:
        data: dict[str, Any] = orjson.loads(value)
        event = data["event"]
        request = data.get("request")
        return Record(
            id=record_id,
            key=str(data["key"]),
            source=str(data["source"]),
            user=str(data["user"]),
            state=State.DEAD,
            event=(event or "").encode(),
            received_at=float(data["received_at"]),
            attempts=int(data.get("attempts") or 0),
            throttles=int(data.get("throttles") or 0),
            done=int(data.get("done") or 0),
            first_attempt_at=data.get("first_attempt_at"),
            last_attempt_at=data.get("last_attempt_at"),
            next_attempt_at=None,
            status=data.get("status"),
            response=data.get("response"),
            reason=data.get("reason"),
            message=data.get("message"),
            endpoint=data.get("endpoint"),
            request=None if request is None else request.encode(),
            line=data.get("line"),
            index=data.get("index"),
            destination=data.get("destination"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise UnreadableRecordError(f"not a dead letter: {error}") from error
