"""``attentive-router serve`` over HTTP: a real server process on 127.0.0.1, its queue file read
after each request, its /metrics parsed and its logs read.

One ingest-only server (with CORS for one origin) serves most tests; one server delivering to
a sandbox serves the delivery metrics. Every test uses its own messageIds and user ids, so
the shared servers' earlier requests do not matter.
"""

from __future__ import annotations

import base64
import gzip
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import Record, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

SHOP_KEY = "wk_shop_5d1e"
OTHER_KEY = "wk_other_93aa"
WRITE_KEYS = (f"shop={SHOP_KEY}", f"other={OTHER_KEY}")
ORIGIN = "https://shop.example"
SINGLE_CALLS = ("track", "page", "identify", "screen", "group", "alias")
INGEST_PATHS = ("/v1/batch", "/v1/import", *(f"/v1/{call}" for call in SINGLE_CALLS))
CUSTOM = "/v1/events/custom"
IDENTITY = "/v1/identity-resolution/user-identifiers"

DEAD_ID = "serve-metrics-dead"
"""The sandbox answers 400 to this event (a dead letter)."""


# --- servers and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "queue.db"


@pytest.fixture(scope="module")
def server(queue_path: Path) -> Iterator[ServeProcess]:
    args = ["--log-level", "info", "--cors-origin", ORIGIN, "--lock-timeout", "0.5"]
    with ServeProcess(queue=queue_path, write_keys=WRITE_KEYS, args=args) as process:
        yield process


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(faults={"scripts": {DEAD_ID: [400]}}, no_rate_limits=True) as process:
        yield process


@pytest.fixture(scope="module")
def delivering_queue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("delivering") / "queue.db"


@pytest.fixture(scope="module")
def delivering(sandbox: SandboxProcess, delivering_queue: Path) -> Iterator[ServeProcess]:
    with ServeProcess(
        queue=delivering_queue, sandbox=sandbox, write_keys=("metered=wk_metered",)
    ) as process:
        yield process


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def basic(key: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{key}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def post(
    server: ServeProcess,
    path: str,
    body: Any,
    *,
    key: str | None = SHOP_KEY,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` (bytes as they are, anything else as JSON) with Basic auth for ``key``."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json"}
    if key is not None:
        sent.update(basic(key))
    sent.update(headers or {})
    return server.post(path, content=content, headers=sent)


def track(message_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Signed Up",
        "messageId": message_id,
        "userId": f"user-{message_id}",
        **fields,
    }


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "code", "message"}
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    message: str = body["message"]
    return message


def assert_ok(response: httpx.Response, rejected: list[tuple[int, str]] | None = None) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if not rejected:
        assert body == {"success": True}
        return
    assert set(body) == {"success", "rejected"}
    assert body["success"] is True
    assert [(r["index"], r["reason"]) for r in body["rejected"]] == rejected
    assert all(set(r) == {"index", "reason", "message"} for r in body["rejected"])


def all_records(path: Path) -> list[Record]:
    queue = SQLiteQueue(path)
    try:
        found: list[Record] = []
        while batch := queue.records(limit=1000, after=found[-1].id if found else 0):
            found.extend(batch)
        return found
    finally:
        queue.close()


def records_of(path: Path, key: str) -> list[Record]:
    return [r for r in all_records(path) if r.key == key]


def only_record(path: Path, key: str) -> Record:
    [record] = records_of(path, key)
    return record


def stored_event(record: Record) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(record.event)
    return event


def row_count(path: Path) -> int:
    queue = SQLiteQueue(path)
    try:
        return sum(queue.counts().values())
    finally:
        queue.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServeProcess) -> Samples:
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(("attentive_router_" + name, frozenset(labels.items())), 0.0)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data)


# --- bad input: the request as a whole --------------------------------------------------------

DEEP = b"[" * 5000 + b"]" * 5000
OVERSIZE_BATCH = orjson.dumps({"batch": [track("big", properties={"pad": "x" * 520_000})]})
OVERSIZE_SINGLE = orjson.dumps({"userId": "u", "event": "x", "properties": {"pad": "x" * 33_000}})
TOO_MANY = orjson.dumps({"batch": [{}] * 2501})
GZIP = {"Content-Encoding": "gzip"}

BAD_BODIES = [
    ("invalid-json", "/v1/batch", b'{"batch": [', {}, 400, "invalid_json"),
    ("empty", "/v1/batch", b"", {}, 400, "empty_body"),
    ("empty-single", "/v1/track", b"", {}, 400, "empty_body"),
    ("bom-only", "/v1/batch", b"\xef\xbb\xbf", {}, 400, "empty_body"),
    ("scalar", "/v1/batch", b"42", {}, 400, "invalid_batch"),
    ("string", "/v1/batch", b'"batch"', {}, 400, "invalid_batch"),
    ("array", "/v1/batch", orjson.dumps([track("arr")]), {}, 400, "invalid_batch"),
    ("no-batch-key", "/v1/batch", b'{"events": []}', {}, 400, "invalid_batch"),
    ("array-single", "/v1/track", orjson.dumps([track("arr")]), {}, 400, "not_an_object"),
    ("scalar-single", "/v1/page", b"null", {}, 400, "not_an_object"),
    ("gzip-bomb", "/v1/batch", gzipped(b"\0" * 10_000_000), GZIP, 400, "body_too_large"),
    ("gzip-bomb-single", "/v1/track", gzipped(b"\0" * 1_000_000), GZIP, 400, "body_too_large"),
    ("truncated-gzip", "/v1/batch", gzipped(b'{"batch": []}')[:-6], GZIP, 400, "invalid_gzip"),
    ("not-gzip", "/v1/batch", b'{"batch": []}', GZIP, 400, "invalid_gzip"),
    (
        "gzip-members-two-documents",
        "/v1/batch",
        gzipped(b'{"batch": []}') + gzipped(b'{"batch": []}'),
        GZIP,
        400,
        "invalid_json",
    ),
    ("oversize-batch", "/v1/batch", OVERSIZE_BATCH, {}, 400, "body_too_large"),
    ("oversize-batch-gzip", "/v1/batch", gzipped(OVERSIZE_BATCH), GZIP, 400, "body_too_large"),
    ("oversize-single", "/v1/track", OVERSIZE_SINGLE, {}, 400, "body_too_large"),
    ("too-many-events", "/v1/batch", TOO_MANY, {}, 400, "too_many_events"),
    ("deep-nesting", "/v1/batch", DEEP, {}, 400, "too_deep"),
    ("raw-nul", "/v1/batch", b'{"batch": [], "x": "a\x00b"}', {}, 400, "invalid_json"),
    (
        "bad-envelope-sentAt",
        "/v1/batch",
        b'{"batch": [], "sentAt": "now"}',
        {},
        400,
        "invalid_timestamp",
    ),
    ("single-missing-id", "/v1/track", b'{"event": "x"}', {}, 400, "missing_id"),
    ("single-track-no-event", "/v1/track", b'{"userId": "u"}', {}, 400, "missing_event_name"),
    ("single-bool-id", "/v1/identify", b'{"userId": true}', {}, 400, "invalid_id"),
    ("single-float-id", "/v1/page", b'{"anonymousId": 1.5}', {}, 400, "invalid_id"),
    ("single-object-id", "/v1/page", b'{"userId": {"id": 1}}', {}, 400, "invalid_id"),
    (
        "single-bad-time",
        "/v1/page",
        b'{"userId": "u", "timestamp": "noon"}',
        {},
        400,
        "invalid_timestamp",
    ),
    ("single-surrogate", "/v1/identify", b'{"userId": "u\\ud800"}', {}, 400, "invalid_string"),
    (
        "single-type-mismatch",
        "/v1/page",
        b'{"type": "track", "userId": "u"}',
        {},
        400,
        "type_mismatch",
    ),
    (
        "form",
        "/v1/batch",
        b"batch=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_content_type",
    ),
    (
        "brotli",
        "/v1/batch",
        b'{"batch": []}',
        {"Content-Encoding": "br"},
        415,
        "unsupported_encoding",
    ),
]


class Bad(NamedTuple):
    path: str
    body: bytes
    headers: dict[str, str]
    status: int
    code: str


@pytest.mark.parametrize("case", [pytest.param(Bad(*case[1:]), id=case[0]) for case in BAD_BODIES])
def test_bad_request_gets_its_status_and_code_and_stores_nothing(
    server: ServeProcess, queue_path: Path, case: Bad
) -> None:
    before = row_count(queue_path)
    response = post(server, case.path, case.body, headers=case.headers)
    assert_error(response, case.status, case.code)
    assert row_count(queue_path) == before


def test_oversize_batch_sent_in_chunks_without_a_length_is_refused(
    server: ServeProcess, queue_path: Path
) -> None:
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(OVERSIZE_BATCH), 16_384):
            yield OVERSIZE_BATCH[start : start + 16_384]

    before = row_count(queue_path)
    response = server.post(
        "/v1/batch",
        content=chunks(),
        headers={**basic(SHOP_KEY), "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    message = assert_error(response, 400, "body_too_large")
    assert message == "the request body is larger than 500 KB (decompressed)"
    assert row_count(queue_path) == before


# --- bad input: items of a batch, stored as rejected ------------------------------------------


def _with_marker(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "properties": {"marker": uid("m"), **item.get("properties", {})}}


BAD_ITEMS = [
    ("missing-ids", {"type": "track", "event": "x"}, "missing_id"),
    ("track-without-event", {"type": "track", "userId": "u"}, "missing_event_name"),
    ("unknown-type", {"type": "purchase", "userId": "u"}, "invalid_type"),
    ("missing-type", {"userId": "u", "event": "x"}, "missing_type"),
    ("bool-id", {"type": "track", "event": "x", "userId": False}, "invalid_id"),
    ("float-id", {"type": "track", "event": "x", "userId": 3.25}, "invalid_id"),
    ("object-id", {"type": "track", "event": "x", "anonymousId": {"a": 1}}, "invalid_id"),
    (
        "bool-message-id",
        {"type": "track", "event": "x", "userId": "u", "messageId": True},
        "invalid_id",
    ),
    (
        "non-iso-time",
        {"type": "track", "event": "x", "userId": "u", "timestamp": "1/8/2026"},
        "invalid_timestamp",
    ),
    (
        "year-1-corrected-out-of-range",
        {
            "type": "track",
            "event": "x",
            "userId": "u",
            "timestamp": "0001-01-01T00:00:00Z",
            "sentAt": "9999-12-31T23:59:59Z",
        },
        "invalid_timestamp",
    ),
    (
        "oversize-event",
        {"type": "track", "event": "x", "userId": "u", "properties": {"pad": "x" * 33_000}},
        "event_too_large",
    ),
]


@pytest.mark.parametrize(
    ("item", "reason"), [case[1:] for case in BAD_ITEMS], ids=[case[0] for case in BAD_ITEMS]
)
def test_bad_item_is_stored_rejected_with_its_reason_and_bytes(
    server: ServeProcess, queue_path: Path, item: dict[str, Any], reason: str
) -> None:
    bad = _with_marker(item)
    good = track(uid("good"))
    response = post(server, "/v1/batch", {"batch": [good, bad]})
    assert_ok(response, rejected=[(1, reason)])
    message = response.json()["rejected"][0]["message"]
    assert only_record(queue_path, good["messageId"]).state is State.QUEUED
    [record] = [r for r in all_records(queue_path) if r.event == orjson.dumps(bad)]
    assert (record.state, record.reason, record.message) == (State.REJECTED, reason, message)
    assert record.source == "shop"
    assert record.attempts == 0


def test_lone_surrogate_item_is_rejected_invalid_string(
    server: ServeProcess, queue_path: Path
) -> None:
    good = track(uid("good"))
    body = (
        b'{"batch": [{"type": "track", "event": "x", "userId": "u\\ud800", "messageId": "'
        + uid("sur").encode()
        + b'"}, '
        + orjson.dumps(good)
        + b"]}"
    )
    before = sum(1 for r in all_records(queue_path) if r.reason == "invalid_string")
    response = post(server, "/v1/batch", body)
    assert_ok(response, rejected=[(0, "invalid_string")])
    assert only_record(queue_path, good["messageId"]).state is State.QUEUED
    after = [r for r in all_records(queue_path) if r.reason == "invalid_string"]
    assert len(after) == before + 1
    assert after[-1].state is State.REJECTED


# --- odd but acceptable input -----------------------------------------------------------------


def test_nul_escapes_inside_strings_are_stored(server: ServeProcess, queue_path: Path) -> None:
    message_id = uid("nul")
    body = (
        b'{"batch": [{"type": "track", "event": "a\\u0000b", "userId": "u\\u0000",'
        b' "messageId": "' + message_id.encode() + b'"}]}'
    )
    assert_ok(post(server, "/v1/batch", body))
    event = stored_event(only_record(queue_path, message_id))
    assert (event["event"], event["userId"]) == ("a\x00b", "u\x00")


def test_byte_order_mark_before_the_body_is_accepted(
    server: ServeProcess, queue_path: Path
) -> None:
    message_id = uid("bom")
    body = b"\xef\xbb\xbf" + orjson.dumps({"batch": [track(message_id)]})
    assert_ok(post(server, "/v1/batch", body))
    assert only_record(queue_path, message_id).state is State.QUEUED
    single = uid("bom")
    body = b"\xef\xbb\xbf" + orjson.dumps(track(single))
    assert_ok(post(server, "/v1/track", body, headers={"Content-Type": "text/plain"}))
    assert only_record(queue_path, single).state is State.QUEUED


def test_duplicate_keys_last_one_wins(server: ServeProcess, queue_path: Path) -> None:
    message_id = uid("dup")
    body = (
        b'{"batch": [{"type": "page", "type": "track", "event": "first", "event": "second",'
        b' "userId": "u", "messageId": "' + message_id.encode() + b'"}]}'
    )
    assert_ok(post(server, "/v1/batch", body))
    event = stored_event(only_record(queue_path, message_id))
    assert (event["type"], event["event"]) == ("track", "second")


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_extreme_years_are_stored_as_sent(
    server: ServeProcess, queue_path: Path, moment: str
) -> None:
    message_id = uid("year")
    assert_ok(post(server, "/v1/batch", {"batch": [track(message_id, timestamp=moment)]}))
    record = only_record(queue_path, message_id)
    assert record.state is State.QUEUED
    assert stored_event(record)["timestamp"] == moment


def test_huge_numbers_do_not_fail_the_request(server: ServeProcess, queue_path: Path) -> None:
    good = track(uid("good"))
    body = (
        b'{"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "'
        + uid("huge").encode()
        + b'", "properties": {"inf": 1e400, "big": 1180591620717411303424}}, '
        + orjson.dumps(good)
        + b"]}"
    )
    response = post(server, "/v1/batch", body)
    assert response.status_code == 200, response.text
    assert only_record(queue_path, good["messageId"]).state is State.QUEUED


# --- good paths -------------------------------------------------------------------------------


def _single_body(call: str, message_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"messageId": message_id, "userId": f"user-{message_id}"}
    extras: dict[str, dict[str, Any]] = {
        "track": {"event": "Signed Up", "properties": {"plan": "pro"}},
        "page": {"name": "Home", "properties": {"url": "https://shop.example/"}},
        "identify": {"traits": {"plan": "pro"}},
        "screen": {"name": "Cart"},
        "group": {"groupId": "g-1", "traits": {"name": "Acme"}},
        "alias": {"previousId": "anon-1"},
    }
    return {**fields, **extras[call], "writeKey": SHOP_KEY}


@pytest.mark.parametrize("call", SINGLE_CALLS)
def test_single_call_path_stores_an_event_of_its_type(
    server: ServeProcess, queue_path: Path, call: str
) -> None:
    message_id = uid(call)
    body = _single_body(call, message_id)
    assert_ok(post(server, f"/v1/{call}", body, key=None, headers={"Content-Type": "text/plain"}))
    record = only_record(queue_path, message_id)
    assert (record.state, record.source, record.user) == (
        State.QUEUED,
        "shop",
        f"user:user-{message_id}",
    )
    event = stored_event(record)
    assert event["type"] == call
    assert "writeKey" not in event
    assert SHOP_KEY.encode() not in record.event
    assert {k: v for k, v in event.items() if k in body} == {
        k: v for k, v in body.items() if k != "writeKey"
    }
    assert event["receivedAt"].endswith("Z")


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
def test_batch_and_import_store_every_event(
    server: ServeProcess, queue_path: Path, path: str
) -> None:
    ids = [uid("b") for _ in range(3)]
    body = {
        "batch": [
            track(ids[0], timestamp="2026-01-08T13:59:00Z"),
            {"type": "identify", "messageId": ids[1], "userId": "u-1", "traits": {"plan": "pro"}},
            {"type": "page", "messageId": ids[2], "anonymousId": "a-1", "name": "Home"},
        ],
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
        "writeKey": SHOP_KEY,
        "sentAt": "2026-01-08T14:00:00Z",
    }
    assert_ok(post(server, path, body, key=None))
    events = []
    for message_id in ids:
        record = only_record(queue_path, message_id)
        assert record.state is State.QUEUED
        event = stored_event(record)
        assert event["context"]["library"]["name"] == "analytics-python"
        assert "writeKey" not in event
        events.append(event)
    assert [e["type"] for e in events] == ["track", "identify", "page"]
    # The clock-skew rule with the server's receipt time: the event happened a minute before
    # the client sent it.
    first = events[0]
    received = datetime.fromisoformat(first["receivedAt"])
    assert datetime.fromisoformat(first["timestamp"]) == received - timedelta(minutes=1)
    assert first["sentAt"] == "2026-01-08T14:00:00Z"
    assert first["originalTimestamp"] == "2026-01-08T13:59:00Z"
    assert abs(received.timestamp() - time.time()) < 60


def test_gzip_body_split_over_members_is_accepted(server: ServeProcess, queue_path: Path) -> None:
    message_id = uid("gz")
    body = orjson.dumps({"batch": [track(message_id)]})
    members = gzipped(body[:10]) + gzipped(body[10:])
    assert_ok(post(server, "/v1/batch", members, headers=GZIP))
    assert only_record(queue_path, message_id).state is State.QUEUED


def test_batch_with_one_bad_item_is_200_and_the_item_is_kept_rejected(
    server: ServeProcess, queue_path: Path
) -> None:
    ids = [uid("ok"), uid("ok")]
    bad = {"type": "track", "userId": f"user-{ids[0]}", "properties": {"marker": uid("bad")}}
    body = {"batch": [track(ids[0]), bad, track(ids[1])]}
    response = post(server, "/v1/batch", body)
    assert_ok(response, rejected=[(1, "missing_event_name")])
    assert response.json()["rejected"][0]["message"] == "a track call needs an event name"
    assert [only_record(queue_path, i).state for i in ids] == [State.QUEUED, State.QUEUED]
    [record] = [r for r in all_records(queue_path) if r.event == orjson.dumps(bad)]
    assert record.state is State.REJECTED
    assert record.reason == "missing_event_name"
    assert record.message == "a track call needs an event name"
    assert record.key.startswith("rejected:")


def test_same_message_id_is_stored_once_per_write_key(
    server: ServeProcess, queue_path: Path
) -> None:
    message_id = uid("dedupe")
    first = track(message_id, properties={"n": 1})
    assert_ok(post(server, "/v1/batch", {"batch": [first]}))
    assert_ok(post(server, "/v1/batch", {"batch": [track(message_id, properties={"n": 2})]}))
    assert_ok(post(server, "/v1/track", track(message_id, properties={"n": 3})))
    [record] = records_of(queue_path, message_id)
    assert stored_event(record)["properties"] == {"n": 1}
    twice = uid("twice")
    assert_ok(post(server, "/v1/batch", {"batch": [track(twice), track(twice, event="Again")]}))
    assert stored_event(only_record(queue_path, twice))["event"] == "Signed Up"
    assert_ok(post(server, "/v1/batch", {"batch": [first]}, key=OTHER_KEY))
    assert_ok(post(server, "/v1/batch", {"batch": [first]}, key=OTHER_KEY))
    records = records_of(queue_path, message_id)
    assert sorted(r.source for r in records) == ["other", "shop"]
    assert all(r.state is State.QUEUED for r in records)


def test_resent_batch_without_message_ids_is_stored_once(
    server: ServeProcess, queue_path: Path
) -> None:
    marker = uid("resend")
    body = {"batch": [{"type": "track", "event": "x", "userId": marker}]}
    before = row_count(queue_path)
    assert_ok(post(server, "/v1/batch", body))
    assert_ok(post(server, "/v1/batch", body))
    assert row_count(queue_path) == before + 1


# --- authentication ---------------------------------------------------------------------------

AUTH_CASES = [
    ("basic", basic(SHOP_KEY), None, 200),
    ("basic-with-password", basic(SHOP_KEY, "ignored"), None, 200),
    (
        "basic-without-colon",
        {"Authorization": "Basic " + base64.b64encode(SHOP_KEY.encode()).decode()},
        None,
        200,
    ),
    ("basic-other-key", basic(OTHER_KEY), None, 200),
    ("basic-unknown", basic("wk_nope"), None, 401),
    ("basic-empty-user", basic(""), None, 401),
    ("basic-not-base64", {"Authorization": "Basic !!!not-base64"}, None, 401),
    ("basic-no-value", {"Authorization": "Basic"}, None, 401),
    (
        "basic-not-utf8",
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
        None,
        401,
    ),
    ("bearer", {"Authorization": f"Bearer {SHOP_KEY}"}, None, 401),
    ("bare-key", {"Authorization": SHOP_KEY}, None, 401),
    ("body-key", {}, SHOP_KEY, 200),
    ("body-unknown", {}, "wk_nope", 401),
    ("body-not-a-string", {}, 12345, 401),
    ("missing", {}, None, 401),
    ("unknown-basic-valid-body", basic("wk_nope"), SHOP_KEY, 401),
    ("malformed-basic-valid-body", {"Authorization": "Basic !!!"}, SHOP_KEY, 401),
    ("valid-basic-unknown-body", basic(SHOP_KEY), "wk_nope", 200),
]


class Auth(NamedTuple):
    headers: dict[str, str]
    body_key: Any
    status: int


@pytest.mark.parametrize("case", [pytest.param(Auth(*case[1:]), id=case[0]) for case in AUTH_CASES])
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_write_key_by_basic_auth_or_body(
    server: ServeProcess, queue_path: Path, path: str, case: Auth
) -> None:
    message_id = uid("auth")
    event = track(message_id)
    body: dict[str, Any] = {"batch": [event]} if path == "/v1/batch" else event
    if case.body_key is not None:
        body["writeKey"] = case.body_key
    response = post(server, path, body, key=None, headers=case.headers)
    if case.status == 200:
        assert_ok(response)
        assert len(records_of(queue_path, message_id)) == 1
    else:
        assert_error(response, 401, "unauthorized")
        assert records_of(queue_path, message_id) == []


def test_unauthorized_messages_say_which_key_failed(server: ServeProcess) -> None:
    header = assert_error(
        post(server, "/v1/batch", {"batch": []}, key="wk_nope"), 401, "unauthorized"
    )
    assert header == "the write key in the Authorization header is not known"
    missing = assert_error(post(server, "/v1/batch", {"batch": []}, key=None), 401, "unauthorized")
    assert missing == "no known write key: send it with HTTP Basic or as writeKey"


# --- content types and methods ----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "text/plain;charset=UTF-8",
        "Application/JSON",
        "application/vnd.segment+json",
        None,
    ],
)
def test_json_and_text_plain_are_accepted(
    server: ServeProcess, queue_path: Path, content_type: str | None
) -> None:
    message_id = uid("ct")
    headers = basic(SHOP_KEY)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = orjson.dumps({"batch": [track(message_id)]})
    response = server.post("/v1/batch", content=body, headers=headers)
    assert response.request.headers.get("content-type") == content_type
    assert_ok(response)
    assert len(records_of(queue_path, message_id)) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/html",
        "application/xml",
        "application/octet-stream",
    ],
)
def test_other_content_types_are_415(server: ServeProcess, content_type: str) -> None:
    response = post(server, "/v1/batch", {"batch": []}, headers={"Content-Type": content_type})
    message = assert_error(response, 415, "unsupported_content_type")
    assert message.endswith("is not supported: send application/json")


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd"])
def test_other_content_encodings_are_415(server: ServeProcess, encoding: str) -> None:
    response = post(server, "/v1/batch", {"batch": []}, headers={"Content-Encoding": encoding})
    assert_error(response, 415, "unsupported_encoding")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", INGEST_PATHS)
def test_methods_other_than_post_are_405(server: ServeProcess, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path, trust_env=False, timeout=10)
    message = assert_error(response, 405, "method_not_allowed")
    assert message == f"{method} {path}: events are sent with POST"
    assert response.headers["allow"] == "POST"


def test_unknown_path_is_404(server: ServeProcess) -> None:
    assert post(server, "/v1/events", {"batch": []}).status_code == 404


# --- CORS -------------------------------------------------------------------------------------


def preflight(url: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    return httpx.request("OPTIONS", url + "/v1/track", headers=headers, trust_env=False, timeout=10)


def test_cors_preflight_from_the_configured_origin_is_allowed(server: ServeProcess) -> None:
    response = preflight(server.url, ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"content-type", "authorization", "content-encoding"} <= allowed
    assert response.headers["access-control-max-age"] == "600"


def test_cors_post_from_the_configured_origin_carries_the_allow_header(
    server: ServeProcess,
) -> None:
    response = post(server, "/v1/batch", {"batch": []}, headers={"Origin": ORIGIN})
    assert_ok(response)
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_cors_other_origin_is_not_allowed(server: ServeProcess) -> None:
    response = preflight(server.url, "https://evil.example")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    answer = post(server, "/v1/batch", {"batch": []}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_without_cors_origins_there_are_no_cors_headers(delivering: ServeProcess) -> None:
    response = preflight(delivering.url, ORIGIN)
    assert response.status_code == 405
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    answer = post(
        delivering, "/v1/batch", {"batch": []}, key="wk_metered", headers={"Origin": ORIGIN}
    )
    assert_ok(answer)
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]


# --- /healthz and /metrics --------------------------------------------------------------------


def test_healthz_reports_the_delivery_state(server: ServeProcess, delivering: ServeProcess) -> None:
    for process, state in ((server, "off"), (delivering, "running")):
        response = process.get("/healthz")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "status": "ok",
            "delivery": state,
            "destinations": {"default": {"status": "ok", "delivery": state}},
        }


def test_metrics_count_requests_events_rejections_and_the_queue(
    server: ServeProcess, queue_path: Path
) -> None:
    before = scrape(server)
    ids = [uid("met") for _ in range(3)]
    bad = {"type": "track", "userId": "u", "properties": {"marker": uid("bad")}}
    assert_ok(
        post(server, "/v1/batch", {"batch": [track(ids[0]), bad, track(ids[1])]}),
        [(1, "missing_event_name")],
    )
    assert_ok(post(server, "/v1/batch", {"batch": [track(ids[0])]}))  # a duplicate
    assert_ok(post(server, "/v1/track", track(ids[2]), key=OTHER_KEY))
    assert_error(post(server, "/v1/batch", b"{"), 400, "invalid_json")
    assert_error(post(server, "/v1/page", {"userId": "u"}, key="wk_nope"), 401, "unauthorized")
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("ingest_requests_total", endpoint="/v1/batch", status="200") == 2
    assert delta("ingest_requests_total", endpoint="/v1/batch", status="400") == 1
    assert delta("ingest_requests_total", endpoint="/v1/track", status="200") == 1
    assert delta("ingest_requests_total", endpoint="/v1/page", status="401") == 1
    assert delta("events_received_total", destination="default", source="shop") == 4
    assert delta("events_received_total", destination="default", source="other") == 1
    assert delta("events_duplicate_total", destination="default", source="shop") == 1
    assert delta("events_duplicate_total", destination="default", source="other") == 0
    assert (
        delta(
            "events_total", destination="default", outcome="rejected", reason="missing_event_name"
        )
        == 1
    )
    assert delta("queue_events", state="queued", destination="default") == 3
    assert delta("queue_events", state="rejected", destination="default") == 1
    assert delta("queue_depth", destination="default") == 3
    assert metric(after, "dead_letters", destination="default") == 0
    assert metric(after, "queue_up", destination="default") == 1
    assert metric(after, "ingest_request_seconds_count", endpoint="/v1/batch") >= 3
    # The whole queue, as the file holds it.
    records = all_records(queue_path)
    for state in State:
        assert metric(after, "queue_events", state=state.label, destination="default") == sum(
            1 for r in records if r.state is state
        )
    oldest = min(r.received_at for r in records if r.state is State.QUEUED)
    age = metric(after, "oldest_queued_age_seconds", destination="default")
    assert time.time() - oldest - 5 < age <= time.time() - oldest


def _wait_until_settled(process: ServeProcess, timeout: float = 20.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(process)
        if metric(samples, "queue_depth", destination="default") == 0:
            return samples
        assert time.monotonic() < deadline, "events still queued"
        time.sleep(0.05)


def test_metrics_with_delivery_count_attentive_answers_and_outcomes(
    delivering: ServeProcess, delivering_queue: Path, sandbox: SandboxProcess
) -> None:
    before = scrape(delivering)

    def custom(message_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": "track",
            "event": "Gift Card Redeemed",
            "messageId": message_id,
            "userId": f"user-{message_id}",
            "properties": {"amount": 25},
            "context": {"traits": {"email": f"{message_id}@example.com"}},
            **fields,
        }

    batch = [
        custom(uid("ok")),
        custom(uid("ok")),
        custom(DEAD_ID),
        custom(uid("old"), timestamp="0001-01-01T00:00:00Z"),
        {
            "type": "identify",
            "messageId": uid("id"),
            "userId": "u-id",
            "traits": {"email": "id@example.com"},
        },
        {"type": "screen", "messageId": uid("scr"), "userId": "u-scr", "name": "Home"},
        {"type": "track", "userId": "u-bad"},
    ]
    response = post(delivering, "/v1/batch", {"batch": batch}, key="wk_metered")
    assert_ok(response, [(6, "missing_event_name")])
    after = _wait_until_settled(delivering)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert (
        delta("attentive_requests_total", destination="default", endpoint=CUSTOM, status="200") == 2
    )
    assert (
        delta("attentive_requests_total", destination="default", endpoint=CUSTOM, status="400") == 1
    )
    assert (
        delta("attentive_requests_total", destination="default", endpoint=IDENTITY, status="202")
        == 1
    )
    assert delta("events_total", destination="default", outcome="delivered", reason="") == 3
    assert (
        delta(
            "events_total", destination="default", outcome="dead_lettered", reason="permanent_error"
        )
        == 1
    )
    assert (
        delta(
            "events_total", destination="default", outcome="skipped", reason="unsupported_call_type"
        )
        == 1
    )
    assert (
        delta("events_total", destination="default", outcome="rejected", reason="invalid_timestamp")
        == 1
    )
    assert (
        delta(
            "events_total", destination="default", outcome="rejected", reason="missing_event_name"
        )
        == 1
    )
    assert delta("events_received_total", destination="default", source="metered") == 7
    assert metric(after, "dead_letters", destination="default") == 1
    assert metric(after, "queue_depth", destination="default") == 0
    assert metric(after, "oldest_queued_age_seconds", destination="default") == 0
    assert metric(after, "delivery_paused") == 0
    assert metric(after, "retries_total") == 0
    states = {r.key: (r.state, r.reason) for r in all_records(delivering_queue)}
    assert states[DEAD_ID] == (State.DEAD, "permanent_error")
    assert states[batch[0]["messageId"]] == (State.DELIVERED, None)
    assert states[batch[3]["messageId"]] == (State.REJECTED, "invalid_timestamp")
    assert states[batch[5]["messageId"]] == (State.SKIPPED, "unsupported_call_type")
    delivered_ids = {r["body"].get("externalEventId") for r in sandbox.requests(CUSTOM)}
    assert {batch[0]["messageId"], batch[1]["messageId"]} <= delivered_ids


# --- storage failure --------------------------------------------------------------------------


def test_locked_queue_is_503_and_the_events_are_stored_when_sent_again(
    server: ServeProcess, queue_path: Path
) -> None:
    message_id = uid("locked")
    body = {"batch": [track(message_id)]}
    holder = sqlite3.connect(queue_path, isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN IMMEDIATE")
        response = post(server, "/v1/batch", body)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert_error(response, 503, "storage_unavailable")
    assert response.headers["retry-after"] == "5"
    assert records_of(queue_path, message_id) == []
    assert_ok(post(server, "/v1/batch", body))
    assert len(records_of(queue_path, message_id)) == 1


# --- logs -------------------------------------------------------------------------------------


def test_logs_are_json_lines_and_redact_contact_details_from_rejections(
    server: ServeProcess,
) -> None:
    email = f"jane.{uuid.uuid4().hex[:8]}@example.com"
    phone = "+1 415 555 0173"
    phone_digits = "4155550199"
    batch = [
        {"type": "track", "event": "x", "userId": "u", "timestamp": email},
        {"type": phone, "userId": "u"},
        {"type": "track", "event": "x", "userId": "u", "sentAt": f"call {phone_digits}"},
    ]
    response = post(server, "/v1/batch", {"batch": batch})
    assert_ok(response, [(0, "invalid_timestamp"), (1, "invalid_type"), (2, "invalid_timestamp")])
    # The client is told what it sent; the log is not.
    assert email in response.text
    assert phone in response.text
    lines = [line for line in server.stderr().splitlines() if line.strip()]
    entries = [orjson.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    [entry] = [
        e
        for e in entries
        if len(e.get("rejections", ())) == 3
        and e["rejections"][0]["message"] == "timestamp '[email]' is not an ISO 8601 timestamp"
    ]
    assert entry["rejections"][1]["message"].startswith("type '[phone]' is not a Segment call")
    assert (entry["level"], entry["message"], entry["status"], entry["path"]) == (
        "info",
        "ingest",
        200,
        "/v1/batch",
    )
    assert entry["rejections"][2]["message"] == "sentAt 'call [phone]' is not an ISO 8601 timestamp"
    text = server.stderr()
    for secret in (email, email.split("@", maxsplit=1)[0], phone, phone_digits, "415 555"):
        assert secret not in text


# --- command line -----------------------------------------------------------------------------


def run_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATTENTIVE_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
        check=False,
    )


def test_serve_without_a_write_key_exits_2(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    result = run_serve("--queue", str(queue), "--no-deliver", env={})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "attentive-router serve: no write key: pass --write-key KEY (or NAME=KEY) "
        "or set ATTENTIVE_ROUTER_WRITE_KEYS"
    )
    assert result.stdout == ""
    assert not queue.exists()
    blank = run_serve(
        "--queue", str(queue), "--no-deliver", env={"ATTENTIVE_ROUTER_WRITE_KEYS": " , "}
    )
    assert blank.returncode == 2
    assert "no write key" in blank.stderr


def test_serve_without_a_token_or_no_deliver_exits_2(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    result = run_serve(
        "--queue", str(queue), "--write-key", "wk_1", env={"ATTENTIVE_API_TOKEN": " "}
    )
    assert result.returncode == 2
    assert "no API key: set ATTENTIVE_API_TOKEN or pass --token" in result.stderr
    assert "--no-deliver" in result.stderr
    assert result.stdout == ""
    assert not queue.exists()


@pytest.mark.parametrize("key", ["wk 1", "wk:1", "shop name=wk_1", "=", "shop="])
def test_serve_with_a_malformed_write_key_exits_2(tmp_path: Path, key: str) -> None:
    result = run_serve(
        "--queue", str(tmp_path / "q.db"), "--no-deliver", "--write-key", key, env={}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("attentive-router serve: ")
    assert "write key" in result.stderr
