"""Segment's Webhooks destination posting to ``/v1/webhook``.

First the parser without a server (one event or an array, Segment's timestamps kept, the
signature check), then a real ``serve`` process delivering to a real sandbox over 127.0.0.1,
sent what Segment's classic Webhooks and Webhooks (Actions) send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._ingest.parse import (
    MAX_WEBHOOK_EVENTS,
    BodyError,
    prepare_batch,
    prepare_webhook,
    signed_by,
)
from attentive_router._ingest.server import ServeConfigError, parse_webhook_secrets
from attentive_router._queue.interface import NewEvent, Record, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

RECEIVED = datetime(2026, 1, 8, 14, 0, 0, tzinfo=UTC).timestamp()
RECEIVED_AT = "2026-01-08T14:00:00.000Z"
SOURCE = "shop"
SHOP_SECRET = "whsec-shop-7f3a9c"
OTHER_SECRET = "whsec-other-0b12"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def segment_event(kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    """An event as Segment's servers relay it: the client's clock 2 hours fast, corrected.

    ``originalTimestamp`` and ``sentAt`` are the client's; ``receivedAt`` is Segment's, and
    ``timestamp`` (``at``) is what Segment made of them.
    """
    message_id = uid(kind)
    return {
        "messageId": message_id,
        "type": kind,
        "userId": f"user-{message_id}",
        "anonymousId": f"anon-{message_id}",
        "originalTimestamp": iso(at + timedelta(hours=2)),
        "sentAt": iso(at + timedelta(hours=2, seconds=1)),
        "receivedAt": iso(at + timedelta(seconds=1)),
        "timestamp": iso(at),
        "context": {"library": {"name": "analytics.js", "version": "next-1.70.0"}},
        "integrations": {},
        "channel": "client",
        "projectId": "proj-9Xw",
        "version": 2,
        **fields,
    }


def stored(entry: NewEvent) -> dict[str, Any]:
    assert entry.rejected is None, entry.rejected
    event: dict[str, Any] = orjson.loads(entry.event)
    return event


def body_error(document: Any) -> BodyError:
    with pytest.raises(BodyError) as caught:
        prepare_webhook(document, RECEIVED, SOURCE)
    return caught.value


# --- the parser, without a server -------------------------------------------------------------

AT = datetime(2026, 1, 8, 13, 55, 0, 250_000, tzinfo=UTC)


def test_single_event_keeps_segments_times_where_a_batch_would_correct_them() -> None:
    event = segment_event("track", AT, event="Product Viewed")
    prepared = prepare_webhook(event, RECEIVED, SOURCE)
    assert prepared.rejections == []
    [entry] = prepared.events
    assert (entry.key, entry.source, entry.received_at) == (event["messageId"], SOURCE, RECEIVED)
    assert stored(entry) == event
    # The same event through /v1/batch gets the client's clock corrected a second time.
    [again] = prepare_batch({"batch": [event]}, RECEIVED, SOURCE).events
    assert stored(again)["timestamp"] == "2026-01-08T13:59:59.000Z"
    assert stored(again)["receivedAt"] == RECEIVED_AT


@pytest.mark.parametrize("kind", ["identify", "page", "track", "screen", "group", "alias"])
def test_each_event_of_an_array_is_routed_by_its_own_type(kind: str) -> None:
    fields = {"event": "Order Completed"} if kind == "track" else {}
    items = [segment_event(kind, AT, **fields), segment_event("identify", AT)]
    prepared = prepare_webhook(items, RECEIVED, SOURCE)
    assert prepared.rejections == []
    assert [stored(entry) for entry in prepared.events] == items


def test_missing_times_are_filled_without_correcting_the_clock() -> None:
    event = segment_event("page", AT)
    for name in ("receivedAt", "timestamp", "sentAt"):
        del event[name]
    result = stored(prepare_webhook(event, RECEIVED, SOURCE).events[0])
    assert result["receivedAt"] == RECEIVED_AT
    assert result["timestamp"] == event["originalTimestamp"]
    assert "sentAt" not in result
    del event["originalTimestamp"]
    result = stored(prepare_webhook(event, RECEIVED, SOURCE).events[0])
    assert result["timestamp"] == result["receivedAt"] == RECEIVED_AT


def test_array_item_that_breaks_segments_rules_is_stored_rejected() -> None:
    good = segment_event("identify", AT)
    late = segment_event("track", AT, event="Order Completed", receivedAt="yesterday")
    items = [good, 42, ["nested"], late]
    prepared = prepare_webhook(items, RECEIVED, SOURCE, raw=orjson.dumps(items))
    assert [(r.index, r.reason) for r in prepared.rejections] == [
        (1, "not_an_object"),
        (2, "not_an_object"),
        (3, "invalid_timestamp"),
    ]
    assert prepared.rejections[2].message == "receivedAt 'yesterday' is not an ISO 8601 timestamp"
    assert stored(prepared.events[0]) == good
    assert [e.rejected[0] if e.rejected else None for e in prepared.events] == [
        None,
        "not_an_object",
        "not_an_object",
        "invalid_timestamp",
    ]
    assert prepared.events[1].event == b"42"
    assert prepared.events[2].event == b'["nested"]'


def test_single_event_that_breaks_segments_rules_is_refused() -> None:
    error = body_error({"type": "track", "userId": "u", "messageId": "m"})
    assert (error.status, error.code) == (400, "missing_event_name")
    error = body_error({"type": "purchase", "userId": "u"})
    assert (error.status, error.code) == (400, "invalid_type")


@pytest.mark.parametrize("document", [42, "events", None, True])
def test_body_neither_object_nor_array_is_refused(document: Any) -> None:
    error = body_error(document)
    assert (error.status, error.code) == (400, "not_an_object")
    assert error.message.startswith("expected an event (a JSON object) or an array of events")


def test_array_holds_at_most_4000_events() -> None:
    items = [segment_event("identify", AT) for _ in range(MAX_WEBHOOK_EVENTS)]
    assert len(prepare_webhook(items, RECEIVED, SOURCE).events) == 4000
    error = body_error([*items, segment_event("identify", AT)])
    assert (error.status, error.code) == (400, "too_many_events")
    assert error.message == "the request holds 4,001 events; the limit is 4,000"


def test_empty_array_stores_nothing() -> None:
    prepared = prepare_webhook([], RECEIVED, SOURCE)
    assert (prepared.events, prepared.rejections) == ([], [])


def test_signature_names_the_secret_it_was_made_with() -> None:
    secrets = {SHOP_SECRET: "shop", OTHER_SECRET: "other"}
    body = orjson.dumps([segment_event("identify", AT)])
    assert signed_by(body, sign(body, SHOP_SECRET), secrets) == "shop"
    assert signed_by(body, sign(body, OTHER_SECRET), secrets) == "other"
    assert signed_by(body, f" {sign(body, SHOP_SECRET).upper()} ", secrets) == "shop"


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "not-hex",
        sign(b"another body", SHOP_SECRET),
        sign(b"[]", "whsec-unknown"),
        hashlib.sha1(b"[]", usedforsecurity=False).hexdigest(),  # no secret at all
        hmac.new(SHOP_SECRET.encode(), b"[]", hashlib.sha256).hexdigest(),
        sign(b"[]", SHOP_SECRET)[:-1],
        "\udcff",
    ],
)
def test_signature_of_another_body_or_secret_names_nothing(signature: str) -> None:
    assert signed_by(b"[]", signature, {SHOP_SECRET: "shop", OTHER_SECRET: "other"}) is None


def test_signature_without_secrets_names_nothing() -> None:
    assert signed_by(b"[]", sign(b"[]", SHOP_SECRET), {}) is None


# --- a real server delivering to a real sandbox -----------------------------------------------

SHOP_KEY = "wk_shop_41c8"
OTHER_KEY = "wk_other_d2e0"
SECRETS_ENV = "ATTENTIVE_ROUTER_WEBHOOK_SECRETS"
CUSTOM = "/v1/events/custom"
IDENTITY = "/v1/identity-resolution/user-identifiers"
ATTRIBUTES = "/v1/attributes/custom"
PRODUCT_VIEW = "/v1/events/ecommerce/product-view"
PURCHASE = "/v1/events/ecommerce/purchase"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(no_rate_limits=True) as process:
        yield process


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("webhook") / "queue.db"


@pytest.fixture(scope="module")
def server(sandbox: SandboxProcess, queue_path: Path) -> Iterator[ServeProcess]:
    """Secrets for both write keys, from the environment as the README advises."""
    process = ServeProcess(
        queue=queue_path,
        sandbox=sandbox,
        write_keys=(f"shop={SHOP_KEY}", f"other={OTHER_KEY}"),
        # Attentive's 150 requests/s would make 1,000 events take 7 s; the sandbox has no limit.
        args=["--log-level", "info", "--lock-timeout", "0.5", "--rate", "2000"],
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRETS_ENV, f"shop={SHOP_SECRET},other={OTHER_SECRET}")
        process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Ingest only, and no webhook secret."""
    queue = tmp_path_factory.mktemp("unsigned") / "queue.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(SECRETS_ENV, raising=False)
        process = ServeProcess(queue=queue, write_keys=(f"shop={SHOP_KEY}",)).start()
    try:
        yield process
    finally:
        process.stop()


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def webhook(
    server: ServeProcess,
    body: Any,
    *,
    secret: str | None = SHOP_SECRET,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """Send ``body`` (bytes as they are, else as JSON) as Segment's Webhooks destination does."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0"}
    if secret is not None:
        sent["X-Signature"] = sign(content, secret)
    sent.update(headers or {})
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client:
        return client.request(method, "/v1/webhook", content=content, headers=sent)


def assert_ok(response: httpx.Response, rejected: list[tuple[int, str]] | None = None) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert [(r["index"], r["reason"]) for r in body.get("rejected", [])] == (rejected or [])


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["success"], body["code"]) == (False, code)
    message: str = body["message"]
    return message


def all_records(path: Path) -> list[Record]:
    queue = SQLiteQueue(path)
    try:
        found: list[Record] = []
        while batch := queue.records(limit=1000, after=found[-1].id if found else 0):
            found.extend(batch)
        return found
    finally:
        queue.close()


def by_key(path: Path) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for record in all_records(path):
        found.setdefault(record.key, []).append(record)
    return found


def row_count(path: Path) -> int:
    return len(all_records(path))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServeProcess) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(server.get("/metrics").text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(("attentive_router_" + name, frozenset(labels.items())), 0.0)


def settle(server: ServeProcess, timeout: float = 20.0) -> None:
    """Wait until nothing is queued or in flight."""
    deadline = time.monotonic() + timeout
    while metric(scrape(server), "queue_depth", destination="default") > 0:
        assert time.monotonic() < deadline, "events still queued"
        time.sleep(0.05)


def sent_to(sandbox: SandboxProcess, path: str, user: str) -> list[dict[str, Any]]:
    """The bodies the sandbox accepted at ``path`` for the user with clientUserId ``user``."""
    found = []
    for request in sandbox.requests(path):
        body = request["body"]
        ids = body.get("user", {}).get("externalIdentifiers", {})
        if user in (body.get("clientUserId"), ids.get("clientUserId")):
            found.append(body)
    return found


def recent() -> datetime:
    """Five minutes ago, to the millisecond (fresh enough for the transform)."""
    moment = datetime.now(UTC) - timedelta(minutes=5)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def test_one_event_of_each_call_type_is_delivered_as_segment_sent_it(
    server: ServeProcess, sandbox: SandboxProcess, queue_path: Path
) -> None:
    at = recent()
    email = f"ada.{uuid.uuid4().hex[:6]}@example.com"
    traits = {"email": email, "phone": "+14155550100", "plan": "pro"}
    context = {"traits": {"email": email}, "page": {"url": "https://shop.example/p/tee"}}
    product = {"product_id": "sku-1", "name": "Tee", "price": 19.99, "currency": "USD"}
    events = {
        "identify": segment_event("identify", at, traits=traits),
        "page": segment_event(
            "page", at, name="Pricing", properties={"url": "https://shop.example/pricing"}
        ),
        "viewed": segment_event("track", at, event="Product Viewed", properties=product),
        "order": segment_event(
            "track",
            at,
            event="Order Completed",
            properties={
                "order_id": uid("o"),
                "currency": "USD",
                "products": [{**product, "quantity": 2}],
            },
        ),
        "screen": segment_event("screen", at, name="Cart"),
        "group": segment_event("group", at, groupId="g-1", traits={"name": "Acme"}),
        "alias": segment_event("alias", at, previousId="anon-old"),
    }
    for event in events.values():
        event["context"] = {**event["context"], **context}
        assert_ok(webhook(server, event))
    settle(server)
    records = by_key(queue_path)
    for event in events.values():
        [record] = records[event["messageId"]]
        assert record.source == "shop"
        # Stored as Segment sent it: its receivedAt, and its timestamp not corrected again.
        assert orjson.loads(record.event) == event
    when = iso(at)

    def user(name: str) -> str:
        user_id: str = events[name]["userId"]
        return user_id

    [identity] = sent_to(sandbox, IDENTITY, user("identify"))
    assert identity == {"clientUserId": user("identify"), "email": email, "phone": "+14155550100"}
    [attributes] = sent_to(sandbox, ATTRIBUTES, user("identify"))
    assert attributes["properties"] == {"plan": "pro"}
    [page] = sent_to(sandbox, CUSTOM, user("page"))
    assert page["type"] == "page"
    assert page["externalEventId"] == events["page"]["messageId"]
    assert page["properties"]["url"] == "https://shop.example/pricing"
    assert page["occurredAt"] == when
    assert page["user"]["email"] == email
    [viewed] = sent_to(sandbox, PRODUCT_VIEW, user("viewed"))
    assert viewed["occurredAt"] == when
    assert viewed["items"] == [
        {
            "productId": "sku-1",
            "productVariantId": "sku-1",
            "price": [{"value": 19.99, "currency": "USD"}],
            "name": "Tee",
        }
    ]
    [order] = sent_to(sandbox, PURCHASE, user("order"))
    assert order["orderId"] == events["order"]["properties"]["order_id"]
    assert order["occurredAt"] == when
    assert order["items"][0]["quantity"] == 2
    assert order["user"]["externalIdentifiers"] == {"clientUserId": user("order")}
    for name in ("identify", "page", "viewed", "order"):
        [record] = records[events[name]["messageId"]]
        assert record.state is State.DELIVERED
    for name in ("screen", "group", "alias"):
        [record] = records[events[name]["messageId"]]
        assert (record.state, record.reason) == (State.SKIPPED, "unsupported_call_type")
        assert not any(
            sent_to(sandbox, path, user(name))
            for path in (CUSTOM, IDENTITY, ATTRIBUTES, PRODUCT_VIEW, PURCHASE)
        )


def test_array_of_1000_events_sent_twice_is_delivered_once(
    server: ServeProcess, sandbox: SandboxProcess, queue_path: Path
) -> None:
    at = recent()
    batch = [
        segment_event("track", at, event="Gift Card Redeemed", properties={"amount": n})
        for n in range(1000)
    ]
    ids = {event["messageId"] for event in batch}
    before = scrape(server)
    started = time.monotonic()
    assert_ok(webhook(server, batch))
    assert_ok(webhook(server, batch))  # Segment sending the batch again (a lost 200)
    assert time.monotonic() - started < 10
    after = scrape(server)
    assert (
        metric(after, "events_received_total", source="shop", destination="default")
        - metric(before, "events_received_total", source="shop", destination="default")
        == 2000
    )
    assert (
        metric(after, "events_duplicate_total", source="shop", destination="default")
        - metric(before, "events_duplicate_total", source="shop", destination="default")
        == 1000
    )
    settle(server)
    delivered = [
        request["body"]
        for request in sandbox.requests(CUSTOM)
        if request["body"].get("externalEventId") in ids
    ]
    assert sorted(body["externalEventId"] for body in delivered) == sorted(ids)
    amounts = {body["externalEventId"]: body["properties"]["amount"] for body in delivered}
    assert amounts == {event["messageId"]: event["properties"]["amount"] for event in batch}
    records = by_key(queue_path)
    assert all(len(records[message_id]) == 1 for message_id in ids)
    assert {records[message_id][0].state for message_id in ids} == {State.DELIVERED}


def test_each_secret_labels_its_events_with_its_write_keys_name(
    server: ServeProcess, queue_path: Path
) -> None:
    event = segment_event("identify", recent())
    assert_ok(webhook(server, [event], secret=OTHER_SECRET))
    # The same messageId under the other source is not a duplicate: dedupe is per source.
    assert_ok(webhook(server, [event], secret=SHOP_SECRET))
    records = by_key(queue_path)[event["messageId"]]
    assert sorted(record.source for record in records) == ["other", "shop"]


BAD_SIGNATURE = "X-Signature is not the HMAC-SHA1 of the body with a known webhook secret"
NO_KEY = "no X-Signature and no known write key: sign with the shared secret or send HTTP Basic"
UNKNOWN_KEY = "the write key in the Authorization header is not known"


@pytest.mark.parametrize(
    ("secret", "headers", "expected"),
    [
        pytest.param("whsec-wrong", {}, BAD_SIGNATURE, id="wrong-secret"),
        pytest.param(None, {"X-Signature": "0" * 40}, BAD_SIGNATURE, id="zeros"),
        pytest.param(None, {"X-Signature": ""}, BAD_SIGNATURE, id="empty"),
        pytest.param("whsec-wrong", basic(SHOP_KEY), BAD_SIGNATURE, id="wrong-with-a-write-key"),
        pytest.param(None, {}, NO_KEY, id="missing"),
        pytest.param(None, {"Authorization": "Bearer abc"}, UNKNOWN_KEY, id="missing-bearer"),
        pytest.param(None, basic("wk_unknown"), UNKNOWN_KEY, id="missing-unknown-write-key"),
    ],
)
def test_wrong_or_missing_signature_is_401_and_stores_nothing(
    server: ServeProcess,
    queue_path: Path,
    secret: str | None,
    headers: dict[str, str],
    expected: str,
) -> None:
    marker = uid("secret-marker")
    event = segment_event("track", recent(), event="Signed Up", properties={"marker": marker})
    before = row_count(queue_path)
    samples = scrape(server)
    response = webhook(server, [event], secret=secret, headers=headers)
    assert assert_error(response, 401, "unauthorized") == expected
    assert row_count(queue_path) == before
    requests = ("ingest_requests_total", {"endpoint": "/v1/webhook", "status": "401"})
    assert metric(scrape(server), requests[0], **requests[1]) == (
        metric(samples, requests[0], **requests[1]) + 1
    )
    # The refusal is logged, without the body.
    text = server.stderr()
    line = [orjson.loads(line) for line in text.splitlines() if '"status":401' in line][-1]
    assert (line["level"], line["path"], line["code"]) == ("warning", "/v1/webhook", "unauthorized")
    assert line.get("auth") == ("signature" if expected == BAD_SIGNATURE else None)
    assert marker not in text
    assert event["messageId"] not in text


def test_write_key_authenticates_without_a_signature(
    server: ServeProcess, queue_path: Path
) -> None:
    by_basic = segment_event("identify", recent())
    assert_ok(webhook(server, [by_basic], secret=None, headers=basic(OTHER_KEY)))
    in_body = {**segment_event("identify", recent()), "writeKey": SHOP_KEY}
    assert_ok(webhook(server, in_body, secret=None))
    records = by_key(queue_path)
    assert records[by_basic["messageId"]][0].source == "other"
    [record] = records[in_body["messageId"]]
    assert record.source == "shop"
    assert SHOP_KEY.encode() not in record.event


def test_signature_decides_whatever_the_authorization_header_says(
    server: ServeProcess, queue_path: Path
) -> None:
    event = segment_event("identify", recent())
    headers = {"Authorization": "Bearer set-in-the-destination", "X-Custom": "1"}
    assert_ok(webhook(server, event, headers=headers))
    assert by_key(queue_path)[event["messageId"]][0].source == "shop"


def test_signature_without_a_configured_secret_is_401(unsigned: ServeProcess) -> None:
    event = segment_event("identify", recent())
    message = assert_error(webhook(unsigned, event, headers=basic(SHOP_KEY)), 401, "unauthorized")
    assert "no webhook secret" in message
    assert_ok(webhook(unsigned, event, secret=None, headers=basic(SHOP_KEY)))


OVERSIZE = orjson.dumps(
    [
        {"type": "track", "event": "x", "userId": "u", "properties": {"pad": "x" * 30_000}}
        for _ in range(570)
    ]
)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(OVERSIZE, 400, "body_too_large", id="over-16-mb"),
        pytest.param(orjson.dumps([{}] * 4001), 400, "too_many_events", id="4001-events"),
        pytest.param(b"42", 400, "not_an_object", id="scalar"),
        pytest.param(b"[{", 400, "invalid_json", id="invalid-json"),
        pytest.param(b"", 400, "empty_body", id="empty"),
        pytest.param(
            orjson.dumps({"type": "track", "userId": "u", "messageId": "m"}),
            400,
            "missing_event_name",
            id="bad-single-event",
        ),
    ],
)
def test_bad_request_is_4xx_with_its_code_and_stores_nothing(
    server: ServeProcess, queue_path: Path, body: bytes, status: int, code: str
) -> None:
    before = row_count(queue_path)
    assert_error(webhook(server, body), status, code)
    assert row_count(queue_path) == before


def test_oversize_body_without_a_length_is_refused_while_read(
    server: ServeProcess, queue_path: Path
) -> None:
    assert len(OVERSIZE) > 16 * 1024 * 1024
    before = row_count(queue_path)
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client:
        response = client.post(
            "/v1/webhook",
            content=iter([OVERSIZE[i : i + 65_536] for i in range(0, len(OVERSIZE), 65_536)]),
            headers={"X-Signature": sign(OVERSIZE, SHOP_SECRET)},
        )
    assert "content-length" not in response.request.headers
    message = assert_error(response, 400, "body_too_large")
    assert message == "the request body is larger than 16 MB (decompressed)"
    assert row_count(queue_path) == before


def test_bad_items_of_an_array_are_stored_rejected_with_their_reason(
    server: ServeProcess, queue_path: Path
) -> None:
    good = segment_event("identify", recent())
    marker = uid("m")
    bad = {"type": "track", "userId": "u", "properties": {"marker": marker}}
    response = webhook(server, [good, 42, bad, "text"])
    assert_ok(response, [(1, "not_an_object"), (2, "missing_event_name"), (3, "not_an_object")])
    [record] = by_key(queue_path)[good["messageId"]]
    assert record.state is not State.REJECTED
    rejected = {r.event: r for r in all_records(queue_path) if r.state is State.REJECTED}
    assert rejected[orjson.dumps(bad)].reason == "missing_event_name"
    assert rejected[b"42"].reason == "not_an_object"
    assert rejected[b'"text"'].source == "shop"


def test_put_and_patch_are_accepted_other_methods_are_405(
    server: ServeProcess, queue_path: Path
) -> None:
    for method in ("PUT", "PATCH"):
        event = segment_event("identify", recent())
        assert_ok(webhook(server, event, method=method))
        assert by_key(queue_path)[event["messageId"]][0].source == "shop"
    response = server.get("/v1/webhook")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, PUT, PATCH"


def test_503_when_the_queue_cannot_be_written_so_segment_retries(
    server: ServeProcess, queue_path: Path
) -> None:
    import sqlite3  # noqa: PLC0415 - only this test holds the queue's lock

    event = segment_event("identify", recent())
    holder = sqlite3.connect(queue_path, isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN IMMEDIATE")
        response = webhook(server, [event])
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert_error(response, 503, "storage_unavailable")
    assert response.headers["retry-after"] == "5"
    assert event["messageId"] not in by_key(queue_path)
    assert_ok(webhook(server, [event]))
    assert len(by_key(queue_path)[event["messageId"]]) == 1


# --- command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (["nobody=whsec-1"], "no write key is named 'nobody'"),
        (["whsec-without-a-name"], "a webhook secret is NAME=SECRET"),
        (["=whsec-1"], "a webhook secret is NAME=SECRET"),
        (["shop="], "the secret must be printable text"),
        (["shop=a\tb"], "the secret must be printable text"),
        (["shop=whsec-1", "other=whsec-1"], "the same secret is given to 'shop'"),
    ],
)
def test_bad_webhook_secret_option_says_what_is_wrong(values: list[str], problem: str) -> None:
    with pytest.raises(ServeConfigError, match=problem):
        parse_webhook_secrets(values, {"shop", "other"})


def test_webhook_secrets_name_their_write_keys() -> None:
    values = ["shop=whsec=with=equals", "other=whsec-2", "shop=whsec-rotated"]
    assert parse_webhook_secrets(values, {"shop", "other"}) == {
        "whsec=with=equals": "shop",
        "whsec-2": "other",
        "whsec-rotated": "shop",
    }


def test_serve_with_a_bad_webhook_secret_exits_2(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "attentive_router", "serve", "--port", "0", "--no-deliver"),
            *("--queue", str(queue), "--write-key", f"shop={SHOP_KEY}"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, SECRETS_ENV: "nobody=whsec-1"},
    )
    assert result.returncode == 2
    assert result.stderr == (
        "attentive-router serve: webhook secret for 'nobody': no write key is named 'nobody' "
        "(name it with --write-key NAME=KEY)\n"
    )
    assert not queue.exists()
