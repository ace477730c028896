"""Segment's HTTP Tracking API and Webhooks destination, from request body to queue entries.

Pure functions and one small incremental decoder; the server supplies the body's bytes, the
write key's source name and the receipt time. What is checked here is Segment's contract
(an object with a known ``type``, a ``userId`` or ``anonymousId``, a named track, readable
timestamps, 32 KB per event); whether Attentive can use an event is the transform's business
when the event is delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from attrs import evolve, frozen

from attentive_router._queue.intake import (
    UNSTORABLE,
    OutOfRangeNumber,
    UnstorableError,
    digest,
    dumps,
    new_event,
)
from attentive_router._queue.interface import NewEvent
from attentive_router._transform.expressions import format_timestamp, parse_timestamp
from attentive_router._transform.reader import merge_envelope
from attentive_router._transform.source import json_type

MAX_EVENT_BYTES = 32 * 1024
"""Largest event, as JSON (Segment's limit, for single calls and batch items alike)."""
MAX_BATCH_BYTES = 500 * 1024
"""Largest batch request body, after decompression."""
MAX_BATCH_EVENTS = 2500
"""Most events in one batch."""
MAX_WEBHOOK_BYTES = 16 * 1024 * 1024
"""Largest webhook request body, after decompression: 4,000 events of 4 KB each on average.

Segment's events, a browser's full ``context`` included, are mostly 1 to 3 KB; a batch that does
not fit is refused whole (400), which Segment does not retry, so the room is generous."""
MAX_WEBHOOK_EVENTS = 4000
"""Most events in one webhook request: the largest batch Segment's Webhooks (Actions) sends."""

CALL_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})

_BOM = b"\xef\xbb\xbf"


class BodyError(Exception):
    """The request as a whole cannot be accepted: answered with ``status`` and nothing stored."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def size_text(limit: int) -> str:
    """A size limit as a message shows it: ``500 KB``, ``16 MB``."""
    if limit >= 1024 * 1024:
        return f"{limit // (1024 * 1024)} MB"
    return f"{limit // 1024} KB"


def _too_large(limit: int) -> BodyError:
    return BodyError(
        400, "body_too_large", f"the request body is larger than {size_text(limit)} (decompressed)"
    )


class Decoder:
    """Collects a request body chunk by chunk, decompressing gzip as it goes.

    The size limit applies to the decompressed bytes and is checked while decompressing, so a
    small gzip bomb is refused after at most ``limit`` bytes of output, whatever it would
    expand to.
    """

    def __init__(self, encoding: str | None, limit: int) -> None:
        encoding = (encoding or "identity").strip().lower()
        if encoding not in {"identity", "gzip", "x-gzip"}:
            raise BodyError(
                415,
                "unsupported_encoding",
                f"Content-Encoding {encoding!r} is not supported: send gzip or no encoding",
            )
        self.limit = limit
        self._inflate = zlib.decompressobj(wbits=31) if encoding != "identity" else None
        self._parts: list[bytes] = []
        self._size = 0
        self._raw = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body as it arrived."""
        self._raw += len(chunk)
        if self._inflate is None:
            self._add(chunk)
            return
        if self._raw > self.limit + 1024:  # a gzip stream this long cannot inflate to less
            raise _too_large(self.limit)
        data = chunk
        while data:
            if self._inflate.eof:  # another gzip member follows (as ``gzip.decompress`` allows)
                data = self._inflate.unused_data + data
                self._inflate = zlib.decompressobj(wbits=31)
            try:
                self._add(self._inflate.decompress(data, self.limit - self._size + 1))
            except zlib.error as error:
                raise BodyError(
                    400, "invalid_gzip", f"the body is not valid gzip data ({error})"
                ) from None
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                data = self._inflate.unused_data
                if data:
                    self._inflate = zlib.decompressobj(wbits=31)

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise _too_large(self.limit)
        self._parts.append(data)

    def finish(self) -> bytes:
        """The whole decoded body."""
        if self._inflate is not None and not self._inflate.eof and self._raw:
            raise BodyError(
                400, "invalid_gzip", "the gzip data ends early (truncated body or stream)"
            )
        return b"".join(self._parts)


def _refuse(name: str) -> Any:
    msg = f"{name} is not a JSON value"
    raise ValueError(msg)


# Digits to "0", everything else to " ": a run of 19 zeros then marks a number that may not
# fit in 64 bits (a C-speed scan; a regular expression takes several times as long).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19
_BEFORE_NUMBER = frozenset(b"[:,")
_SPACE = frozenset(b" \t\n\r")


def _long_number(data: bytes, digits: bytes) -> bool:
    """Whether a JSON number with 19 digits or more in its integer part may be in ``data``.

    ``digits`` is ``data`` through ``_DIGITS_ONLY``. A run of 19 digits is such a number
    only where a number can start: at the body's start, or after "[", ":" or "," (spaces and
    a minus sign between). Most runs are inside strings (hexadecimal ids), which orjson reads
    exactly; a run inside a string that looks like a number's start only costs the slower
    reading.
    """
    at = digits.find(_LONG_RUN)
    while at >= 0:  # ``at`` starts a run of digits: the search resumes after each run
        before = at - 1
        if before >= 0 and data[before] == 0x2D:  # "-"
            before -= 1
        while before >= 0 and data[before] in _SPACE:
            before -= 1
        if before < 0 or data[before] in _BEFORE_NUMBER:
            return True
        end = digits.find(b" ", at)
        if end < 0:
            return False
        at = digits.find(_LONG_RUN, end)
    return False


def _float(text: str) -> float | OutOfRangeNumber:
    value = float(text)
    return value if math.isfinite(value) else OutOfRangeNumber(text)


def loads(data: bytes) -> Any:
    """Parse a request body; ``BodyError`` (400) when it is not JSON.

    orjson reads almost every body. It refuses a few that are valid JSON (escaped lone
    surrogates, numbers beyond a double's range, nesting past 1,024 levels) and reads integers
    beyond 64 bits as floats. Those bodies are read with the standard library instead, which
    keeps such integers exact, so that the request is accepted and only the item holding an
    impossible value is judged on its own.
    """
    data = data.removeprefix(_BOM)
    if not data.strip():
        raise BodyError(400, "empty_body", "the request body is empty: expected a JSON object")
    first: orjson.JSONDecodeError | None = None
    digits = data.translate(_DIGITS_ONLY)
    flagged = digits.find(_LONG_RUN) >= 0
    if not flagged or not _long_number(data, digits):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            if not flagged:  # a flagged body's error is the standard library's, as it was
                first = error
    try:
        return json.loads(data, parse_constant=_refuse, parse_float=_float)
    except RecursionError:
        raise BodyError(
            400, "too_deep", "the body is nested too deeply to be read as JSON"
        ) from None
    except ValueError as error:
        where = f"{first.msg} at position {first.pos}" if first is not None else str(error)
        raise BodyError(400, "invalid_json", f"the body is not valid JSON ({where})") from None


@frozen
class Rejection:
    """An item of a batch that was stored as rejected, and why."""

    index: int
    reason: str
    message: str


@frozen
class Prepared:
    """What a request becomes: the queue entries, and which of them are stored as rejected."""

    events: list[NewEvent]
    rejections: list[Rejection]


@frozen
class _Envelope:
    """What a request says of all its events.

    That is the call its path implies (single calls), the batch's shared ``context`` and
    ``integrations``, its ``sentAt``, and its body (kept with an item that cannot be stored
    on its own).
    """

    received: datetime
    received_iso: str
    call: str | None
    shared: Mapping[str, Any]
    sent: Any
    raw: bytes
    relayed: bool = False
    sent_at: datetime | None = None
    """``sent`` as a time (None when it is not one)."""

    @classmethod
    def of(  # noqa: PLR0913 - one keyword per part of the envelope
        cls,
        received_at: float,
        call: str | None,
        shared: Mapping[str, Any] | None = None,
        sent: Any = None,
        raw: bytes = b"",
        *,
        relayed: bool = False,
    ) -> _Envelope:
        """The envelope of a request received at ``received_at`` (seconds since the epoch).

        ``relayed`` events come from Segment's servers, which stamped and corrected their
        times already.
        """
        received = datetime.fromtimestamp(received_at, UTC)
        return cls(
            *(received, format_timestamp(received), call, shared or {}, sent, raw, relayed),
            parse_timestamp(sent),
        )


class _ItemError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _id(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _ItemError("invalid_id", f"{name} must be a string, not {_kind(value)}")


def _kind(value: Any) -> str:
    name = json_type(value)
    if name == "null":
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _moment(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    moment = parse_timestamp(value)
    if moment is None:
        raise _ItemError(
            "invalid_timestamp", f"{name} {_shown(value)} is not an ISO 8601 timestamp"
        )
    return moment


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(item: Any, call: str | None) -> dict[str, Any]:
    """Segment's rules for one call; ``call`` is the type the path implies (single calls)."""
    if not isinstance(item, dict):
        raise _ItemError("not_an_object", f"an event must be a JSON object, not {_kind(item)}")
    kind = item.get("type")
    if call is not None:
        if kind is not None and kind != call:
            raise _ItemError("type_mismatch", f"type {_shown(kind)} posted to /v1/{call}")
    elif kind is None:
        raise _ItemError("missing_type", "the event has no type")
    elif not isinstance(kind, str) or kind not in CALL_TYPES:
        raise _ItemError(
            "invalid_type",
            f"type {_shown(kind)} is not a Segment call ({', '.join(sorted(CALL_TYPES))})",
        )
    user, anonymous = _id(item, "userId"), _id(item, "anonymousId")
    if user is None and anonymous is None:
        raise _ItemError("missing_id", "the event has neither a userId nor an anonymousId")
    if (call or kind) == "track":
        name = item.get("event")
        if name is None or (isinstance(name, str) and not name.strip()):
            raise _ItemError("missing_event_name", "a track call needs an event name")
        if not isinstance(name, str):
            raise _ItemError("invalid_event_name", f"event must be a string, not {_kind(name)}")
    if "messageId" in item and _id(item, "messageId") is None and item["messageId"] is not None:
        raise _ItemError("invalid_id", "messageId is blank")
    return item


def _stamped(item: dict[str, Any], envelope: _Envelope) -> dict[str, Any]:
    """The stored form of a valid item: merged, typed, identified and timed."""
    size = _size(item)
    if size > MAX_EVENT_BYTES:
        raise _ItemError(
            "event_too_large",
            f"the event is {size:,} bytes of JSON; the limit is {MAX_EVENT_BYTES // 1024} KB",
        )
    return _stamp(item, envelope)


def _stamp(item: dict[str, Any], envelope: _Envelope) -> dict[str, Any]:
    event = merge_envelope(item, envelope.shared) if envelope.shared else dict(item)
    event.pop("writeKey", None)
    if envelope.call is not None:
        event["type"] = envelope.call
    sent_raw = item.get("sentAt", envelope.sent)
    # The batch's sentAt was read once for all its items; a repeated text is read once.
    if sent_raw is envelope.sent and envelope.sent_at is not None:
        sent: datetime | None = envelope.sent_at
    else:
        sent = _moment(sent_raw, "sentAt")
    timestamp_raw = item.get("timestamp")
    timestamp = _moment(timestamp_raw, "timestamp")
    original_raw = item.get("originalTimestamp")
    original: datetime | None = timestamp
    if timestamp is None or original_raw != timestamp_raw:
        original = _moment(original_raw, "originalTimestamp")
    if original is None:
        original_raw, original = timestamp_raw, timestamp
    if "messageId" not in event or event["messageId"] is None:
        # Derived from the content, so that a client resending the same batch is deduplicated.
        try:
            content = hashlib.sha256(dumps(event, sort=True)).digest()
        except UnstorableError as error:
            raise _ItemError(error.reason, error.message) from None
        event["messageId"] = str(uuid.UUID(bytes=content[:16], version=4))
    if envelope.relayed:
        return _relayed(event, envelope)
    event["receivedAt"] = envelope.received_iso
    if sent is not None and original is not None:
        try:
            corrected = envelope.received - (sent - original)
        except OverflowError:
            raise _ItemError(
                "invalid_timestamp",
                f"sentAt {_shown(sent_raw)} and timestamp {_shown(original_raw)} are too far "
                "apart to correct the client's clock",
            ) from None
        event["sentAt"] = sent_raw
        event["originalTimestamp"] = original_raw
        event["timestamp"] = format_timestamp(corrected)
    else:
        if sent_raw is not None:
            event["sentAt"] = sent_raw
        if timestamp is None and original is None:
            event["timestamp"] = event["receivedAt"]
    return event


def _relayed(event: dict[str, Any], envelope: _Envelope) -> dict[str, Any]:
    """The event with Segment's times kept as they are.

    Segment's servers stamped ``receivedAt`` and corrected ``timestamp`` for the client's
    clock already; correcting it here again (against a later receipt, and retries come hours
    later) would move it.

    Only what is missing is filled in: ``receivedAt`` with this server's receipt time, and
    ``timestamp`` with ``originalTimestamp``, else ``receivedAt``.
    """
    if _moment(event.get("receivedAt"), "receivedAt") is None:
        event["receivedAt"] = envelope.received_iso
    if event.get("timestamp") is None:
        original = event.get("originalTimestamp")
        event["timestamp"] = original if original is not None else event["receivedAt"]
    return event


def _rejected(
    item: Any, verdict: tuple[str, str], envelope: _Envelope, received_at: float, source: str
) -> NewEvent:
    """The stored record of an item that is not accepted, kept with its data for a replay.

    Its key is a digest of its content, never its messageId: a corrected event sent again
    with the same messageId must not be taken for a duplicate of the rejected one. An item
    that cannot be written as JSON at all is kept as the whole request body it came in.
    """
    if isinstance(item, dict) and "writeKey" in item:
        item = {name: value for name, value in item.items() if name != "writeKey"}
    entry = new_event(item, received_at, source)
    if entry.key.startswith(UNSTORABLE):
        key = entry.key
        if entry.event == b"null" and envelope.raw:
            entry = evolve(entry, event=envelope.raw)
    else:
        key = "rejected:" + digest(entry.event)
    return evolve(entry, key=key, user=f"event:{key}", rejected=verdict)


def _size(item: Any) -> int:
    try:
        return len(dumps(item))
    except UnstorableError:
        return 0


def _entry(
    item: Any, envelope: _Envelope, received_at: float, source: str
) -> tuple[NewEvent, Rejection | None]:
    try:
        event = _stamped(_check(item, envelope.call), envelope)
    except _ItemError as error:
        verdict = (error.reason, error.message)
        entry = _rejected(item, verdict, envelope, received_at, source)
        return entry, Rejection(0, error.reason, error.message)
    entry = new_event(event, received_at, source)
    if entry.rejected is not None:
        reason, message = entry.rejected
        entry = _rejected(item, (reason, message), envelope, received_at, source)
        return entry, Rejection(0, reason, message)
    return entry, None


def prepare_single(document: Any, call: str, received_at: float, source: str) -> NewEvent:
    """The queue entry of a single call (``/v1/track`` and the like).

    Raises:
        BodyError: 400 when the event breaks Segment's rules (the client is told, nothing
            is stored).
    """
    entry, rejection = _entry(document, _Envelope.of(received_at, call), received_at, source)
    if rejection is not None:
        raise BodyError(400, rejection.reason, rejection.message)
    return entry


def prepare_batch(document: Any, received_at: float, source: str, raw: bytes = b"") -> Prepared:
    """The queue entries of a ``/v1/batch`` request.

    An item that breaks Segment's rules does not fail the batch: it is stored as rejected,
    with its reason and its data.

    Raises:
        BodyError: 400 when the body is not a batch envelope, or holds too many events.
    """
    if not isinstance(document, dict):
        raise BodyError(400, "invalid_batch", f"expected a JSON object, not {_kind(document)}")
    items = document.get("batch")
    if not isinstance(items, list):
        raise BodyError(
            400, "invalid_batch", 'expected a "batch" array of events in the request body'
        )
    if len(items) > MAX_BATCH_EVENTS:
        raise BodyError(
            400,
            "too_many_events",
            f"the batch holds {len(items):,} events; the limit is {MAX_BATCH_EVENTS:,}",
        )
    shared = {
        key: document[key]
        for key in ("context", "integrations")
        if isinstance(document.get(key), dict)
    }
    envelope_sent = document.get("sentAt")
    if envelope_sent is not None and parse_timestamp(envelope_sent) is None:
        raise BodyError(
            400, "invalid_timestamp", f"sentAt {_shown(envelope_sent)} is not an ISO 8601 timestamp"
        )
    envelope = _Envelope.of(received_at, None, shared, envelope_sent, raw)
    return _items(items, envelope, received_at, source)


def _items(items: list[Any], envelope: _Envelope, received_at: float, source: str) -> Prepared:
    events: list[NewEvent] = []
    rejections: list[Rejection] = []
    for index, item in enumerate(items):
        entry, rejection = _entry(item, envelope, received_at, source)
        events.append(entry)
        if rejection is not None:
            rejections.append(evolve(rejection, index=index))
    return Prepared(events, rejections)


def prepare_webhook(document: Any, received_at: float, source: str, raw: bytes = b"") -> Prepared:
    """The queue entries of a ``/v1/webhook`` request, as Segment's Webhooks destination sends it.

    The body is one event, or (Webhooks (Actions) with batching on) an array of events; each is
    routed by its own ``type``. Segment's ``receivedAt``, ``sentAt``, ``originalTimestamp`` and
    ``timestamp`` are kept as they are. In an array, an item that breaks Segment's rules is
    stored as rejected, as in a batch.

    Raises:
        BodyError: 400 when the body is neither an object nor an array, when the array holds
            too many events, or when a single event breaks Segment's rules (nothing is stored).
    """
    envelope = _Envelope.of(received_at, None, raw=raw, relayed=True)
    if isinstance(document, dict):
        entry, rejection = _entry(document, envelope, received_at, source)
        if rejection is not None:
            raise BodyError(400, rejection.reason, rejection.message)
        return Prepared([entry], [])
    if not isinstance(document, list):
        raise BodyError(
            400,
            "not_an_object",
            f"expected an event (a JSON object) or an array of events, not {_kind(document)}",
        )
    if len(document) > MAX_WEBHOOK_EVENTS:
        raise BodyError(
            400,
            "too_many_events",
            f"the request holds {len(document):,} events; the limit is {MAX_WEBHOOK_EVENTS:,}",
        )
    return _items(document, envelope, received_at, source)


def signed_by(body: bytes, signature: str, secrets: Mapping[str, str]) -> str | None:
    """The name of the webhook secret that ``signature`` proves, else None.

    ``signature`` is Segment's ``X-Signature`` header: the HMAC-SHA1 of the request body with
    the shared secret, in hex. Every secret is tried and compared in constant time.

    Args:
        body: The request body, decompressed.
        signature: The header's value.
        secrets: Secret -> source name.
    """
    given = signature.strip().lower().encode(errors="surrogatepass")
    found = None
    for secret, name in secrets.items():
        expected = hmac.new(secret.encode(), body, "sha1").hexdigest().encode()
        if hmac.compare_digest(expected, given):
            found = name
    return found


def write_key_of(document: Any) -> str | None:
    """The ``writeKey`` carried in a request body, if any."""
    if isinstance(document, dict):
        key = document.get("writeKey")
        if isinstance(key, str) and key:
            return key
    return None
