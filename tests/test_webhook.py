"""Segment's Webhooks destination posting to ``/v1/webhook``.

First the parser without a server (one event or an array, Segment's timestamps kept, the
signature check), then a real ``serve`` process delivering to a real sandbox over 127.0.0.1,
sent what Segment's classic Webhooks and Webhooks (Actions) send.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from attentive_router._ingest.parse import (
    MAX_WEBHOOK_EVENTS,
    BodyError,
    prepare_batch,
    prepare_webhook,
    signed_by,
)
from attentive_router._queue.interface import NewEvent

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
