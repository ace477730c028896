"""Segment events for the delivery benchmarks: each one maps to exactly one Attentive request.

The events are shaped like analytics.js traffic (context, traits, product properties) and are
spread evenly over the four endpoints Attentive limits to 150 requests/s each: product view,
add to cart, purchase and custom events. Kinds come in shuffled blocks holding each kind
equally often, so that any stretch of the stream loads the four endpoints about equally, as a
busy shop's traffic does, and the sum of the limits is reachable at all.

``events(n, seed, now)`` yields the events one by one (a million of them never sit in memory
together); ``write_ndjson`` streams them to a file; ``check`` routes events through
``attentive_router.route`` and fails unless each gives the one request its kind promises.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from attentive_router import Context, Mapped, route

PRODUCT_VIEW = "/v1/events/ecommerce/product-view"
ADD_TO_CART = "/v1/events/ecommerce/add-to-cart"
PURCHASE = "/v1/events/ecommerce/purchase"
CUSTOM = "/v1/events/custom"

CUSTOM_EVENT_NAME = "Newsletter Subscribed"
"""A track event no mapping table names: it is sent as a custom event."""

KINDS: dict[str, str] = {
    "Product Viewed": PRODUCT_VIEW,
    "Product Added": ADD_TO_CART,
    "Order Completed": PURCHASE,
    CUSTOM_EVENT_NAME: CUSTOM,
}
"""Track event name to the one endpoint its request goes to."""

ENDPOINTS: tuple[str, ...] = tuple(KINDS.values())

BLOCK = 100
"""Each shuffled block holds this many events of every kind."""

DEFAULT_SEED = 20260108

Event = dict[str, Any]

_SHOP = "https://shop.example.com"
_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
_NOUNS = ("Tee", "Sneaker", "Parka", "Tote", "Cardigan", "Jean", "Dress", "Scarf", "Boot")
_COLOURS = ("black", "navy", "oat", "forest", "rust", "white", "grey")
_SIZES = ("XS", "S", "M", "L", "XL")


class _Generator:
    """Draws events from one seeded ``random.Random``."""

    def __init__(self, seed: int, users: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.now = now.timestamp()
        self.catalogue = [self._product(index) for index in range(400)]
        # A pool of moments in the quarter-hour before ``now``, drawn from per event.
        self.moments = [self._moment() for _ in range(4096)]

    def _product(self, index: int) -> Event:
        rng = self.rng
        noun = rng.choice(_NOUNS)
        slug = f"{noun.lower()}-{index}"
        return {
            "product_id": f"prod_{index:05d}",
            "sku": f"SKU-{index:05d}",
            "category": "Apparel",
            "name": f"Everyday {noun}",
            "brand": "Example Apparel",
            "price": round(rng.uniform(9, 240), 2),
            "currency": "USD",
            "url": f"{_SHOP}/products/{slug}",
            "image_url": f"https://cdn.example.com/images/{slug}.jpg",
        }

    def _item(self) -> Event:
        rng = self.rng
        item = dict(rng.choice(self.catalogue))
        item["variant"] = f"{rng.choice(_COLOURS)} / {rng.choice(_SIZES)}"
        item["quantity"] = rng.choice((1, 1, 1, 2, 3))
        return item

    def _moment(self) -> str:
        moment = datetime.fromtimestamp(self.now - self.rng.uniform(0.05, 900), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def _properties(self, kind: str) -> Event:
        rng = self.rng
        if kind in {"Product Viewed", "Product Added"}:
            item = self._item()
            if kind == "Product Added":
                item["cart_id"] = f"cart_{rng.getrandbits(48):012x}"
            return item
        if kind == "Order Completed":
            products = [self._item() for _ in range(rng.randint(1, 3))]
            total = round(sum(p["price"] * p["quantity"] for p in products), 2)
            return {
                "order_id": f"ord_{rng.getrandbits(40):010x}",
                "checkout_id": f"chk_{rng.getrandbits(48):012x}",
                "total": total,
                "revenue": total,
                "currency": "USD",
                "products": products,
            }
        return {"list": "weekly", "source": rng.choice(("footer", "popup"))}

    def event(self, kind: str, number: int) -> Event:
        rng = self.rng
        user = rng.randrange(self.users)
        timestamp = self.moments[rng.getrandbits(12)]
        return {
            "type": "track",
            "event": kind,
            "messageId": f"bench-{number:08d}-{rng.getrandbits(64):016x}",
            "userId": f"usr_{user:07d}",
            "anonymousId": f"anon-{user:07d}",
            "timestamp": timestamp,
            "originalTimestamp": timestamp,
            "context": {
                "library": {"name": "analytics.js", "version": "npm:next-1.76.0"},
                "page": {"path": "/", "title": "Example Apparel", "url": f"{_SHOP}/"},
                "userAgent": _AGENT,
                "ip": f"10.{user % 251}.{user % 241}.{user % 239 + 1}",
                "traits": {
                    "email": f"shopper{user}@example.com",
                    "phone": f"+1415{user % 10_000_000:07d}",
                },
            },
            "properties": self._properties(kind),
        }


def kinds(count: int, rng: random.Random) -> Iterator[str]:
    """``count`` kinds in shuffled blocks of ``BLOCK`` of each kind (the last one shorter).

    Every kind occurs ``count // 4`` or ``count // 4 + 1`` times.
    """
    names = list(KINDS)
    left = count
    while left > 0:
        each = min(BLOCK, left // len(names))
        extra = 0 if each == BLOCK else left - each * len(names)  # the last, short block
        block = names * each + names[:extra]
        rng.shuffle(block)
        yield from block
        left -= len(block)


def events(count: int, seed: int = DEFAULT_SEED, now: datetime | None = None) -> Iterator[Event]:
    """``count`` events happening shortly before ``now`` (default: the current time)."""
    moment = now or datetime.now(UTC)
    generator = _Generator(seed, users=max(50, count // 4), now=moment)
    order = random.Random(seed + 1)
    for number, kind in enumerate(kinds(count, order)):
        yield generator.event(kind, number)


def write_ndjson(path: Path, count: int, seed: int = DEFAULT_SEED) -> int:
    """Stream ``count`` events to ``path`` as NDJSON (in chunks); return the bytes written."""
    written = 0
    chunk: list[bytes] = []
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with path.open("wb") as out:
        for event in events(count, seed):
            chunk.append(dumps(event, option=option))
            if len(chunk) >= 5_000:
                written += out.write(b"".join(chunk))
                chunk = []
        written += out.write(b"".join(chunk))
    return written


def check(sample: Iterable[Event], now: datetime | None = None) -> Counter[str]:
    """Route each event; return the requests per endpoint.

    Raises:
        ValueError: An event does not map to exactly one request to its kind's endpoint.
    """
    ctx = Context(now or datetime.now(UTC))
    paths: Counter[str] = Counter()
    for event in sample:
        outcome = route(event, ctx)
        expected = KINDS[event["event"]]
        if not isinstance(outcome, Mapped) or [r.path for r in outcome.requests] != [expected]:
            raise ValueError(
                f"event {event['messageId']} ({event['event']}) does not map to one request to "
                f"{expected}: {outcome!r}"
            )
        paths[expected] += 1
    return paths
