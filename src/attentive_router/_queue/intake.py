"""Turning input events into queue entries: the deduplication key and the ordering key.

Pure functions; the caller supplies the receipt time.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import orjson

from attentive_router._queue.interface import NewEvent
from attentive_router._transform.reader import Item


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class UnstorableError(ValueError):
    """The event cannot be written as JSON at all."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class OutOfRangeNumber:
    """A JSON number too large for a float (``1e400``), as read from a request body.

    It is kept as its text so that the event can be rejected by name rather than written
    as ``null`` or ``Infinity``.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _refuse_out_of_range(value: Any) -> Any:
    if isinstance(value, OutOfRangeNumber):
        raise UnstorableError(
            "number_out_of_range",
            f"the event holds the number {value.text[:40]}, too large to be represented",
        )
    msg = f"Object of type {type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


def dumps(event: Any, *, sort: bool = False) -> bytes:
    """JSON bytes of ``event`` (orjson, or the standard library beyond orjson's depth limit)."""
    try:
        return orjson.dumps(event, option=orjson.OPT_SORT_KEYS if sort else None)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(
            event,
            sort_keys=sort,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=_refuse_out_of_range,
        ).encode()
    except RecursionError:
        raise UnstorableError(
            "too_deep", "the event is nested too deeply to be stored or sent"
        ) from None
    except UnicodeEncodeError:
        raise UnstorableError(
            "invalid_string",
            "the event holds a string that is not valid Unicode (a lone surrogate)",
        ) from None
    except UnstorableError:
        raise
    except (TypeError, ValueError) as error:
        raise UnstorableError("not_json", f"the event cannot be written as JSON: {error}") from None


UNSTORABLE = "unstorable:"
"""Key prefix of events that cannot be written as JSON as they are."""


def _escaped(event: Any) -> bytes:
    """The event as ASCII JSON (a lone surrogate written as its escape), else ``null``."""
    try:
        return json.dumps(event, ensure_ascii=True, allow_nan=False).encode()
    except (RecursionError, TypeError, ValueError):
        return b"null"


def digest(data: bytes) -> str:
    """A content key for inputs without a ``messageId`` (stable across runs)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def new_event(
    event: Any,
    received_at: float,
    source: str = "default",
    *,
    line: int | None = None,
    index: int | None = None,
) -> NewEvent:
    """The queue entry of one parsed event (``line`` and ``index``: where a file held it).

    The key is the event's ``messageId``, or a digest of its content when it has none, so
    that sending the same input twice queues it once. Events of the same ``userId`` (else
    ``anonymousId``) are delivered in order.
    """
    try:
        data = dumps(event)
    except UnstorableError as error:
        # It cannot be written as it is, so it has no content key either: a fresh one keeps
        # the record of its rejection from being taken for a duplicate.
        fresh = f"{UNSTORABLE}{uuid.uuid4()}"
        rejected = (error.reason, error.message)
        return NewEvent(
            fresh, f"event:{fresh}", _escaped(event), received_at, source, rejected, line, index
        )
    fields = event if isinstance(event, dict) else {}
    key = _text(fields.get("messageId")) or digest(dumps(event, sort=True))
    user = _text(fields.get("userId")) or _text(fields.get("anonymousId"))
    return NewEvent(
        key=key,
        user=f"user:{user}" if user is not None else f"event:{key}",
        event=data,
        received_at=received_at,
        source=source,
        line=line,
        index=index,
    )


def unreadable(  # noqa: PLR0913 - the position is keyword-only
    raw: bytes,
    reason: str,
    message: str,
    received_at: float,
    source: str,
    *,
    line: int | None = None,
) -> NewEvent:
    """The queue entry of an input that is not an event at all: stored as rejected."""
    key = digest(raw)
    return NewEvent(
        key=key,
        user=f"event:{key}",
        event=raw,
        received_at=received_at,
        source=source,
        rejected=(reason, message),
        line=line,
    )


def from_item(item: Item, received_at: float, source: str = "default") -> NewEvent:
    """The queue entry of one item read from a file."""
    if item.error is not None:
        return unreadable(item.raw, "invalid_json", item.error, received_at, source, line=item.line)
    return new_event(item.event, received_at, source, line=item.line, index=item.index)
