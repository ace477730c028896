"""Hand-written expressions for rules-table rows whose input is "Expression – ...".

Each takes the resolved ``Source``, the ``Context`` and the warnings accumulator, and returns
the output value, ``None`` when there is nothing to send, or a ``Rejected``/``Skipped`` outcome.
Pure: the receipt time comes from the context, never from the clock. The code generator checks
that every function a row names exists here with this signature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from attentive_router._transform.models import CustomIdentifier, JSONObject, Price, Product
from attentive_router._transform.options import Context
from attentive_router._transform.outcome import Rejected, Skipped, TransformWarning
from attentive_router._transform.source import Source, is_blank, json_type, shown
from attentive_router._transform.values import as_number, currency_code, text

TIMESTAMP_FIELDS = ("timestamp", "originalTimestamp", "sentAt")
"""Where an event's time is read from, first present wins (the integration doc's order)."""

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""Timestamps before this are taken as client clock errors, not as real event times."""

FUTURE_TOLERANCE = timedelta(days=1)
"""How far past the receipt time an event's timestamp may lie before it is refused."""

MAX_ATTRIBUTE_NAME = 200


_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
"""A timestamp already in the output form (what analytics.js and most libraries send)."""


@lru_cache(maxsize=8)
def _receipt_time(received_at: datetime) -> str:
    return format_timestamp(received_at)


@lru_cache(maxsize=8)
def _window(received_at: datetime, stale_after: timedelta) -> tuple[datetime, datetime]:
    """The times before which an event is stale, and after which it lies in the future."""
    return received_at - stale_after, received_at + FUTURE_TOLERANCE


_WINDOWS: dict[int, tuple[Context, tuple[datetime, datetime]]] = {}
"""``_window`` per context (hashing its datetime and timedelta on every event costs more)."""


def _windows(ctx: Context) -> tuple[datetime, datetime]:
    cached = _WINDOWS.get(id(ctx))
    if cached is not None and cached[0] is ctx:
        return cached[1]
    window = _window(ctx.received_at, ctx.config.stale_after)
    if len(_WINDOWS) >= 8:  # a few contexts at a time; never grow without bound
        _WINDOWS.clear()
    _WINDOWS[id(ctx)] = (ctx, window)
    return window


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, e.g. ``2026-01-08T13:52:50.212Z``."""
    utc = moment.astimezone(UTC)
    # What isoformat(timespec="milliseconds") writes, in half its time (the server stamps
    # every event it takes).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - the fastest form
        *(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second),
        utc.microsecond // 1000,
    )


def parse_timestamp(value: Any) -> datetime | None:
    """Read an ISO 8601 timestamp; one without an offset is taken as UTC. ``None`` if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def occurred_at(
    src: Source, ctx: Context, warnings: list[TransformWarning]
) -> str | Rejected | Skipped:
    """When the event happened: timestamp, originalTimestamp or sentAt, else the receipt time."""
    raw = src.event.get("timestamp")
    if type(raw) is str and _CANONICAL.fullmatch(raw):
        # The common case, decided without the general path: a timestamp already in the output
        # form, inside the window. Anything else (unreadable, too old, stale, in the future)
        # goes the general way below, which says why.
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            stale_before, latest = _windows(ctx)
            if when >= EARLIEST and stale_before <= when <= latest:
                return raw
    for name in TIMESTAMP_FIELDS:
        raw = src.event.get(name)
        if raw is None or (type(raw) is str and (not raw or raw.isspace())):
            continue
        moment = parse_timestamp(raw)
        if moment is None:
            return Rejected(
                "invalid_timestamp", f"{name} {shown(raw)} is not an ISO 8601 timestamp"
            )
        if moment < EARLIEST:
            return Rejected(
                "invalid_timestamp",
                f"{name} {shown(raw)} is before {EARLIEST.year}: a client clock error, "
                "not an event time",
            )
        stale_before, latest = _windows(ctx)
        if moment > latest:
            return Rejected(
                "invalid_timestamp",
                f"{name} {shown(raw)} is more than a day after the event was received "
                f"({format_timestamp(ctx.received_at)})",
            )
        if moment < stale_before:
            hours = (ctx.received_at - moment).total_seconds() / 3600
            message = (
                f"{name} {shown(raw)} is {hours:.1f} hours before receipt; Attentive accepts it "
                "but will not trigger journeys from it"
            )
            if ctx.config.stale_events == "skip":
                return Skipped("stale_event", message)
            warnings.append(TransformWarning("stale_event", message))
        if isinstance(raw, str) and _CANONICAL.fullmatch(raw):
            return raw
        return format_timestamp(moment)
    return _receipt_time(ctx.received_at)


def custom_identifiers(
    src: Source, ctx: Context, warnings: list[TransformWarning]
) -> tuple[CustomIdentifier, ...] | None:
    """``traits.username`` as ``[{"name": "username", "value": ...}]``, when it is not blank."""
    raw = src.traits.get("username")
    if raw is None:
        return None
    value = text(raw, "traits.username", ctx, warnings)
    if value is None:
        return None
    return (CustomIdentifier("username", value),)


def _label(product: Mapping[str, Any], where: str) -> str:
    for key in ("product_id", "sku", "name"):
        value = product.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return f"{where} ({key} {shown(value)})"
    return where


def _field(
    product: Mapping[str, Any], key: str, where: str, ctx: Context, warnings: list[TransformWarning]
) -> str | None:
    """A string field of a product (``text`` rules); the field path is built only if needed."""
    value = product.get(key)
    if type(value) is str and value and not value.isspace():
        return value
    if value is None:
        return None
    return text(value, f"{where}.{key}", ctx, warnings)


def _item(
    product: Any, order_currency: Any, where: str, ctx: Context, warnings: list[TransformWarning]
) -> Product | None:
    """Build one Attentive item from a Segment product, or warn and return None."""
    if type(product) is not dict and not isinstance(product, Mapping):
        warnings.append(
            TransformWarning(
                "item_dropped", f"{where} is {json_type(product)}, not an object; left out"
            )
        )
        return None
    scratch: list[TransformWarning] = []
    product_id = _field(product, "product_id", where, ctx, scratch) or _field(
        product, "sku", where, ctx, scratch
    )
    if product_id is None:
        warnings.append(
            TransformWarning(
                "item_dropped", f"{_label(product, where)} has no product_id or sku; left out"
            )
        )
        return None
    variant = (
        _field(product, "variant", where, ctx, scratch)
        or _field(product, "sku", where, ctx, scratch)
        or product_id
    )
    raw_price = product.get("price")
    value = as_number(raw_price)
    if value is None:
        problem = (
            "price is missing" if raw_price is None else f"price {shown(raw_price)} is not a number"
        )
        warnings.append(
            TransformWarning("item_dropped", f"{_label(product, where)}: {problem}; left out")
        )
        return None
    raw_currency = product.get("currency")
    if is_blank(raw_currency):
        raw_currency = order_currency
    code = "USD" if is_blank(raw_currency) else currency_code(raw_currency)
    if code is None:
        warnings.append(
            TransformWarning(
                "item_dropped",
                f"{_label(product, where)}: currency {shown(raw_currency)} is not an ISO 4217 "
                "code; left out",
            )
        )
        return None
    quantity = _quantity(product.get("quantity"), where, warnings)
    warnings.extend(scratch)
    return Product(
        product_id=product_id,
        product_variant_id=variant,
        price=(Price(value, code),),
        product_image=_field(product, "image_url", where, ctx, warnings),
        product_url=_field(product, "url", where, ctx, warnings),
        name=_field(product, "name", where, ctx, warnings),
        quantity=quantity,
    )


def _quantity(value: Any, where: str, warnings: list[TransformWarning]) -> int | None:
    if value is None:
        return None
    number = as_number(value)
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**63:
        number = int(number)
    if isinstance(number, int) and not isinstance(number, bool) and abs(number) < 2**63:
        return number
    warnings.append(
        TransformWarning(
            "invalid_quantity", f"{where}.quantity {shown(value)} is not a whole number; left out"
        )
    )
    return None


def _no_items(where: str, dropped: list[TransformWarning]) -> Rejected:
    """The rejection when every product was left out; it names why (a rejection has no warnings)."""
    reasons = [warning.message for warning in dropped if warning.code == "item_dropped"]
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return Rejected(
        "no_items",
        f"{where} holds no product Attentive can accept: {'; '.join(reasons[:3])}{more}",
    )


def single_item(
    src: Source, ctx: Context, warnings: list[TransformWarning]
) -> tuple[Product, ...] | Rejected:
    """The one product described by the event's ``properties``."""
    props = src.properties
    item = _item(props, props.get("currency"), "properties", ctx, warnings)
    if item is None:
        return Rejected(
            "no_items",
            f"properties do not describe a product Attentive can accept: {warnings[-1].message}",
        )
    return (item,)


def line_items(
    src: Source, ctx: Context, warnings: list[TransformWarning]
) -> tuple[Product, ...] | Rejected:
    """The products of ``properties.products[]``; products that cannot be built are left out."""
    products = src.properties.get("products")
    if not isinstance(products, list) or not products:
        shown = "missing" if products is None else f"{json_type(products)}, not a list of products"
        return Rejected("no_items", f"properties.products is {shown}")
    order_currency = src.properties.get("currency")
    before = len(warnings)
    items = [
        _item(product, order_currency, f"properties.products[{index}]", ctx, warnings)
        for index, product in enumerate(products)
    ]
    kept = tuple(item for item in items if item is not None)
    return kept or _no_items("properties.products", warnings[before:])


MAX_DEPTH = 32
"""Deepest nesting of objects and lists passed on; deeper values are left out with a warning."""


def _flatten(
    prefix: str, value: Any, out: JSONObject, warnings: list[TransformWarning], depth: int = 1
) -> None:
    if value is None:
        return
    if type(value) is dict or isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            warnings.append(
                TransformWarning(
                    "attribute_dropped",
                    f"traits.{prefix[:40]} nests more than {MAX_DEPTH} levels deep; left out",
                )
            )
            return
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, out, warnings, depth + 1)
        return
    if isinstance(value, list | tuple):
        warnings.append(
            TransformWarning(
                "attribute_dropped",
                f"traits.{prefix} is a list; Attentive refuses list-valued custom attributes; "
                "left out",
            )
        )
        return
    if not prefix.strip() or len(prefix) > MAX_ATTRIBUTE_NAME:
        warnings.append(
            TransformWarning(
                "attribute_dropped",
                f"traits.{prefix[:40]!r}: attribute names must have 1 to "
                f"{MAX_ATTRIBUTE_NAME} characters; left out",
            )
        )
        return
    out[prefix] = value


IDENTIFIER_TRAITS = frozenset({"email", "phone", "username"})
"""Traits sent as identifiers, not as custom attributes."""


def remaining_traits(src: Source, ctx: Context, warnings: list[TransformWarning]) -> JSONObject:
    """The traits other than the identifiers, nested objects flattened to ``a.b`` names."""
    out: JSONObject = {}
    for key, value in src.traits.items():
        if key in IDENTIFIER_TRAITS:
            continue
        _flatten(key, value, out, warnings)
    return out
