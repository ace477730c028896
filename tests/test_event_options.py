"""Aliases, filters and consent: the ``Config`` options that choose and rename events.

Every case goes through ``route``; mapped bodies are checked against the project's JSON Schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from jsonschema import Draft202012Validator

from attentive_router import Config, Context, Mapped, Outcome, Skipped, body_schema, route, to_json
from attentive_router._transform.options import SEGMENT_V1_ALIASES, EventFilter
from attentive_router._transform.router import DEFAULT_DISPATCH, mapped_event_names
from attentive_router._transform.source import shown

RECEIVED_AT = datetime(2026, 1, 8, 14, 0, tzinfo=UTC)
PRODUCT = {"product_id": "sku-1", "name": "Tee", "price": 19.5, "quantity": 1}
PROPERTIES = {"order_id": "o-1", "currency": "EUR", "products": [PRODUCT], **PRODUCT}

V1_REQUESTS = {
    "Viewed Product Category": ("/v1/events/custom", "Product List Viewed"),
    "Viewed Product": ("/v1/events/ecommerce/product-view", None),
    "Added Product": ("/v1/events/ecommerce/add-to-cart", None),
    "Removed Product": ("/v1/events/custom", "Product Removed"),
    "Completed Order": ("/v1/events/ecommerce/purchase", None),
    "Started Order": ("/v1/events/custom", "Checkout Started"),
    "Updated Order": ("/v1/events/custom", "Order Updated"),
    "Refunded Order": ("/v1/events/custom", "Order Refunded"),
    "Searched Products": ("/v1/events/custom", "Products Searched"),
    "Viewed Promotion": ("/v1/events/custom", "Promotion Viewed"),
    "Clicked Promotion": ("/v1/events/custom", "Promotion Clicked"),
}
"""Each built-in v1 name: the request path its v2 name makes, and the custom event type."""


def _route(event: Any, **options: Any) -> Outcome:
    return route(event, Context(RECEIVED_AT, Config(**options)))


def _track(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "userId": "u1",
        "messageId": "m-1",
        "context": {"traits": {"email": "jane@example.com"}, **extra},
        "properties": dict(PROPERTIES),
    }


def _page(**context: Any) -> dict[str, Any]:
    return {"type": "page", "userId": "u1", "properties": {"path": "/"}, "context": context}


def _identify(**context: Any) -> dict[str, Any]:
    traits = {"email": "jane@example.com", "plan": "pro"}
    return {"type": "identify", "userId": "u1", "traits": traits, "context": context}


def _valid(outcome: Outcome) -> Mapped:
    assert isinstance(outcome, Mapped), outcome
    for request in outcome.requests:
        schema = body_schema(type(request.body).__name__)
        errors = list(Draft202012Validator(schema).iter_errors(to_json(request.body)))
        assert errors == []
    return outcome


def _codes(outcome: Mapped) -> list[str]:
    return [warning.code for warning in outcome.warnings]


def _skipped(outcome: Outcome, reason: str) -> str:
    assert isinstance(outcome, Skipped), outcome
    assert outcome.reason == reason, outcome.message
    return outcome.message


# --- aliases -----------------------------------------------------------------------------------


def test_mapped_event_names_are_the_track_names_of_the_dispatch_table() -> None:
    names = {event for call, event in DEFAULT_DISPATCH if call == "track" and event != "*"}
    assert mapped_event_names() == names
    assert "Order Completed" in names
    assert "*" not in names


def test_every_built_in_alias_is_tested_and_goes_to_a_mapped_name() -> None:
    assert set(SEGMENT_V1_ALIASES) == set(V1_REQUESTS)
    assert set(SEGMENT_V1_ALIASES.values()) <= mapped_event_names()
    assert not set(SEGMENT_V1_ALIASES) & mapped_event_names()


@pytest.mark.parametrize("v1_name", sorted(V1_REQUESTS))
def test_each_segment_v1_name_is_sent_as_its_v2_name(v1_name: str) -> None:
    v2_name = SEGMENT_V1_ALIASES[v1_name]
    path, custom_type = V1_REQUESTS[v1_name]
    aliased = _valid(_route(_track(v1_name)))
    direct = _valid(_route(_track(v2_name)))
    assert [request.path for request in aliased.requests] == [path]
    assert aliased.requests == direct.requests
    body = to_json(aliased.requests[0].body)
    if custom_type is not None:
        assert body["type"] == custom_type == v2_name
    assert _codes(aliased) == ["aliased_event", *_codes(direct)]
    message = aliased.warnings[0].message
    assert message == (f"event {v1_name!r} is sent as {v2_name!r} (Segment eCommerce v1 name)")


def test_built_in_aliases_can_be_turned_off() -> None:
    outcome = _valid(_route(_track("Completed Order"), builtin_aliases=False))
    assert outcome.requests[0].path == "/v1/events/custom"
    assert to_json(outcome.requests[0].body)["type"] == "Completed Order"
    assert "aliased_event" not in _codes(outcome)
    skipped = _route(_track("Completed Order"), builtin_aliases=False, unnamed_track="skip")
    _skipped(skipped, "unmapped_event")


def test_a_user_alias_renames_before_dispatch() -> None:
    outcome = _valid(_route(_track("Purchase"), aliases={"Purchase": "Order Completed"}))
    assert [request.path for request in outcome.requests] == ["/v1/events/ecommerce/purchase"]
    assert outcome.warnings[0].code == "aliased_event"
    assert outcome.warnings[0].message == "event 'Purchase' is sent as 'Order Completed' (alias)"


def test_a_user_alias_wins_over_a_built_in_one() -> None:
    outcome = _valid(
        _route(_track("Viewed Product"), aliases={"Viewed Product": "Product Clicked"})
    )
    assert to_json(outcome.requests[0].body)["type"] == "Product Clicked"
    assert outcome.warnings[0].message.endswith("(alias)")


def test_an_unaliased_name_is_not_renamed() -> None:
    outcome = _valid(_route(_track("Purchased"), aliases={"Purchase": "Order Completed"}))
    assert to_json(outcome.requests[0].body)["type"] == "Purchased"
    assert "aliased_event" not in _codes(outcome)


def test_a_near_miss_of_an_alias_warns_and_names_its_target() -> None:
    outcome = _valid(_route(_track("completed order")))
    assert to_json(outcome.requests[0].body)["type"] == "completed order"
    (warning,) = (w for w in outcome.warnings if w.code == "near_miss_event_name")
    assert "'Completed Order'" in warning.message
    assert "'Order Completed'" in warning.message
    skipped = _skipped(
        _route(_track("purchase "), aliases={"Purchase": "Order Completed"}, unnamed_track="skip"),
        "unmapped_event",
    )
    assert "did you mean 'Purchase' (an alias of 'Order Completed')?" in skipped


def test_alias_targets_must_be_mapped_names() -> None:
    with pytest.raises(ValueError, match=r"alias 'Purchase' -> 'Order Complete': unknown") as error:
        Config(aliases={"Purchase": "Order Complete"})
    assert "'Order Completed'" in str(error.value)
    assert "'Product Viewed'" in str(error.value)
    with pytest.raises(ValueError, match="unknown target"):
        Config(aliases={"Purchase": "*"})
    with pytest.raises(ValueError, match="non-empty string"):
        Config(aliases={" ": "Order Completed"})
    with pytest.raises(ValueError, match="cannot alias itself"):
        Config(aliases={"Order Completed": "Order Completed"})
    with pytest.raises(TypeError):
        Config(aliases=[("Purchase", "Order Completed")])  # type: ignore[arg-type]


def test_config_with_options_stays_hashable_and_equal_by_value() -> None:
    options: dict[str, Any] = {
        "aliases": {"Purchase": "Order Completed"},
        "filters": EventFilter(deny_events=["Page *"]),
        "consent_category": "Advertising",
    }
    first, second = Config(**options), Config(**options)
    assert first == second
    assert hash(first) == hash(second)
    assert first != Config()
    assert first.filters.deny_events == ("Page *",)
    assert Config().aliases == {}
    assert Config().builtin_aliases is True
    assert Config().filters == EventFilter()
    assert Config().consent_category is None
    assert Config().consent_missing == "send"


# --- filters -----------------------------------------------------------------------------------


def test_a_call_type_filter_skips_and_names_the_rule() -> None:
    message = _skipped(_route(_page(), filters=EventFilter(deny_calls=["page"])), "filtered")
    assert message == "page call matches deny_calls 'page'"
    _valid(_route(_track("Order Completed"), filters=EventFilter(deny_calls=["page"])))
    allow = EventFilter(allow_calls=["track"])
    message = _skipped(_route(_identify(), filters=allow), "filtered")
    assert message == "identify call matches none of allow_calls ('track')"
    _valid(_route(_track("Order Completed"), filters=allow))


def test_an_exact_event_name_filter_skips_only_that_name() -> None:
    deny = EventFilter(deny_events=["Order Completed"])
    message = _skipped(_route(_track("Order Completed"), filters=deny), "filtered")
    assert message == "track 'Order Completed' matches deny_events 'Order Completed'"
    _valid(_route(_track("Order Completed Twice"), filters=deny))
    _valid(_route(_track("order completed"), filters=deny))
    _valid(_route(_page(), filters=deny))


def test_a_glob_event_filter_skips_every_name_it_matches() -> None:
    deny = EventFilter(deny_events=["Page *"])
    assert "matches deny_events 'Page *'" in _skipped(
        _route(_track("Page Scrolled"), filters=deny), "filtered"
    )
    _valid(_route(_track("Pages Scrolled"), filters=deny))
    allow = EventFilter(allow_events=["Order *", "Product ?iewed"])
    _valid(_route(_track("Order Completed"), filters=allow))
    _valid(_route(_track("Product Viewed"), filters=allow))
    message = _skipped(_route(_track("Cart Viewed"), filters=allow), "filtered")
    assert (
        message == "track 'Cart Viewed' matches none of allow_events ('Order *', 'Product ?iewed')"
    )
    _valid(_route(_page(), filters=allow))  # event lists judge track calls only


def test_deny_wins_over_allow() -> None:
    both = EventFilter(allow_events=["Order *"], deny_events=["Order Cancelled"])
    _valid(_route(_track("Order Completed"), filters=both))
    assert "deny_events" in _skipped(_route(_track("Order Cancelled"), filters=both), "filtered")


def test_event_filters_see_the_name_as_received_before_aliases() -> None:
    deny = EventFilter(deny_events=["Completed Order"])
    _skipped(_route(_track("Completed Order"), filters=deny), "filtered")
    deny_v2 = EventFilter(deny_events=["Order Completed"])
    _valid(_route(_track("Completed Order"), filters=deny_v2))


def test_filters_come_before_the_shape_checks_and_the_name_checks() -> None:
    deny = EventFilter(deny_calls=["track"])
    malformed = {"type": "track", "event": "X", "userId": "u1", "properties": "not an object"}
    _skipped(_route(malformed, filters=deny), "filtered")
    nameless = {"type": "track", "userId": "u1"}
    _skipped(_route(nameless, filters=deny), "filtered")
    # A track call without a usable name is not judged by the event lists: it is rejected.
    allow = EventFilter(allow_events=["Order *"])
    outcome = _route(nameless, filters=allow)
    assert not isinstance(outcome, Mapped)
    assert outcome.reason == "missing_event_name"


def test_filter_patterns_are_checked() -> None:
    with pytest.raises(ValueError, match="matches no call type"):
        EventFilter(allow_calls=["Track"])
    with pytest.raises(ValueError, match="non-empty string"):
        EventFilter(deny_events=[""])
    with pytest.raises(TypeError, match="not the string"):
        EventFilter(deny_events="Page *")
    assert EventFilter(allow_calls=["*"]).allow_calls == ("*",)


# --- consent -----------------------------------------------------------------------------------


def _consent(value: Any) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": {"Advertising": value, "Other": True}}}


EVENTS = {
    "track": lambda **context: _track("Order Completed", **context),
    "page": _page,
    "identify": _identify,
}


@pytest.mark.parametrize("call", sorted(EVENTS))
def test_consent_true_sends_and_false_skips(call: str) -> None:
    make = EVENTS[call]
    sent = _valid(_route(make(**_consent(value=True)), consent_category="Advertising"))
    assert sent == _valid(_route(make(**_consent(value=True))))
    if call == "identify":  # both Identity and Custom Attributes obey it
        assert len(sent.requests) == 2
    message = _skipped(
        _route(make(**_consent(value=False)), consent_category="Advertising"), "no_consent"
    )
    assert message.startswith("context.consent.categoryPreferences['Advertising'] is false")
    # Another category's refusal does not matter.
    _valid(_route(make(**_consent(value=False)), consent_category="Other"))
    # Without consent_category nothing is checked.
    _valid(_route(make(**_consent(value=False))))


@pytest.mark.parametrize("call", sorted(EVENTS))
def test_absent_consent_follows_consent_missing(call: str) -> None:
    make = EVENTS[call]
    _valid(_route(make(), consent_category="Advertising"))
    message = _skipped(
        _route(make(), consent_category="Advertising", consent_missing="skip"), "no_consent"
    )
    assert "no consent information for 'Advertising'" in message
    other = {"consent": {"categoryPreferences": {"Analytics": True}}}
    message = _skipped(
        _route(make(**other), consent_category="Advertising", consent_missing="skip"),
        "no_consent",
    )
    assert "categoryPreferences has no 'Advertising'" in message


@pytest.mark.parametrize("value", ["true", "false", 1, 0, None, [], {"granted": True}])
@pytest.mark.parametrize("call", sorted(EVENTS))
@pytest.mark.parametrize("missing", ["send", "skip"])
def test_a_non_boolean_consent_is_not_consent_and_is_warned_about(
    call: str, value: Any, missing: Literal["send", "skip"]
) -> None:
    """A preference present but not a boolean is skipped whatever consent_missing says."""
    make = EVENTS[call]
    outcome = _route(
        make(**_consent(value)), consent_category="Advertising", consent_missing=missing
    )
    message = _skipped(outcome, "no_consent")
    assert "not true or false" in message
    assert isinstance(outcome, Skipped)
    (warning,) = outcome.warnings
    assert warning.code == "non_boolean_consent"
    assert f"categoryPreferences['Advertising'] is {shown(value)}" in warning.message


def test_consent_holders_that_are_not_objects_count_as_no_information() -> None:
    event = _track("Order Completed", consent="granted")
    message = _skipped(
        _route(event, consent_category="Advertising", consent_missing="skip"), "no_consent"
    )
    assert "context.consent is 'granted', not an object" in message


def test_consent_options_are_checked() -> None:
    with pytest.raises(ValueError, match="consent_category"):
        Config(consent_category=" ")
    with pytest.raises(ValueError, match="consent_missing"):
        Config(consent_missing="drop")  # type: ignore[arg-type]


def test_filters_come_before_consent() -> None:
    outcome = _route(
        _track("Order Completed", **_consent(value=False)),
        consent_category="Advertising",
        filters=EventFilter(deny_events=["Order *"]),
    )
    _skipped(outcome, "filtered")


def test_consent_comes_before_the_identifier_check() -> None:
    anonymous = {"type": "page", "anonymousId": "a1", "context": _consent(value=False)}
    _skipped(_route(anonymous), "no_identifier")
    _skipped(_route(anonymous, consent_category="Advertising"), "no_consent")
