"""Typed Hypothesis strategies for Segment events, contexts and configurations.

Four families of events:

* ``valid_events``: well-formed identify, page and track calls for every mapped event name
  (the 17 named track events of ``spec/events.csv`` and unnamed ones), with realistic traits
  (email, phone in E.164 and national formats, username, nested and list-valued traits),
  properties (products with ids, variants, prices as numbers or numeric strings, currencies,
  quantities, URLs) and timestamps (fresh, stale, slightly future, missing, garbage).
* ``hostile_events``: valid events with a few fields replaced by hostile values: wrong types,
  blank strings, whitespace identifiers, forbidden characters in event names and property
  keys, huge numbers, deep nesting, empty objects, lists where objects belong, unknown or
  missing ``type``.
* ``deep_events``: valid events holding a value nested up to a given depth.
* ``arbitrary_events`` / ``json_values``: any JSON value as ``orjson.loads`` can return it
  (integers within 64 bits, finite floats, no lone surrogates).

Timestamps are generated relative to ``RECEIVED_AT``; ``contexts`` receive events at that
instant (give or take a minute, written in various UTC offsets). Every strategy is built once,
at import or on first use: building strategies while drawing is what makes Hypothesis slow.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
from hypothesis import strategies as st

from attentive_router import Config, Context
from attentive_router._transform.options import SEGMENT_V1_ALIASES, EventFilter
from attentive_router._transform.router import mapped_event_names

SPEC_DIR = Path(__file__).parent.parent / "spec"

RECEIVED_AT = datetime(2026, 1, 8, 14, 0, 0, 123000, tzinfo=UTC)
"""The receipt time events are generated around."""

REGIONS = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "AU")
"""Real region codes used as ``Config.default_region`` and for example phone numbers."""

FORBIDDEN_IN_TYPE = "\"'(){}[]\\|,"
FORBIDDEN_IN_KEY = '"{}[]\\|'
BLANKS = ("", " ", "   ", "\t", "\n", " \r\n ", "\u00a0", "\u2003", "\u3000")
MAX_ORJSON_DEPTH = 1024
"""``orjson.loads`` refuses documents nested deeper than this."""

JSON = Any
Event = dict[str, Any]
Path_ = tuple[str | int, ...]
Fields = dict[str, st.SearchStrategy[JSON]]


def _track_event_names() -> tuple[str, ...]:
    with (SPEC_DIR / "events.csv").open(encoding="utf-8", newline="") as handle:
        return tuple(
            row["event"].strip()
            for row in csv.DictReader(handle)
            if row["call"].strip() == "track" and row["event"].strip() not in {"", "*"}
        )


NAMED_TRACK_EVENTS = _track_event_names()
"""The 17 track event names the mapping tables name, in ``spec/events.csv`` order."""

ECOMMERCE_EVENTS = ("Product Viewed", "Product Added", "Order Completed")
SINGLE_PRODUCT_EVENTS = frozenset(
    {
        "Product Viewed",
        "Product Added",
        "Product Clicked",
        "Product Removed",
        "Product Added to Wishlist",
    }
)
ORDER_EVENTS = frozenset(
    {
        "Checkout Started",
        "Cart Viewed",
        "Order Completed",
        "Order Updated",
        "Order Refunded",
        "Order Cancelled",
    }
)
UNNAMED_TRACK_EVENTS = (
    "Signed Up",
    "Video Played",
    "Subscription Renewed",
    "Order Shipped",
    "product viewed",
    "Product Viewed ",
    "ORDER COMPLETED",
    "Loyalty Points Earned: Gold",
    "Квиз пройден",
    "注文確認",
    "emoji 🎉 party",
)
"""Track event names no table names (near-misses of named ones included: names are exact)."""


@st.composite
def some_of(draw: st.DrawFn, fields: Fields, max_size: int = 4) -> dict[str, JSON]:
    """An object with a few of ``fields`` (in any order), each drawn from its strategy."""
    keys = draw(st.lists(st.sampled_from(tuple(fields)), unique=True, max_size=max_size))
    return {key: draw(fields[key]) for key in keys}


# --- configuration ---------------------------------------------------------------------------

_CONFIGS = st.one_of(
    st.just(Config()),
    st.builds(
        Config,
        unnamed_track=st.sampled_from(("custom_event", "skip")),
        stale_events=st.sampled_from(("send", "skip")),
        stale_after=st.sampled_from(
            (timedelta(hours=12), timedelta(minutes=1), timedelta(hours=1), timedelta(days=2))
        ),
        strict_property_keys=st.booleans(),
        default_region=st.sampled_from(REGIONS),
    ),
)
_RECEIVED_TIMES = st.builds(
    lambda shift, minutes: (RECEIVED_AT + timedelta(seconds=shift)).astimezone(
        timezone(timedelta(minutes=minutes))
    ),
    st.integers(-60, 60),
    st.sampled_from((0, 0, 60, -300, 330, 345, 600, 840, -720)),
)
_CONTEXTS = st.builds(Context, received_at=_RECEIVED_TIMES, config=_CONFIGS)


def configs() -> st.SearchStrategy[Config]:
    """Every option of ``Config``: the default often, any combination otherwise."""
    return _CONFIGS


def received_times() -> st.SearchStrategy[datetime]:
    """``RECEIVED_AT`` give or take a minute, written in a UTC offset between -12 and +14 h."""
    return _RECEIVED_TIMES


def contexts() -> st.SearchStrategy[Context]:
    """A receipt time near ``RECEIVED_AT`` and any configuration."""
    return _CONTEXTS


# --- JSON --------------------------------------------------------------------------------------

json_integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
"""The integers ``orjson`` reads as integers (larger ones become floats)."""

json_floats = st.floats(allow_nan=False, allow_infinity=False)
json_text = st.text(max_size=12)
json_scalars: st.SearchStrategy[JSON] = st.one_of(
    st.none(), st.booleans(), json_integers, json_floats, json_text
)


@cache
def json_values(max_leaves: int = 20) -> st.SearchStrategy[JSON]:
    """Any JSON value (nested arrays and objects), as a JSON parser would return it."""
    return st.recursive(
        json_scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


@cache
def json_objects(max_leaves: int = 20) -> st.SearchStrategy[dict[str, JSON]]:
    """Any JSON object."""
    return st.dictionaries(st.text(max_size=10), json_values(max_leaves), max_size=6)


EXTRA_KEYS = ("source", "label", "a.b", "", " ", "x|y", 'q"', "{k}", "list", "n", "ok", "ünï")
_EXTRA_FIELDS = st.dictionaries(
    st.sampled_from(EXTRA_KEYS),
    st.one_of(
        json_scalars,
        st.lists(json_scalars, max_size=2),
        st.dictionaries(st.sampled_from(EXTRA_KEYS), json_scalars, max_size=2),
    ),
    max_size=3,
)


def extra_fields() -> st.SearchStrategy[dict[str, JSON]]:
    """A few more fields of the kind sources add: scalars, short lists, small objects."""
    return _EXTRA_FIELDS


def nested(depth: int, leaf: JSON = 1, key: str = "a", *, lists: bool = True) -> JSON:
    """A value ``depth`` containers deep, an object outermost.

    With ``lists`` objects and arrays alternate (``{"a": [{"a": ...}]}``); without, it is
    objects all the way down (``{"a": {"a": ...}}``).
    """
    value = leaf
    for level in range(depth):
        outer_distance = depth - 1 - level
        value = [value] if lists and outer_distance % 2 else {key: value}
    return value


@cache
def deep_values(max_depth: int) -> st.SearchStrategy[JSON]:
    """A value nested up to ``max_depth`` levels (small depths, any depth, and landmarks)."""
    landmarks = sorted({max_depth, *(depth for depth in (64, 256, 512) if depth < max_depth)})
    return st.builds(
        nested,
        st.one_of(st.integers(1, 8), st.integers(1, max_depth), st.sampled_from(landmarks)),
        st.one_of(st.just(1), st.builds(dict), st.builds(list), st.text(max_size=3)),
        st.sampled_from(("a", "x y", "k|")),
        lists=st.booleans(),
    )


# --- identifiers and traits ------------------------------------------------------------------


def _example_phones() -> tuple[str, ...]:
    formats = (
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.RFC3966,
    )
    found: list[str] = []
    for region in REGIONS:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.extend(phonenumbers.format_number(number, fmt) for fmt in formats)
    return tuple(found)


EXAMPLE_PHONES = _example_phones()
"""Real example numbers of ``REGIONS`` in E.164, national, international and RFC 3966 form."""

PLAN_REGIONS = (*REGIONS, "AT", "ID", "KR", "NO", "NU", "SH", "UY")
"""Regions whose numbering plans have fixed, variable, very long or very short numbers."""


def _boundary_phones() -> tuple[str, ...]:
    """Numbers at (and one digit past) the shortest and longest lengths each plan allows.

    The digits come from the region's example number, repeated to the wanted length.
    """
    found: list[str] = []
    for region in PLAN_REGIONS:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        example = phonenumbers.example_number(region)
        if metadata is None or metadata.general_desc is None or example is None:
            continue
        lengths = metadata.general_desc.possible_length
        digits = str(example.national_number) * 4
        wanted = {min(lengths) - 1, min(lengths), max(lengths), max(lengths) + 1}
        found.extend(f"+{metadata.country_code}{digits[:length]}" for length in sorted(wanted))
    return tuple(found)


BOUNDARY_PHONES = _boundary_phones()

COUNTRY_CODES = (
    "1",
    "7",
    "33",
    "43",
    "44",
    "47",
    "49",
    "62",
    "81",
    "91",
    "290",
    "598",
    "683",
    "999",
)
"""Country codes with fixed-length plans (1, 7, 33, 44, 91), variable and very long ones
(43 Austria, 49 Germany, 62 Indonesia, 81 Japan, 598 Uruguay), very short ones (47 Norway,
290 Saint Helena, 683 Niue) and one that is not assigned (999)."""

_COUNTRY_CODE_AND_DIGITS = st.builds(
    lambda cc, length, digits: f"+{cc}{(digits * 18)[:length]}",
    st.sampled_from(COUNTRY_CODES),
    st.integers(1, 18),
    st.text(alphabet="0123456789", min_size=1, max_size=4).filter(lambda text: text[0] != "0"),
)
"""``+`` and a country code, then 1 to 18 digits: too short, right, and too long numbers."""
_PHONES: st.SearchStrategy[JSON] = st.one_of(
    st.sampled_from(EXAMPLE_PHONES),
    st.sampled_from(BOUNDARY_PHONES),
    _COUNTRY_CODE_AND_DIGITS,
    _COUNTRY_CODE_AND_DIGITS,
    st.builds(
        lambda parts, sep: sep.join(parts),
        st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), min_size=1),
        st.sampled_from(("", " ", "-", ".", ") ")),
    ),
    st.sampled_from(EXAMPLE_PHONES).map(lambda text: f" {text} "),
    st.sampled_from(("call me", "+", "+0 123 456 7890", "555-CALL-NOW", "1-800-FLOWERS")),
    st.integers(min_value=0, max_value=10**16),
)

EMAIL_LOCAL = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'!#$&*/=?^`{|}~"
EMAIL_DOMAINS = ("example.com", "mail.example.co.uk", "xn--bcher-kva.example", "localhost", "Ex.IO")
_EMAILS: st.SearchStrategy[JSON] = st.one_of(
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet=EMAIL_LOCAL, min_size=1, max_size=12),
        st.sampled_from(EMAIL_DOMAINS),
    ),
    st.sampled_from(
        (
            "jane.doe@example.com",
            "  Jane.Doe@Example.COM ",
            "o'brien+tag@shop.example.co.uk",
            "user@localhost",
            "not-an-email",
            "two@@example.com",
            "a b@example.com",
            "@example.com",
            "jane@",
        )
    ),
)
_USER_IDS: st.SearchStrategy[JSON] = st.one_of(
    st.uuids().map(str),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.text(min_size=1, max_size=20),
    st.sampled_from(("user_123", "u-" + "x" * 120, " padded ")),
)
_USERNAMES: st.SearchStrategy[JSON] = st.one_of(
    st.builds(
        lambda handle, number: f"{handle}{number}",
        st.sampled_from(("jane", "jdoe_", "j.doe", "Ünsal")),
        st.integers(0, 9999),
    ),
    st.integers(min_value=0, max_value=10**9),
    st.text(min_size=1, max_size=10),
    st.just("n" * 101),
)


def phones() -> st.SearchStrategy[JSON]:
    """Phone numbers as sources send them: E.164, national formats, digit soup, junk."""
    return _PHONES


def emails() -> st.SearchStrategy[JSON]:
    """Email addresses, valid ones mostly, some with whitespace or capitals, some broken."""
    return _EMAILS


def user_ids() -> st.SearchStrategy[JSON]:
    """``userId`` values: UUIDs, database ids (strings and integers), odd strings."""
    return _USER_IDS


def usernames() -> st.SearchStrategy[JSON]:
    """``traits.username``: handles, integers, long ones."""
    return _USERNAMES


ADDRESS_FIELDS: Fields = {
    "city": st.sampled_from(("Berlin", "São Paulo", "")),
    "postal_code": st.sampled_from(("10115", "01310-100")),
    "geo": st.fixed_dictionaries({"lat": json_floats, "lng": json_floats}),
}
TRAIT_FIELDS: Fields = {
    "first_name": st.sampled_from(("Jane", "José", "")),
    "last_name": st.text(max_size=10),
    "age": st.integers(0, 120),
    "vip": st.booleans(),
    "lifetime_value": json_floats,
    "plan": st.fixed_dictionaries({"tier": st.sampled_from(("gold", "silver"))}),
    "address": some_of(ADDRESS_FIELDS),
    "tags": st.lists(st.text(max_size=5), max_size=3),
    "createdAt": st.just("2024-02-29T12:00:00Z"),
    "nothing": st.none(),
    "k" * 201: st.just("long name"),
    " ": st.just("blank name"),
    "a.b": st.just("dotted"),
    "userId": _USER_IDS,
}
IDENTIFIER_FIELDS: Fields = {"email": _EMAILS, "phone": _PHONES, "username": _USERNAMES}
_OTHER_TRAITS = st.one_of(some_of(TRAIT_FIELDS), _EXTRA_FIELDS)
_TRAITS = st.builds(
    lambda others, identifiers: {**others, **identifiers},
    _OTHER_TRAITS,
    st.fixed_dictionaries({}, optional=IDENTIFIER_FIELDS),
)


def other_traits() -> st.SearchStrategy[dict[str, JSON]]:
    """Traits besides the identifiers: names, numbers, nested objects, lists, odd keys."""
    return _OTHER_TRAITS


def traits() -> st.SearchStrategy[dict[str, JSON]]:
    """A traits object: often an email, phone or username, plus other traits."""
    return _TRAITS


# --- time ------------------------------------------------------------------------------------


def _write_time(moment: datetime, style: int) -> str:
    if style == 0:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if style == 1:
        return moment.astimezone(timezone(timedelta(hours=-5))).isoformat()
    if style == 2:
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    if style == 3:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(timespec="seconds")


def event_times(low: timedelta, high: timedelta) -> st.SearchStrategy[str]:
    """An ISO 8601 time between ``low`` and ``high`` before ``RECEIVED_AT`` (various styles)."""
    return st.builds(
        lambda milliseconds, style: _write_time(
            RECEIVED_AT - timedelta(milliseconds=milliseconds), style
        ),
        st.integers(low // timedelta(milliseconds=1), high // timedelta(milliseconds=1)),
        st.integers(0, 4),
    )


fresh_times = event_times(timedelta(0), timedelta(hours=11))
stale_times = event_times(timedelta(hours=13), timedelta(days=60))
future_times = event_times(timedelta(hours=-23), timedelta(0))
garbage_times: st.SearchStrategy[JSON] = st.one_of(
    st.sampled_from(
        (
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-01-08 25:00",
            "1999-12-31T23:59:59Z",
            "2099-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-14:00",
            "   ",
            "",
        )
    ),
    st.integers(0, 2**40),
    json_floats,
    st.booleans(),
    st.text(max_size=10),
)
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")
_TIME_KINDS = st.sampled_from(("fresh", "fresh", "fresh", "stale", "future", "none", "junk"))
_TIME_SOURCES = {
    "fresh": fresh_times,
    "stale": stale_times,
    "future": future_times,
    "junk": garbage_times,
}
_TIME_NAMES = st.lists(st.sampled_from(TIME_FIELDS), min_size=1, max_size=3, unique=True)


@st.composite
def _time_fields(draw: st.DrawFn) -> dict[str, JSON]:
    kind = draw(_TIME_KINDS)
    if kind == "none":
        return {}
    source = _TIME_SOURCES[kind]
    return {name: draw(source) for name in draw(_TIME_NAMES)}


_TIME_FIELDS_STRATEGY = _time_fields()


def time_fields() -> st.SearchStrategy[dict[str, JSON]]:
    """Timestamp fields: fresh mostly, else stale, slightly future, missing or garbage."""
    return _TIME_FIELDS_STRATEGY


# --- properties and products -----------------------------------------------------------------

prices: st.SearchStrategy[JSON] = st.one_of(
    st.integers(0, 10_000),
    st.floats(0, 1e6, allow_nan=False).map(lambda value: round(value, 2)),
    st.sampled_from(("19.99", " 5 ", "0.10", "1e3", "12,50", "free", "", "-3", "1e999")),
    st.decimals(0, 10_000, places=2, allow_nan=False, allow_infinity=False).map(str),
)
currencies: st.SearchStrategy[JSON] = st.sampled_from(
    ("USD", "usd", "EUR", " gbp ", "JPY", "US$", "dollars", "", "ﬀa", "XXXX")
)
quantities: st.SearchStrategy[JSON] = st.one_of(
    st.integers(0, 100), st.sampled_from(("2", "2.0", 1.5, "many", -1, 2**63))
)
product_ids: st.SearchStrategy[JSON] = st.one_of(
    st.builds(
        lambda prefix, number: f"{prefix}-{number}",
        st.sampled_from(("SKU", "P", "ABCD")),
        st.integers(0, 999_999),
    ),
    st.integers(0, 10**12),
    st.sampled_from(("", "  ", "507f1f77bcf86cd799439011")),
)
LONG_URL = "https://shop.example.com/p?" + "q=x&" * 300
urls: st.SearchStrategy[JSON] = st.one_of(
    st.sampled_from(
        (
            "https://shop.example.com/products/blue-shirt",
            "https://cdn.example.com/img/1.jpg",
            "/relative/path",
            "",
            LONG_URL,
        )
    ),
    st.integers(0, 10),
)
PRODUCT_FIELDS: Fields = {
    "sku": product_ids,
    "variant": st.sampled_from(("blue / M", "", "XL")),
    "currency": currencies,
    "quantity": quantities,
    "name": st.sampled_from(("Blue Shirt", "Café crème", "", "  ")),
    "url": urls,
    "image_url": urls,
    "category": st.sampled_from(("Apparel", "Games")),
    "brand": st.just("Acme"),
    "position": st.integers(1, 20),
    "coupon": st.just("SUMMER"),
}
_PRODUCTS = st.builds(
    lambda product_id, price, more: {"product_id": product_id, "price": price, **more},
    product_ids,
    prices,
    some_of(PRODUCT_FIELDS, max_size=5),
)


def products() -> st.SearchStrategy[dict[str, JSON]]:
    """A Segment eCommerce product object: an id and a price, and a few other fields."""
    return _PRODUCTS


money: st.SearchStrategy[JSON] = st.one_of(prices, st.none())
text_values: st.SearchStrategy[JSON] = st.one_of(
    st.text(max_size=12), st.integers(0, 10**6), st.sampled_from((LONG_URL, "", " "))
)
product_lists = st.lists(_PRODUCTS, max_size=3)

ORDER_PROPERTIES: Fields = {
    "order_id": st.one_of(st.integers(10_000, 99_999_999).map(str), text_values),
    "checkout_id": text_values,
    "cart_id": text_values,
    "affiliation": text_values,
    "coupon": text_values,
    "currency": currencies,
    "total": money,
    "revenue": money,
    "value": money,
    "shipping": money,
    "tax": money,
    "discount": money,
    "products": product_lists,
}
LISTING_PROPERTIES: Fields = {
    "list_id": text_values,
    "category": text_values,
    "query": text_values,
    "promotion_id": text_values,
    "creative": text_values,
    "payment_method": st.sampled_from(("Visa", "PayPal")),
    "step": st.integers(1, 5),
    "filters": st.lists(
        st.fixed_dictionaries({"type": st.just("color"), "value": st.just("red")}), max_size=2
    ),
    "products": product_lists,
}
PAGE_PROPERTIES: Fields = {
    "path": st.sampled_from(("/", "/shop", "")),
    "referrer": urls,
    "search": st.sampled_from(("?q=shirt", "")),
    "title": text_values,
    "url": urls,
    "keywords": st.lists(st.text(max_size=4), max_size=2),
}


def _merged(*parts: st.SearchStrategy[dict[str, JSON]]) -> st.SearchStrategy[dict[str, JSON]]:
    return st.tuples(*parts).map(lambda drawn: {k: v for part in drawn for k, v in part.items()})


_PAGE_PROPS = _merged(_EXTRA_FIELDS, some_of(PAGE_PROPERTIES, max_size=6))
_PRODUCT_PROPS = _merged(_EXTRA_FIELDS, _PRODUCTS, some_of({"currency": currencies}))
_ORDER_PROPS = _merged(_EXTRA_FIELDS, some_of(ORDER_PROPERTIES, max_size=8))
_LISTING_PROPS = _merged(_EXTRA_FIELDS, some_of(LISTING_PROPERTIES, max_size=6))


def properties_for(call: str, name: str | None) -> st.SearchStrategy[dict[str, JSON]]:
    """Properties an event of this call and name would carry."""
    if call == "page":
        return _PAGE_PROPS
    if name in SINGLE_PRODUCT_EVENTS:
        return _PRODUCT_PROPS
    if name in ORDER_EVENTS:
        return _ORDER_PROPS
    return _LISTING_PROPS


# --- events ----------------------------------------------------------------------------------


ID_FIELDS: Fields = {
    "userId": _USER_IDS,
    "anonymousId": st.uuids().map(str),
    "messageId": st.one_of(st.uuids().map(str), st.integers(0, 2**31)),
}
_IDS = some_of(ID_FIELDS)
_PLACES = st.sampled_from(("top", "context", "context", "both"))
_IDENTIFY_PLACES = st.sampled_from(("top", "top", "top", "context", "both"))
_SPLITS = st.integers(0, 20)


@st.composite
def _common(draw: st.DrawFn, call: str) -> Event:
    """Fields every call carries: userId, messageId, time, traits (where the call keeps them)."""
    event: Event = {"type": call}
    event.update(draw(_IDS))
    event.update(draw(_TIME_FIELDS_STRATEGY))
    user_traits = draw(_TRAITS)
    place = draw(_IDENTIFY_PLACES if call == "identify" else _PLACES)
    if place == "top":
        event["traits"] = user_traits
    elif place == "context":
        event["context"] = {"traits": user_traits, "library": {"name": "analytics.js"}}
    else:
        split = draw(_SPLITS)
        items = list(user_traits.items())
        event["traits"] = dict(items[:split])
        event["context"] = {"traits": dict(items[split:])}
    return event


_COMMONS = {call: _common(call) for call in ("identify", "track", "page")}


@st.composite
def _with_properties(
    draw: st.DrawFn, call: str, name: str | None, properties: st.SearchStrategy[dict[str, JSON]]
) -> Event:
    event = draw(_COMMONS[call])
    if name is not None:
        event["event"] = name
    event["properties"] = draw(properties)
    return event


_IDENTIFY_EVENTS = _COMMONS["identify"]
_PAGE_EVENTS = _with_properties("page", None, _PAGE_PROPS)


@cache
def track_events(name: str) -> st.SearchStrategy[Event]:
    """A valid track call named ``name``."""
    return _with_properties("track", name, properties_for("track", name))


_NAMED_TRACK_EVENTS = st.one_of([track_events(name) for name in NAMED_TRACK_EVENTS])
_UNNAMED_NAMES = st.one_of(
    st.sampled_from(UNNAMED_TRACK_EVENTS),
    st.text(min_size=1, max_size=15).filter(lambda name: name not in NAMED_TRACK_EVENTS),
)
_UNNAMED_TRACK_EVENTS = st.builds(
    lambda event, name: {**event, "event": name},
    _with_properties("track", None, _LISTING_PROPS),
    _UNNAMED_NAMES,
)
_VALID_EVENTS = st.one_of(
    _IDENTIFY_EVENTS, _PAGE_EVENTS, _NAMED_TRACK_EVENTS, _NAMED_TRACK_EVENTS, _UNNAMED_TRACK_EVENTS
)


def identify_events() -> st.SearchStrategy[Event]:
    """A valid identify call."""
    return _IDENTIFY_EVENTS


def page_events() -> st.SearchStrategy[Event]:
    """A valid page call."""
    return _PAGE_EVENTS


def named_track_events() -> st.SearchStrategy[Event]:
    """A track call for one of the 17 event names the tables name."""
    return _NAMED_TRACK_EVENTS


def unnamed_track_events() -> st.SearchStrategy[Event]:
    """A track call for an event name no table names."""
    return _UNNAMED_TRACK_EVENTS


def valid_events() -> st.SearchStrategy[Event]:
    """Any well-formed event of a mapped call."""
    return _VALID_EVENTS


# --- hostile events --------------------------------------------------------------------------


@cache
def hostile_values(max_depth: int = 40) -> st.SearchStrategy[JSON]:
    """Values no field expects: wrong types, blanks, extremes, deep nesting, empty containers."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(BLANKS),
        st.sampled_from(
            (0, -1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 1e308, -1e308, 5e-324, -0.0, 0.5)
        ),
        st.builds(dict),
        st.builds(list),
        st.lists(json_scalars, min_size=1, max_size=3),
        json_objects(max_leaves=6),
        st.text(alphabet=FORBIDDEN_IN_TYPE + " ab", min_size=1, max_size=6),
        deep_values(max_depth),
    )


HOSTILE_PATHS: tuple[Path_, ...] = (
    ("type",),
    ("event",),
    ("userId",),
    ("messageId",),
    ("timestamp",),
    ("originalTimestamp",),
    ("traits",),
    ("context",),
    ("context", "traits"),
    ("properties",),
    ("traits", "email"),
    ("traits", "phone"),
    ("traits", "username"),
    ("context", "traits", "email"),
    ("context", "traits", "phone"),
    ("context", "traits", "username"),
    ("traits", "nested"),
    ("properties", "products"),
    ("properties", "products", 0),
    ("properties", "products", 0, "price"),
    ("properties", "products", 0, "product_id"),
    ("properties", "products", 0, "currency"),
    ("properties", "products", 0, "quantity"),
    ("properties", "price"),
    ("properties", "product_id"),
    ("properties", "currency"),
    ("properties", "order_id"),
    ("properties", "revenue"),
    ("properties", "nested"),
)
IDENTIFIER_PATHS: tuple[Path_, ...] = (
    ("userId",),
    ("messageId",),
    ("traits", "email"),
    ("traits", "phone"),
    ("traits", "username"),
    ("context", "traits", "email"),
    ("context", "traits", "phone"),
    ("context", "traits", "username"),
    ("event",),
    ("type",),
)


def _set(event: Event, path: Path_, value: JSON) -> None:
    """Set ``path`` in ``event`` when its parents exist (or can be made); delete on ``...``."""
    node: Any = event
    for step in path[:-1]:
        if isinstance(node, dict) and isinstance(step, str):
            child = node.get(step)
            if child is None:
                child = node[step] = [{}] if step == "products" else {}
            node = child
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return
    last = path[-1]
    if isinstance(node, dict) and isinstance(last, str):
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if value is ...:
            del node[last]
        else:
            node[last] = value


_MUTATIONS = st.sampled_from(("replace", "replace", "delete", "key", "name", "whitespace"))
_HOSTILE_PATH = st.sampled_from(HOSTILE_PATHS)
_IDENTIFIER_PATH = st.sampled_from(IDENTIFIER_PATHS)
_BAD_KEYS = st.text(alphabet=FORBIDDEN_IN_KEY + "ab .", max_size=5)
_KEY_HOLDERS: st.SearchStrategy[Path_] = st.sampled_from(
    (("properties",), ("traits",), ("context", "traits"), ("properties", "nested"))
)
_BAD_NAMES = st.one_of(
    st.text(alphabet=FORBIDDEN_IN_TYPE + "Ordr Cmplet", min_size=1, max_size=8),
    st.sampled_from(NAMED_TRACK_EVENTS).map(lambda name: f"{name},"),
    st.sampled_from(("screen", "group", "alias", "Track", "TRACK", "click", "Order (test)")),
)
_NAME_PATHS: st.SearchStrategy[Path_] = st.sampled_from((("event",), ("type",)))
_BLANKS = st.sampled_from(BLANKS)
_SMALL_JSON = json_values(max_leaves=4)


@st.composite
def _hostile_events(draw: st.DrawFn, max_depth: int) -> Event:
    event: Event = dict(draw(_VALID_EVENTS))
    values = hostile_values(max_depth)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(_MUTATIONS)
        if kind == "replace":
            _set(event, draw(_HOSTILE_PATH), draw(values))
        elif kind == "delete":
            _set(event, draw(_HOSTILE_PATH), ...)
        elif kind == "key":
            _set(event, (*draw(_KEY_HOLDERS), draw(_BAD_KEYS)), draw(_SMALL_JSON))
        elif kind == "name":
            _set(event, draw(_NAME_PATHS), draw(_BAD_NAMES))
        else:
            _set(event, draw(_IDENTIFIER_PATH), draw(_BLANKS))
    return event


@cache
def hostile_events(max_depth: int = 40) -> st.SearchStrategy[Event]:
    """A valid event with one to four fields replaced by hostile values (or removed)."""
    return _hostile_events(max_depth)


# --- deep and arbitrary events ---------------------------------------------------------------

DEEP_PATHS: tuple[Path_, ...] = (
    ("properties",),
    ("properties", "nested"),
    ("properties", "products"),
    ("traits", "nested"),
    ("context", "traits", "nested"),
    ("context", "library"),
    ("integrations",),
)
_DEEP_PATH = st.sampled_from(DEEP_PATHS)


@st.composite
def _deep_events(draw: st.DrawFn, max_depth: int) -> Event:
    event: Event = dict(draw(_VALID_EVENTS))
    _set(event, draw(_DEEP_PATH), draw(deep_values(max_depth)))
    return event


@cache
def deep_events(max_depth: int = 40) -> st.SearchStrategy[Event]:
    """A valid event with a value nested up to ``max_depth`` levels where sources put values."""
    return _deep_events(max_depth)


_LOOSE_FIELDS: Fields = {
    "type": st.one_of(st.sampled_from(("identify", "track", "page", "screen")), json_text),
    "event": st.one_of(st.sampled_from(NAMED_TRACK_EVENTS), json_values(max_leaves=3)),
    "userId": json_values(max_leaves=3),
    "traits": json_values(max_leaves=8),
    "context": json_values(max_leaves=8),
    "properties": json_values(max_leaves=10),
    "timestamp": json_values(max_leaves=2),
}
_ARBITRARY_EVENTS = _merged(json_objects(max_leaves=10), some_of(_LOOSE_FIELDS, max_size=7))


def arbitrary_events() -> st.SearchStrategy[dict[str, JSON]]:
    """A JSON object that may or may not look like an event."""
    return _ARBITRARY_EVENTS


@cache
def any_events(max_depth: int = 40) -> st.SearchStrategy[JSON]:
    """Anything: valid, hostile, deep and arbitrary events, and JSON values that are not objects."""
    return st.one_of(
        _VALID_EVENTS,
        hostile_events(max_depth),
        deep_events(max_depth),
        _ARBITRARY_EVENTS,
        json_values(max_leaves=10),
    )


# --- event options: aliases, filters, consent -------------------------------------------------

CONSENT_CATEGORIES = ("Advertising", "Analytics")
_CALL_PATTERNS = st.sampled_from(("identify", "page", "track", "*", "[pt]*"))
_EVENT_PATTERNS = st.sampled_from(
    (
        "*",
        "Order *",
        "Product ?iewed",
        "Page *",
        "Signed Up",
        "Completed Order",
        "[PO]*",
        *NAMED_TRACK_EVENTS,
    )
)
_FILTERS = st.one_of(
    st.just(EventFilter()),
    st.builds(
        EventFilter,
        allow_calls=st.lists(_CALL_PATTERNS, max_size=2),
        deny_calls=st.lists(_CALL_PATTERNS, max_size=1),
        allow_events=st.lists(_EVENT_PATTERNS, max_size=2),
        deny_events=st.lists(_EVENT_PATTERNS, max_size=2),
    ),
)
_ALIAS_NAMES = ("Purchase", "Basket Viewed", "Signed Up", "Viewed Product", "Completed Order")
_ALIASES = st.dictionaries(
    st.sampled_from(_ALIAS_NAMES), st.sampled_from(sorted(mapped_event_names())), max_size=3
)
_OPTION_CONFIGS = st.builds(
    Config,
    unnamed_track=st.sampled_from(("custom_event", "skip")),
    stale_events=st.sampled_from(("send", "skip")),
    aliases=_ALIASES,
    builtin_aliases=st.booleans(),
    filters=_FILTERS,
    consent_category=st.sampled_from((None, *CONSENT_CATEGORIES)),
    consent_missing=st.sampled_from(("send", "skip")),
)
_OPTION_CONTEXTS = st.builds(Context, received_at=_RECEIVED_TIMES, config=_OPTION_CONFIGS)


def option_contexts() -> st.SearchStrategy[Context]:
    """Contexts whose configuration sets aliases, filters and consent (and some other options)."""
    return _OPTION_CONTEXTS


_CONSENT_VALUES = st.one_of(st.booleans(), st.booleans(), json_values(max_leaves=2))
_PREFERENCES = st.dictionaries(
    st.sampled_from((*CONSENT_CATEGORIES, "Functional")), _CONSENT_VALUES, max_size=3
)
_CONSENT = st.one_of(
    st.builds(lambda preferences: {"categoryPreferences": preferences}, _PREFERENCES),
    json_values(max_leaves=3),
)


def _with_consent(event: Event, consent: JSON) -> Event:
    context = event.get("context")
    context = dict(context) if isinstance(context, dict) else {}
    return {**event, "context": {**context, "consent": consent}}


V1_NAMES = tuple(sorted(SEGMENT_V1_ALIASES))
_V1_PAIRS = st.sampled_from(V1_NAMES).flatmap(
    lambda v1: track_events(SEGMENT_V1_ALIASES[v1]).map(
        lambda event: ({**event, "event": v1}, event)
    )
)


def v1_event_pairs() -> st.SearchStrategy[tuple[Event, Event]]:
    """A track call under a Segment eCommerce v1 name, and the same call under its v2 name."""
    return _V1_PAIRS


_OPTION_EVENTS = st.one_of(
    st.builds(_with_consent, _VALID_EVENTS, _CONSENT),
    _V1_PAIRS.map(lambda pair: pair[0]),
    st.builds(_with_consent, _V1_PAIRS.map(lambda pair: pair[0]), _CONSENT),
    st.builds(_with_consent, hostile_events(), _CONSENT),
    any_events(),
)


def option_events() -> st.SearchStrategy[JSON]:
    """Events for the option properties: with consent information, under v1 names, or anything."""
    return _OPTION_EVENTS
