"""Ingest at the edges of JSON: values that cannot be written back as they were read.

Lone surrogates, numbers beyond a double's range, integers beyond 64 bits, nesting past what
the JSON libraries write, a write key in a rejected item, a write key that is not Unicode.
Each such item is judged on its own, and what is stored keeps its data.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._ingest.parse import loads, prepare_batch
from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue

RECEIVED = 1_767_880_800.0  # 2026-01-08T14:00:00Z
KEY = "wk_edges"


def _batch(body: bytes) -> Any:
    return prepare_batch(loads(body), RECEIVED, "shop")


# Items that cannot be written as JSON (a lone surrogate, nesting orjson reads but the standard
# library cannot write) each get a record of their own, with their data: the item itself in
# ASCII JSON, else the request body it came in.


def test_unwritable_rejected_items_each_get_their_own_record(tmp_path: Path) -> None:
    surrogates = _batch(
        b'{"batch": [{"type": "track", "event": "x", "userId": "u-1\\ud800"},'
        b' {"type": "track", "event": "x", "userId": "u-2\\ud800"}, null]}'
    )
    assert [r.reason for r in surrogates.rejections] == [
        "invalid_string",
        "invalid_string",
        "not_an_object",
    ]
    deep = b'{"a": ' * 1000 + b"1" + b"}" * 1000
    too_deep = _batch(
        b'{"batch": [{"type": "track", "event": "x", "userId": "u-3", "properties": '
        + deep
        + b'}, {"type": "track", "event": "y", "userId": "u-4", "properties": '
        + deep
        + b"}]}"
    )
    assert [r.reason for r in too_deep.rejections] == ["too_deep", "too_deep"]
    events = [*surrogates.events, *too_deep.events]
    assert len({e.key for e in events}) == 5
    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        result = queue.put(events, RECEIVED)
    finally:
        queue.close()
    assert (result.accepted, result.duplicates) == (5, 0)


def test_rejected_item_with_a_lone_surrogate_keeps_its_data() -> None:
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-1",'
    body += b' "properties": {"name": "\\ud800"}}]}'
    [entry] = _batch(body).events
    assert entry.rejected is not None
    assert json.loads(entry.event) == loads(body)["batch"][0]


# Huge numbers: 1e400 rejects its item (never stored as null or Infinity); integers beyond
# 64 bits are kept exactly.


def test_infinite_number_is_rejected_not_stored_as_null() -> None:
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-inf",'
    body += b' "properties": {"n": 1e400}}]}'
    prepared = _batch(body)
    assert [r.index for r in prepared.rejections] == [0]
    assert prepared.events[0].rejected is not None


def test_stored_event_bytes_are_always_json() -> None:
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-both",'
    body += b' "properties": {"inf": 1e400, "big": 1180591620717411303424}}]}'
    [entry] = _batch(body).events
    orjson.loads(entry.event)


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    assert loads(b'{"n": 1180591620717411303424}') == {"n": 2**70}
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m-big",'
    body += b' "properties": {"n": 1180591620717411303424}}]}'
    [entry] = _batch(body).events
    assert b"1180591620717411303424" in entry.event


@pytest.mark.parametrize(
    "body",
    [
        b"1180591620717411303424",
        b" \n-1180591620717411303424",
        b'{"n": [1, -1180591620717411303424]}',
        b'{"n":\t1180591620717411303424, "s": "x"}',
        b'[{"id": "ajs-next-d8de77695094204190735328a826dd1b"}, 1180591620717411303424]',
    ],
)
def test_a_long_integer_is_exact_wherever_a_number_starts(body: bytes) -> None:
    assert repr(loads(body)) == repr(json.loads(body))


@pytest.mark.parametrize(
    "text",
    [
        "ajs-next-d8de77695094204190735328a826dd1b",  # hexadecimal: a run of 19 digits
        "12345678901234567890123",
        "a: 12345678901234567890123",
        "-12345678901234567890123",
    ],
)
def test_long_digit_runs_in_strings_read_as_they_are(text: str) -> None:
    body = json.dumps({"batch": [{"messageId": text, "n": 1.5e300, "m": [0.1, -7]}]}).encode()
    assert repr(loads(body)) == repr(json.loads(body))


# A writeKey inside a batch item is stored with neither an accepted nor a rejected event.


def test_write_key_is_not_stored_with_a_rejected_item() -> None:
    body = b'{"batch": [{"type": "track", "userId": "u", "writeKey": "wk_secret"}]}'
    [entry] = _batch(body).events
    assert entry.rejected is not None
    assert b"wk_secret" not in entry.event


# Both ids are checked; an envelope's sentAt is kept on items without a timestamp.


def test_non_string_anonymous_id_is_rejected_even_with_a_user_id() -> None:
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "anonymousId": true}]}'
    assert [r.reason for r in _batch(body).rejections] == ["invalid_id"]


def test_envelope_sent_at_is_kept_on_items_without_a_timestamp() -> None:
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u"}],'
    body += b' "sentAt": "2026-01-08T14:00:00Z"}'
    [entry] = _batch(body).events
    assert orjson.loads(entry.event).get("sentAt") == "2026-01-08T14:00:00Z"


# Over HTTP.


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    queue = tmp_path_factory.mktemp("edges") / "q.db"
    with ServeProcess(queue=queue, write_keys=(f"shop={KEY}",)) as process:
        yield process


def test_write_key_with_a_lone_surrogate_is_401_not_503(server: ServeProcess) -> None:
    response = server.post(
        "/v1/batch",
        content=b'{"batch": [], "writeKey": "wk\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"


def test_two_rejected_items_with_lone_surrogates_are_both_recorded(server: ServeProcess) -> None:
    body = (
        b'{"batch": [{"type": "track", "userId": "a\\ud800"},'
        b' {"type": "track", "userId": "b\\ud800"}]}'
    )
    auth = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    response = server.post(
        "/v1/batch", content=body, headers={"Authorization": auth, "Content-Type": "text/plain"}
    )
    assert response.status_code == 200
    assert [r["index"] for r in response.json()["rejected"]] == [0, 1]
    queue_path = Path(server.command[server.command.index("--queue") + 1])
    queue = SQLiteQueue(queue_path)
    try:
        assert queue.counts()[State.REJECTED] == 2
    finally:
        queue.close()


def test_an_item_that_cannot_be_written_is_kept_as_its_request_body() -> None:
    deep = b'{"a": ' * 1000 + b"1" + b"}" * 1000
    nested = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "properties": '
    nested += deep + b"}]}"
    huge = b'{"batch": [{"type": "track", "event": "y", "userId": "v", "n": 1e400}]}'
    for body, reason in ((nested, "too_deep"), (huge, "number_out_of_range")):
        prepared = prepare_batch(loads(body), RECEIVED, "shop", body)
        assert [(r.index, r.reason) for r in prepared.rejections] == [(0, reason)]
        assert [e.event for e in prepared.events] == [body]
    assert "1e400" in prepared.rejections[0].message


@pytest.mark.parametrize("kind", [{}, [], ["track"], 1, True])
def test_a_type_that_is_not_a_string_is_invalid_type(kind: Any) -> None:
    body = orjson.dumps({"batch": [{"type": kind, "userId": "u", "event": "x"}]})
    prepared = _batch(body)
    assert [(r.index, r.reason) for r in prepared.rejections] == [(0, "invalid_type")]
