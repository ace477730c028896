"""Queue entries made from input events: keys, ordering keys, and inputs that cannot be stored."""

from __future__ import annotations

import orjson

from attentive_router._queue.intake import from_item, new_event
from attentive_router._transform.reader import Item


def test_message_id_is_the_key_and_user_id_orders() -> None:
    entry = new_event({"type": "track", "messageId": "m-1", "userId": 42}, 10.0, "site")
    assert (entry.key, entry.user, entry.source, entry.received_at) == (
        "m-1",
        "user:42",
        "site",
        10.0,
    )
    assert orjson.loads(entry.event)["userId"] == 42
    assert entry.rejected is None


def test_anonymous_id_orders_when_there_is_no_user_id() -> None:
    assert new_event({"anonymousId": "a-1", "userId": " "}, 0.0).user == "user:a-1"


def test_content_key_is_stable_and_ignores_key_order() -> None:
    one = new_event({"type": "page", "anonymousId": "a", "name": "Home"}, 1.0)
    two = new_event({"name": "Home", "anonymousId": "a", "type": "page"}, 2.0)
    other = new_event({"type": "page", "anonymousId": "a", "name": "Cart"}, 1.0)
    assert one.key == two.key
    assert one.key.startswith("sha256:")
    assert other.key != one.key


def test_events_without_any_id_are_ordered_on_their_own() -> None:
    entry = new_event({"type": "track", "event": "x"}, 0.0)
    assert entry.user == f"event:{entry.key}"


def test_deeper_than_orjson_writes_is_still_stored() -> None:
    deep: object = {"leaf": 1}
    for _ in range(300):
        deep = {"x": deep}
    entry = new_event({"type": "track", "userId": "u", "properties": deep}, 0.0)
    assert entry.rejected is None
    assert entry.event.count(b'{"x":') == 300


def test_too_deep_to_write_is_rejected_with_its_reason() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    entry = new_event(deep, 0.0)
    assert entry.rejected is not None
    assert entry.rejected[0] == "too_deep"
    assert new_event(deep, 0.0).key != entry.key  # two such events are not duplicates


def test_lone_surrogate_is_rejected_as_an_invalid_string() -> None:
    entry = new_event({"type": "track", "userId": "u\ud800"}, 0.0)
    assert entry.rejected is not None
    assert entry.rejected[0] == "invalid_string"
    assert "surrogate" in entry.rejected[1]


def test_unreadable_item_keeps_its_bytes() -> None:
    item = Item(3, error="line 3: not valid JSON (x)", raw=b"{oops\n")
    entry = from_item(item, 5.0, "file")
    assert entry.rejected == ("invalid_json", "line 3: not valid JSON (x)")
    assert entry.event == b"{oops\n"
    assert entry.key == from_item(item, 6.0, "file").key
