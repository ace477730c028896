"""The ingest core without a server: request bodies to queue entries, and the exact answer to
every kind of bad input (a ``BodyError`` with its status and code, or an item stored as
rejected with its reason and its data).
"""

from __future__ import annotations

import gzip
import os
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router._ingest.parse import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    BodyError,
    Decoder,
    Prepared,
    Rejection,
    loads,
    prepare_batch,
    prepare_single,
    write_key_of,
)
from attentive_router._queue.interface import Enqueued, NewEvent, State
from attentive_router._queue.sqlite import SQLiteQueue

RECEIVED = datetime(2026, 1, 8, 14, 0, 0, tzinfo=UTC).timestamp()
RECEIVED_AT = "2026-01-08T14:00:00.000Z"
SOURCE = "shop"


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": "u-1", **fields}


def decode(
    encoding: str | None, data: bytes, limit: int = MAX_BATCH_BYTES, chunk: int = 4096
) -> bytes:
    return feed_all(Decoder(encoding, limit), data, chunk)


def feed_all(decoder: Decoder, data: bytes, chunk: int) -> bytes:
    for start in range(0, len(data), chunk):
        decoder.feed(data[start : start + chunk])
    return decoder.finish()


def body_error(action: Any, *args: Any) -> BodyError:
    with pytest.raises(BodyError) as caught:
        action(*args)
    return caught.value


def batch(*items: Any, **envelope: Any) -> Prepared:
    return prepare_batch({"batch": list(items), **envelope}, RECEIVED, SOURCE)


def one(*items: Any, **envelope: Any) -> tuple[NewEvent, Rejection | None]:
    prepared = batch(*items, **envelope)
    assert len(prepared.events) == 1
    assert len(prepared.rejections) <= 1
    return prepared.events[0], prepared.rejections[0] if prepared.rejections else None


def stored(entry: NewEvent) -> dict[str, Any]:
    assert entry.rejected is None, entry.rejected
    event: dict[str, Any] = orjson.loads(entry.event)
    return event


def assert_rejected(item: Any, reason: str, **envelope: Any) -> NewEvent:
    """``item`` alone in a batch is stored as rejected with ``reason`` and its own data."""
    entry, rejection = one(item, **envelope)
    assert rejection is not None
    assert (rejection.index, rejection.reason) == (0, reason)
    assert entry.rejected == (reason, rejection.message)
    assert entry.event == orjson.dumps(item)
    assert entry.key.startswith("rejected:sha256:")
    assert (entry.source, entry.received_at) == (SOURCE, RECEIVED)
    return entry


# --- the body as a whole: JSON ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{bad", b'{"batch": [', b"{'batch': []}", b'{"batch": []} trailing', b"nul\x00", b"NaN"],
    ids=["garbage", "unterminated", "single-quotes", "trailing", "nul-word", "nan"],
)
def test_invalid_json_is_400_invalid_json(body: bytes) -> None:
    error = body_error(loads, body)
    assert (error.status, error.code) == (400, "invalid_json")
    assert error.message.startswith("the body is not valid JSON (")


@pytest.mark.parametrize("body", [b"", b" ", b"\r\n\t ", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"])
def test_empty_body_is_400_empty_body(body: bytes) -> None:
    error = body_error(loads, body)
    assert (error.status, error.code) == (400, "empty_body")


@pytest.mark.parametrize(
    ("document", "kind"),
    [
        (42, "a number"),
        ("batch", "a string"),
        (None, "null"),
        (True, "a boolean"),
        ([], "an array"),
    ],
)
def test_batch_body_that_is_not_an_object_is_400_invalid_batch(document: Any, kind: str) -> None:
    error = body_error(prepare_batch, loads(orjson.dumps(document)), RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "invalid_batch")
    assert error.message == f"expected a JSON object, not {kind}"


def test_array_of_events_at_the_top_level_is_not_a_batch() -> None:
    error = body_error(prepare_batch, [track(messageId="m-1")], RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "invalid_batch")


@pytest.mark.parametrize("document", [{}, {"batch": {}}, {"batch": None}, {"events": []}])
def test_object_without_a_batch_array_is_400_invalid_batch(document: Any) -> None:
    error = body_error(prepare_batch, document, RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "invalid_batch")
    assert error.message == 'expected a "batch" array of events in the request body'


@pytest.mark.parametrize(
    ("document", "kind"),
    [(42, "a number"), ([track()], "an array"), ("x", "a string"), (None, "null")],
)
def test_single_call_that_is_not_an_object_is_400_not_an_object(document: Any, kind: str) -> None:
    error = body_error(prepare_single, document, "track", RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "not_an_object")
    assert error.message == f"an event must be a JSON object, not {kind}"


def test_empty_batch_is_accepted_with_nothing_to_store() -> None:
    assert batch() == Prepared([], [])


def test_byte_order_mark_before_the_body_is_ignored() -> None:
    body = orjson.dumps({"batch": [track(messageId="m-bom")]})
    assert loads(b"\xef\xbb\xbf" + body) == loads(body)
    entry, rejection = one(*loads(b"\xef\xbb\xbf" + body)["batch"])
    assert rejection is None
    assert entry.key == "m-bom"


def test_byte_order_mark_inside_the_body_is_invalid_json() -> None:
    error = body_error(loads, b'{"batch": []}\xef\xbb\xbf')
    assert (error.status, error.code) == (400, "invalid_json")


def test_duplicate_keys_last_one_wins() -> None:
    assert loads(b'{"a": 1, "a": 2}') == {"a": 2}
    body = (
        b'{"batch": [{"type": "page", "type": "track", "event": "x",'
        b' "userId": "u", "userId": "v"}]}'
    )
    event = stored(one(*loads(body)["batch"])[0])
    assert (event["type"], event["userId"]) == ("track", "v")
    # Also when the standard library reads the body (here: because of a lone surrogate).
    assert loads(b'{"a": 1, "a": 2, "s": "\\ud800"}') == {"a": 2, "s": "\ud800"}


def test_nul_escaped_inside_strings_is_kept() -> None:
    body = (
        b'{"batch": [{"type": "track", "event": "a\\u0000b", "userId": "u\\u0000",'
        b' "messageId": "m-nul"}]}'
    )
    entry, rejection = one(*loads(body)["batch"])
    assert rejection is None
    event = stored(entry)
    assert (event["event"], event["userId"]) == ("a\x00b", "u\x00")
    assert b"a\\u0000b" in entry.event
    assert entry.user == "user:u\x00"


def test_raw_nul_byte_in_the_body_is_invalid_json() -> None:
    for body in (b'{"batch": [], "x": "a\x00b"}', b'{"batch": []}\x00', b'\x00{"batch": []}'):
        error = body_error(loads, body)
        assert (error.status, error.code) == (400, "invalid_json"), body


@pytest.mark.parametrize("depth", [1025, 5000])
def test_very_deep_nesting_is_400_too_deep(depth: int) -> None:
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"batch": [{"type": "track", "properties": '
        + b'{"a": ' * depth
        + b"1"
        + b"}" * depth
        + b"}]}",
    ):
        error = body_error(loads, body)
        assert (error.status, error.code) == (400, "too_deep")
        assert error.message == "the body is nested too deeply to be read as JSON"


def test_nesting_orjson_reads_is_stored_whole() -> None:
    # orjson writes at most 254 levels but reads up to 1,024; the standard library writes these.
    depth = 900
    body = (
        b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-deep",'
        b' "properties": ' + b'{"a": ' * depth + b'"leaf"' + b"}" * depth + b"}]}"
    )
    entry, rejection = one(*loads(body)["batch"])
    assert rejection is None
    assert entry.event.count(b'{"a":') == depth
    assert entry.key == "m-deep"


def test_lone_surrogate_is_read_and_the_body_accepted() -> None:
    document = loads(b'{"batch": [], "x": "\\ud800", "y": "\\udc00 after"}')
    assert document == {"batch": [], "x": "\ud800", "y": "\udc00 after"}


def test_lone_surrogate_in_a_batch_item_is_stored_as_rejected_invalid_string() -> None:
    body = (
        b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-s",'
        b' "properties": {"name": "\\ud800"}},'
        b' {"type": "track", "event": "x", "userId": "u", "messageId": "m-ok"}]}'
    )
    prepared = prepare_batch(loads(body), RECEIVED, SOURCE)
    [rejection] = prepared.rejections
    assert (rejection.index, rejection.reason) == (0, "invalid_string")
    assert "surrogate" in rejection.message
    bad, good = prepared.events
    assert bad.rejected == ("invalid_string", rejection.message)
    assert (good.key, good.rejected) == ("m-ok", None)


def test_lone_surrogate_in_a_single_call_is_400_invalid_string() -> None:
    document = loads(b'{"event": "x", "userId": "u", "properties": {"name": "\\udfff"}}')
    error = body_error(prepare_single, document, "track", RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "invalid_string")


def test_paired_surrogate_escapes_are_one_character() -> None:
    entry, _ = one(
        *loads(b'{"batch": [{"type": "track", "event": "\\ud83c\\udf89", "userId": "u"}]}')["batch"]
    )
    assert stored(entry)["event"] == "🎉"


def test_integers_within_64_bits_are_kept_exactly() -> None:
    for number in (2**63 - 1, 2**64 - 1, -(2**63)):
        body = (
            b'{"batch": [{"type": "track", "event": "x", "userId": "u", "properties": {"n": %d}}]}'
            % number
        )
        entry, rejection = one(*loads(body)["batch"])
        assert rejection is None
        assert stored(entry)["properties"]["n"] == number
        assert b'"n":%d' % number in entry.event


def test_huge_numbers_are_read_and_judged_per_item() -> None:
    # The body is read (orjson refuses 1e400; the standard library reads it) and the batch's
    # other items are unaffected. How the item holding them is stored is not pinned here.
    body = (
        b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-big",'
        b' "properties": {"inf": 1e400, "neg": -1e400, "big": 1180591620717411303424}},'
        b' {"type": "track", "event": "x", "userId": "u", "messageId": "m-fine"}]}'
    )
    prepared = prepare_batch(loads(body), RECEIVED, SOURCE)
    assert len(prepared.events) == 2
    assert prepared.events[1].key == "m-fine"
    assert stored(prepared.events[1])["event"] == "x"


# --- the body as a whole: gzip and the size limit ---------------------------------------------


def test_plain_body_passes_through() -> None:
    body = b'{"batch": []}'
    for encoding in (None, "", "identity", " Identity "):
        assert decode(encoding, body) == body


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip", " gzip "])
def test_gzip_body_is_decompressed(encoding: str) -> None:
    body = orjson.dumps({"batch": [track()] * 50})
    assert decode(encoding, gzip.compress(body), chunk=7) == body


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, gzip", "compress", "zstd"])
def test_other_content_encodings_are_415(encoding: str) -> None:
    error = body_error(Decoder, encoding, MAX_BATCH_BYTES)
    assert (error.status, error.code) == (415, "unsupported_encoding")


def test_gzip_bomb_is_refused_after_at_most_the_limit_with_bounded_memory() -> None:
    expanded = 10 * 1024 * 1024
    bomb = gzip.compress(b"\0" * expanded, 9)
    assert len(bomb) < 20 * 1024
    for chunk in (len(bomb), 1024, 1):
        decoder = Decoder("gzip", MAX_BATCH_BYTES)
        tracemalloc.start()
        try:
            with pytest.raises(BodyError) as caught:
                feed_all(decoder, bomb, chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (caught.value.status, caught.value.code) == (400, "body_too_large")
        assert "500 KB (decompressed)" in caught.value.message
        assert decoder._size <= MAX_BATCH_BYTES + 1  # output decompressed before refusing
        assert peak < 3 * MAX_BATCH_BYTES, peak  # the bomb expands to 20 times that


def test_body_at_the_limit_is_accepted_one_byte_more_is_not() -> None:
    exact = b"x" * MAX_BATCH_BYTES
    assert decode(None, exact) == exact
    assert decode("gzip", gzip.compress(exact)) == exact
    for encoding, data in ((None, exact + b"x"), ("gzip", gzip.compress(exact + b"x"))):
        error = body_error(decode, encoding, data)
        assert (error.status, error.code) == (400, "body_too_large")


def test_single_call_limit_is_32_kb() -> None:
    exact = b"x" * MAX_EVENT_BYTES
    assert decode(None, exact, MAX_EVENT_BYTES) == exact
    error = body_error(decode, "gzip", gzip.compress(exact + b"x"), MAX_EVENT_BYTES)
    assert (error.status, error.code) == (400, "body_too_large")
    assert error.message == "the request body is larger than 32 KB (decompressed)"


def test_long_gzip_stream_is_refused_before_inflating_it() -> None:
    # Incompressible data: the compressed stream alone is longer than the limit.
    noise = os.urandom(MAX_BATCH_BYTES + 4096)
    compressed = gzip.compress(noise)
    decoder = Decoder("gzip", MAX_BATCH_BYTES)
    with pytest.raises(BodyError) as caught:
        decoder.feed(compressed)
    assert caught.value.code == "body_too_large"


@pytest.mark.parametrize("cut", [1, 5, 10, 20, -8, -4, -1])
def test_truncated_gzip_is_400_invalid_gzip(cut: int) -> None:
    whole = gzip.compress(orjson.dumps({"batch": [track()] * 3}))
    error = body_error(decode, "gzip", whole[:cut])
    assert (error.status, error.code) == (400, "invalid_gzip")
    assert error.message == "the gzip data ends early (truncated body or stream)"


@pytest.mark.parametrize("data", [b"not gzip at all", b'{"batch": []}', b"\x1f\x8b\x09garbage"])
def test_data_that_is_not_gzip_is_400_invalid_gzip(data: bytes) -> None:
    error = body_error(decode, "gzip", data)
    assert (error.status, error.code) == (400, "invalid_gzip")
    assert error.message.startswith("the body is not valid gzip data (")


def test_garbage_after_a_gzip_member_is_400_invalid_gzip() -> None:
    error = body_error(decode, "gzip", gzip.compress(b'{"batch": []}') + b"trailing garbage")
    assert (error.status, error.code) == (400, "invalid_gzip")


def test_empty_gzip_body_is_an_empty_body() -> None:
    assert decode("gzip", b"") == b""
    assert body_error(loads, decode("gzip", b"")).code == "empty_body"


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_concatenated_gzip_members_are_one_body(chunk: int) -> None:
    body = orjson.dumps({"batch": [track(messageId="m-1"), track(messageId="m-2")]})
    half = len(body) // 2
    members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    assert decode("gzip", members, chunk=chunk) == body
    prepared = prepare_batch(loads(decode("gzip", members)), RECEIVED, SOURCE)
    assert [e.key for e in prepared.events] == ["m-1", "m-2"]


def test_two_whole_documents_in_two_members_are_invalid_json() -> None:
    document = orjson.dumps({"batch": []})
    joined = decode("gzip", gzip.compress(document) + gzip.compress(document))
    assert joined == document + document
    assert body_error(loads, joined).code == "invalid_json"


def test_concatenated_members_count_against_one_limit() -> None:
    part = b"x" * (MAX_BATCH_BYTES // 2 + 1)
    error = body_error(decode, "gzip", gzip.compress(part) + gzip.compress(part))
    assert (error.status, error.code) == (400, "body_too_large")


# --- batch limits -----------------------------------------------------------------------------


def test_at_most_2500_events_per_batch() -> None:
    items = [track(messageId=f"m-{i}") for i in range(MAX_BATCH_EVENTS)]
    assert len(batch(*items).events) == MAX_BATCH_EVENTS
    error = body_error(prepare_batch, {"batch": [{}] * (MAX_BATCH_EVENTS + 1)}, RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "too_many_events")
    assert error.message == "the batch holds 2,501 events; the limit is 2,500"


def _sized(size: int) -> dict[str, Any]:
    item = track(messageId="m-size", properties={"pad": ""})
    item["properties"]["pad"] = "x" * (size - len(orjson.dumps(item)))
    assert len(orjson.dumps(item)) == size
    return item


def test_event_of_32_kb_is_accepted_one_byte_more_is_stored_as_rejected_with_its_data() -> None:
    entry, rejection = one(_sized(MAX_EVENT_BYTES))
    assert rejection is None
    assert entry.key == "m-size"
    big = _sized(MAX_EVENT_BYTES + 1)
    entry = assert_rejected(big, "event_too_large")
    assert entry.rejected is not None
    assert entry.rejected[1] == "the event is 32,769 bytes of JSON; the limit is 32 KB"
    assert orjson.loads(entry.event) == big


def test_oversize_event_among_good_ones_rejects_only_itself() -> None:
    prepared = batch(track(messageId="m-a"), _sized(40_000), track(messageId="m-b"))
    assert [(r.index, r.reason) for r in prepared.rejections] == [(1, "event_too_large")]
    assert [e.rejected is None for e in prepared.events] == [True, False, True]


def test_oversize_single_call_is_400_event_too_large() -> None:
    item = _sized(MAX_EVENT_BYTES + 1)
    error = body_error(prepare_single, item, "track", RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, "event_too_large")


# --- batch items that break Segment's rules ---------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        {"type": "track", "event": "x"},
        {"type": "identify", "traits": {"email": "a@example.com"}},
        track(userId=None),
        track(userId="", anonymousId="  "),
        track(userId="\t\n"),
    ],
    ids=["none", "identify-none", "null", "blank", "whitespace"],
)
def test_missing_ids_are_rejected_missing_id(item: dict[str, Any]) -> None:
    entry = assert_rejected(item, "missing_id")
    assert entry.rejected == ("missing_id", "the event has neither a userId nor an anonymousId")


def test_anonymous_id_alone_is_enough() -> None:
    item = {"type": "page", "anonymousId": "a-1", "name": "Home", "messageId": "m-anon"}
    entry, rejection = one(item)
    assert rejection is None
    assert (entry.key, entry.user) == ("m-anon", "user:a-1")


@pytest.mark.parametrize(
    ("item", "reason", "message"),
    [
        (track(event=None), "missing_event_name", "a track call needs an event name"),
        (
            {"type": "track", "userId": "u"},
            "missing_event_name",
            "a track call needs an event name",
        ),
        (track(event="  "), "missing_event_name", "a track call needs an event name"),
        (track(event=5), "invalid_event_name", "event must be a string, not a number"),
        (track(event={"name": "x"}), "invalid_event_name", "event must be a string, not an object"),
    ],
    ids=["null", "absent", "blank", "number", "object"],
)
def test_track_without_an_event_name_is_rejected(
    item: dict[str, Any], reason: str, message: str
) -> None:
    entry = assert_rejected(item, reason)
    assert entry.rejected == (reason, message)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bogus", "invalid_type"),
        ("Track", "invalid_type"),
        ("", "invalid_type"),
        (7, "invalid_type"),
        (None, "missing_type"),
    ],
)
def test_unknown_or_missing_type_is_rejected(kind: Any, reason: str) -> None:
    item = (
        {"userId": "u", "event": "x"}
        if kind is None
        else {"type": kind, "userId": "u", "event": "x"}
    )
    entry = assert_rejected(item, reason)
    if reason == "invalid_type":
        assert entry.rejected is not None
        assert entry.rejected[1] == (
            f"type {kind!r} is not a Segment call (alias, group, identify, page, screen, track)"
        )


@pytest.mark.parametrize("call", ["identify", "track", "page", "screen", "group", "alias"])
def test_every_segment_call_type_is_accepted(call: str) -> None:
    item = {"type": call, "userId": "u", "event": "x", "messageId": f"m-{call}"}
    entry, rejection = one(item)
    assert rejection is None
    assert stored(entry)["type"] == call


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("userId", True, "a boolean"),
        ("userId", False, "a boolean"),
        ("userId", 1.5, "a number"),
        ("userId", {"id": "u"}, "an object"),
        ("userId", ["u"], "an array"),
        ("anonymousId", 2.0, "a number"),
        ("messageId", True, "a boolean"),
        ("messageId", 0.5, "a number"),
        ("messageId", {"id": 1}, "an object"),
    ],
)
def test_non_string_ids_are_rejected_invalid_id(field: str, value: Any, kind: str) -> None:
    item = {"type": "track", "event": "x", field: value}
    if field == "messageId":
        item["userId"] = "u"
    entry = assert_rejected(item, "invalid_id")
    assert entry.rejected == ("invalid_id", f"{field} must be a string, not {kind}")


def test_blank_message_id_is_rejected_invalid_id() -> None:
    entry = assert_rejected(track(messageId=" "), "invalid_id")
    assert entry.rejected == ("invalid_id", "messageId is blank")


def test_integer_ids_are_taken_as_their_decimal_text() -> None:
    entry, rejection = one(track(userId=42, messageId=7))
    assert rejection is None
    assert (entry.key, entry.user) == ("7", "user:42")
    assert stored(entry)["userId"] == 42


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-13-01T00:00:00Z", "08/01/2026", 1767880800, True, "", [], {}],
    ids=["word", "month-13", "us-date", "epoch-number", "bool", "empty", "array", "object"],
)
@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
def test_non_iso_timestamps_are_rejected_invalid_timestamp(field: str, value: Any) -> None:
    entry = assert_rejected(track(**{field: value}), "invalid_timestamp")
    assert entry.rejected is not None
    assert entry.rejected[1].startswith(f"{field} ")
    assert entry.rejected[1].endswith(" is not an ISO 8601 timestamp")


def test_space_separated_timestamp_is_read_as_iso() -> None:
    event = stored(one(track(timestamp="2026-01-08 13:59:00"))[0])
    assert event["timestamp"] == "2026-01-08 13:59:00"


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z"])
def test_extreme_years_without_sent_at_are_kept_as_sent(value: str) -> None:
    # Ingest does not judge plausibility; the transform rejects such times when delivering.
    event = stored(one(track(timestamp=value, messageId="m-ext"))[0])
    assert event["timestamp"] == value
    assert event["receivedAt"] == RECEIVED_AT
    assert "originalTimestamp" not in event


@pytest.mark.parametrize(
    ("value", "corrected"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59.000Z"),
    ],
)
def test_extreme_years_are_corrected_when_sent_at_is_the_receipt_time(
    value: str, corrected: str
) -> None:
    event = stored(one(track(timestamp=value), sentAt=RECEIVED_AT)[0])
    assert event["timestamp"] == corrected
    assert event["originalTimestamp"] == value


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("0001-01-01T00:00:00Z", "2026-01-08T14:00:05Z"),  # corrected: before year 1
        ("9999-12-31T23:59:59Z", "2026-01-08T13:59:55Z"),  # corrected: after year 9999
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00+14:00", "2026-01-08T14:00:00Z"),  # before year 1 in UTC
    ],
)
def test_clock_correction_out_of_range_is_rejected_invalid_timestamp(
    timestamp: str, sent_at: str
) -> None:
    entry = assert_rejected(track(timestamp=timestamp, sentAt=sent_at), "invalid_timestamp")
    assert entry.rejected is not None
    assert "too far apart to correct the client's clock" in entry.rejected[1]


def test_bad_envelope_sent_at_refuses_the_batch() -> None:
    for value in ("soon", 5, "0000-01-01T00:00:00Z"):
        error = body_error(prepare_batch, {"batch": [track()], "sentAt": value}, RECEIVED, SOURCE)
        assert (error.status, error.code) == (400, "invalid_timestamp")


@pytest.mark.parametrize("item", [None, 1, "track", [], [track()], True])
def test_item_that_is_not_an_object_is_rejected_not_an_object(item: Any) -> None:
    assert_rejected(item, "not_an_object")


def test_each_bad_item_keeps_its_index_and_good_ones_are_queued() -> None:
    prepared = batch(
        track(messageId="m-0"),
        {"type": "track", "userId": "u"},
        track(messageId="m-2"),
        {"type": "bogus", "userId": "u"},
        track(userId=True),
    )
    assert [(r.index, r.reason) for r in prepared.rejections] == [
        (1, "missing_event_name"),
        (3, "invalid_type"),
        (4, "invalid_id"),
    ]
    assert [e.key for e in prepared.events if e.rejected is None] == ["m-0", "m-2"]
    assert all(e.user == f"event:{e.key}" for e in prepared.events if e.rejected is not None)


# --- single calls -----------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["identify", "track", "page", "screen", "group", "alias"])
def test_single_call_takes_its_type_from_the_path(call: str) -> None:
    entry = prepare_single(
        {"userId": "u", "event": "x", "messageId": "m-1"}, call, RECEIVED, SOURCE
    )
    event = stored(entry)
    assert event["type"] == call
    assert (entry.key, entry.source, entry.received_at) == ("m-1", SOURCE, RECEIVED)
    same = prepare_single({"type": call, "userId": "u", "event": "x"}, call, RECEIVED, SOURCE)
    assert stored(same)["type"] == call


@pytest.mark.parametrize(
    ("kind", "call"), [("page", "track"), ("track", "identify"), ("bogus", "page")]
)
def test_single_call_type_differing_from_the_path_is_400_type_mismatch(
    kind: str, call: str
) -> None:
    error = body_error(
        prepare_single, {"type": kind, "userId": "u", "event": "x"}, call, RECEIVED, SOURCE
    )
    assert (error.status, error.code) == (400, "type_mismatch")
    assert error.message == f"type {kind!r} posted to /v1/{call}"


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"event": "x"}, "missing_id"),
        ({"userId": "u"}, "missing_event_name"),
        ({"userId": "u", "event": 3}, "invalid_event_name"),
        ({"userId": False, "event": "x"}, "invalid_id"),
        ({"userId": "u", "event": "x", "timestamp": "noon"}, "invalid_timestamp"),
    ],
)
def test_single_call_breaking_the_rules_is_400_with_the_reason(
    document: dict[str, Any], code: str
) -> None:
    error = body_error(prepare_single, document, "track", RECEIVED, SOURCE)
    assert (error.status, error.code) == (400, code)


# --- the good path: envelope, messageId, times, writeKey --------------------------------------


def test_envelope_context_and_integrations_merge_into_items_and_item_keys_win() -> None:
    shared = {
        "context": {"library": {"name": "analytics-python"}, "ip": "10.0.0.1"},
        "integrations": {"All": True, "Attentive": True},
    }
    own = track(
        messageId="m-own",
        context={"ip": "10.0.0.2", "traits": {"email": "a@example.com"}, "library": {"v": 1}},
        integrations={"Attentive": False},
    )
    bare = track(messageId="m-bare")
    prepared = batch(own, bare, **shared)
    first, second = (stored(e) for e in prepared.events)
    assert first["context"] == {
        "library": {"v": 1},  # merged one level deep: the item's whole value wins
        "ip": "10.0.0.2",
        "traits": {"email": "a@example.com"},
    }
    assert first["integrations"] == {"All": True, "Attentive": False}
    assert second["context"] == shared["context"]
    assert second["integrations"] == shared["integrations"]


def test_envelope_values_that_are_not_objects_are_not_merged() -> None:
    event = stored(one(track(messageId="m-1"), context="ctx", integrations=[1])[0])
    assert "context" not in event
    assert "integrations" not in event


def test_message_id_is_assigned_from_the_content_when_missing() -> None:
    item = track(properties={"plan": "pro"})
    first = stored(one(item)[0])
    again = stored(prepare_batch({"batch": [dict(item)]}, RECEIVED + 3600, "other").events[0])
    reordered = stored(one(dict(reversed(item.items())))[0])
    other = stored(one(track(properties={"plan": "free"}))[0])
    assert first["messageId"] == again["messageId"] == reordered["messageId"]
    assert other["messageId"] != first["messageId"]
    assert uuid.UUID(first["messageId"]).version == 4
    assert one(item)[0].key == first["messageId"]


def test_message_id_assigned_for_null_and_kept_when_given() -> None:
    assigned = stored(one(track(messageId=None))[0])["messageId"]
    assert uuid.UUID(assigned).version == 4
    assert stored(one(track(messageId="client-id"))[0])["messageId"] == "client-id"


def test_a_resent_identical_batch_is_deduplicated_by_the_queue(tmp_path: Path) -> None:
    document = {
        "batch": [track(), track(event="Other"), track(messageId="m-given"), {"type": "track"}],
        "context": {"ip": "10.0.0.1"},
        "sentAt": "2026-01-08T14:00:01Z",
    }
    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        first = prepare_batch(orjson.loads(orjson.dumps(document)), RECEIVED, SOURCE)
        assert queue.put(first.events, RECEIVED) == Enqueued(4, 0, ("missing_id",))
        again = prepare_batch(orjson.loads(orjson.dumps(document)), RECEIVED + 2, SOURCE)
        assert [e.key for e in again.events] == [e.key for e in first.events]
        assert queue.put(again.events, RECEIVED + 2) == Enqueued(0, 4, ())
        elsewhere = prepare_batch(orjson.loads(orjson.dumps(document)), RECEIVED + 3, "other")
        assert queue.put(elsewhere.events, RECEIVED + 3).accepted == 4  # per source
        counts = queue.counts()
        assert (counts[State.QUEUED], counts[State.REJECTED]) == (6, 2)
    finally:
        queue.close()


def test_a_corrected_event_is_not_a_duplicate_of_its_rejected_version(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        bad = batch({"type": "track", "userId": "u", "messageId": "m-fix"})
        assert bad.events[0].rejected is not None
        assert queue.put(bad.events, RECEIVED) == Enqueued(1, 0, ("missing_event_name",))
        fixed = batch(track(messageId="m-fix"))
        assert queue.put(fixed.events, RECEIVED + 1) == Enqueued(1, 0, ())
        assert queue.put(bad.events, RECEIVED + 2) == Enqueued(0, 1, ())
    finally:
        queue.close()


def test_a_clients_received_at_is_replaced() -> None:
    event = stored(one(track(receivedAt="1999-01-01T00:00:00Z"))[0])
    assert event["receivedAt"] == RECEIVED_AT


def test_received_at_is_stamped_and_timestamp_defaults_to_it() -> None:
    event = stored(one(track(messageId="m-1"))[0])
    assert event["receivedAt"] == RECEIVED_AT
    assert event["timestamp"] == RECEIVED_AT
    assert "sentAt" not in event
    assert "originalTimestamp" not in event


def test_timestamp_without_sent_at_is_kept_unchanged() -> None:
    event = stored(one(track(timestamp="2026-01-08T13:00:00+01:00"))[0])
    assert event["timestamp"] == "2026-01-08T13:00:00+01:00"
    assert event["receivedAt"] == RECEIVED_AT
    assert "originalTimestamp" not in event


def test_clock_skew_uses_original_timestamp_and_keeps_all_four_fields() -> None:
    # The client's clock is 10 s ahead: sentAt 14:00:10 arrives at 14:00:00.
    item = track(
        originalTimestamp="2026-01-08T13:59:40Z",
        timestamp="2026-01-08T13:59:45Z",  # ignored: originalTimestamp is preferred
        sentAt="2026-01-08T14:00:10Z",
    )
    event = stored(one(item)[0])
    assert event["timestamp"] == "2026-01-08T13:59:30.000Z"
    assert event["originalTimestamp"] == "2026-01-08T13:59:40Z"
    assert event["sentAt"] == "2026-01-08T14:00:10Z"
    assert event["receivedAt"] == RECEIVED_AT


def test_clock_skew_falls_back_to_timestamp_as_the_original() -> None:
    # The client's clock is 2 minutes behind, and writes a UTC offset.
    item = track(timestamp="2026-01-08T14:57:00+01:00", sentAt="2026-01-08T13:58:00Z")
    event = stored(one(item)[0])
    assert event["timestamp"] == "2026-01-08T13:59:00.000Z"
    assert event["originalTimestamp"] == "2026-01-08T14:57:00+01:00"
    assert event["sentAt"] == "2026-01-08T13:58:00Z"
    assert event["receivedAt"] == RECEIVED_AT


def test_envelope_sent_at_applies_to_every_item_and_an_items_own_wins() -> None:
    prepared = batch(
        track(messageId="m-env", timestamp="2026-01-08T13:59:00Z"),
        track(messageId="m-own", timestamp="2026-01-08T13:59:00Z", sentAt="2026-01-08T14:00:30Z"),
        sentAt="2026-01-08T14:00:10Z",
    )
    envelope, own = (stored(e) for e in prepared.events)
    assert envelope["timestamp"] == "2026-01-08T13:58:50.000Z"
    assert envelope["sentAt"] == "2026-01-08T14:00:10Z"
    assert envelope["originalTimestamp"] == "2026-01-08T13:59:00Z"
    assert own["timestamp"] == "2026-01-08T13:58:30.000Z"
    assert own["sentAt"] == "2026-01-08T14:00:30Z"


def test_naive_times_are_taken_as_utc() -> None:
    event = stored(one(track(timestamp="2026-01-08T13:59:00", sentAt="2026-01-08T14:00:00"))[0])
    assert event["timestamp"] == "2026-01-08T13:59:00.000Z"


def test_write_key_is_never_stored_in_an_event() -> None:
    prepared = prepare_batch(
        {"batch": [track(messageId="m-1", writeKey="wk_secret")], "writeKey": "wk_secret"},
        RECEIVED,
        SOURCE,
    )
    assert b"wk_secret" not in prepared.events[0].event
    assert "writeKey" not in stored(prepared.events[0])
    single = prepare_single(
        {"userId": "u", "event": "x", "writeKey": "wk_secret"}, "track", RECEIVED, SOURCE
    )
    assert b"wk_secret" not in single.event
    assert "writeKey" not in stored(single)


def test_write_key_does_not_change_the_assigned_message_id() -> None:
    with_key = stored(one(track(writeKey="wk_1"))[0])
    without = stored(one(track())[0])
    assert with_key["messageId"] == without["messageId"]


def test_write_key_of_reads_only_a_non_empty_string() -> None:
    assert write_key_of({"writeKey": "wk"}) == "wk"
    for document in ({"writeKey": ""}, {"writeKey": 5}, {}, [{"writeKey": "wk"}], "wk", None):
        assert write_key_of(document) is None


def test_entries_carry_the_source_receipt_time_and_user_order() -> None:
    entry = prepare_single(
        {"anonymousId": "a-9", "name": "Home", "messageId": "m-p"}, "page", RECEIVED, "site"
    )
    assert (entry.key, entry.user, entry.source, entry.received_at) == (
        "m-p",
        "user:a-9",
        "site",
        RECEIVED,
    )
