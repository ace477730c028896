"""A deterministic corpus of Segment events shaped like real analytics.js traffic.

``generate(n, seed)`` returns ``n`` NDJSON lines (bytes, newline included) in memory. The mix
follows a typical web shop: many page views and product views, fewer cart and checkout events,
a few orders; identify calls carry profile traits, track and page calls carry the identifiers
in ``context.traits`` as analytics.js does after an identify. On purpose, a share of the events
are anonymous-only (skipped), carry national-format phone numbers (normalised through
phonenumbers), are a day old (stale warning) or carry unreadable or implausible timestamps
(rejected), so that every path the transform takes in production is exercised.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

RECEIVED_AT = datetime(2026, 1, 8, 14, 0, 0, tzinfo=UTC)
"""Receipt time of the whole corpus; event timestamps lie shortly before it."""

DEFAULT_SEED = 20260108

Event = dict[str, Any]

# (kind, weight): the share of each kind of event in the corpus, in percent.
MIX: tuple[tuple[str, float], ...] = (
    ("page", 30.0),
    ("Product Viewed", 17.0),
    ("identify", 8.0),
    ("Product Added", 7.0),
    ("Product List Viewed", 5.0),
    ("Product Clicked", 4.0),
    ("Products Searched", 3.0),
    ("Cart Viewed", 3.0),
    ("Checkout Started", 3.0),
    ("Order Completed", 2.5),
    ("Promotion Viewed", 2.0),
    ("Product Removed", 1.5),
    ("Payment Info Entered", 1.5),
    ("Promotion Clicked", 1.0),
    ("Product Added to Wishlist", 1.0),
    ("Coupon Entered", 0.5),
    ("Order Updated", 0.3),
    ("Order Refunded", 0.2),
    ("Order Cancelled", 0.2),
    ("unnamed track", 9.3),
)

CUSTOM_HEAVY_MIX: tuple[tuple[str, float], ...] = (
    ("Checkout Started", 12.0),
    ("Cart Viewed", 10.0),
    ("Product List Viewed", 10.0),
    ("Order Updated", 8.0),
    ("Product Clicked", 8.0),
    ("Product Removed", 6.0),
    ("Products Searched", 6.0),
    ("Payment Info Entered", 6.0),
    ("Order Refunded", 5.0),
    ("Order Cancelled", 5.0),
    ("Promotion Viewed", 4.0),
    ("Product Added to Wishlist", 4.0),
    ("Promotion Clicked", 3.0),
    ("Coupon Entered", 3.0),
    ("Product Viewed", 4.0),
    ("Order Completed", 2.0),
    ("identify", 2.0),
    ("page", 2.0),
)
"""A shop whose traffic is mostly the integration doc's named custom events (90 %), each with
5-15 properties and a ``products`` array of 1-4 items: the custom-event body rules' worst case."""

MIXES = {"default": MIX, "custom-heavy": CUSTOM_HEAVY_MIX}
"""The corpora ``generate`` draws, by name."""

_CUSTOM_EVENTS = frozenset(kind for kind, _ in CUSTOM_HEAVY_MIX[:14])
"""The named custom events of ``CUSTOM_HEAVY_MIX`` (the kinds it enriches)."""

_EXTRA_PROPERTIES = (
    "session_id", "page_type", "experiment", "experiment_group", "source", "loyalty_tier",
    "items_count", "value", "currency", "logged_in", "list_name", "step", "shipping_method",
)  # fmt: skip
"""Properties a shop adds to its events beyond the spec's (``_Generator._extra`` draws them)."""

ANONYMOUS_SHARE = 0.10
"""Events of visitors with no email, phone or userId (skipped with ``no_identifier``)."""

BAD_TIMESTAMP_SHARE = 0.01
"""Track and page events whose timestamp is unreadable or implausible (rejected)."""

STALE_SHARE = 0.02
"""Events sent more than 12 hours after they happened (mapped with a ``stale_event`` warning)."""

_AREA_CODES = (
    "212", "213", "305", "310", "312", "404", "415", "469", "503", "512",
    "617", "646", "702", "713", "720", "206", "303", "347", "619", "917",
)  # fmt: skip
_FIRST_NAMES = (
    "Jane", "John", "Maria", "Wei", "Aisha", "Carlos", "Emma", "Liam", "Olivia", "Noah",
    "Sofia", "Lucas", "Mia", "Ethan", "Chloe", "Mateo", "Priya", "Kenji", "Fatima", "Jonas",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Garcia", "Chen", "Johnson", "Okafor", "Müller", "Rossi", "Kim", "Patel", "Brown",
    "Nguyen", "Silva", "Kowalski", "Dubois", "Haddad", "Tanaka", "Jensen", "Lopez", "Ivanova",
)  # fmt: skip
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "proton.me")
_CITIES = (
    ("San Francisco", "CA", "94107"), ("New York", "NY", "10001"), ("Austin", "TX", "78701"),
    ("Chicago", "IL", "60601"), ("Seattle", "WA", "98101"), ("Miami", "FL", "33101"),
    ("Denver", "CO", "80202"), ("Portland", "OR", "97201"), ("Boston", "MA", "02108"),
)  # fmt: skip
_USER_AGENTS = (
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/18.2 Mobile/15E148 Safari/604.1"
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.135 Mobile Safari/537.36"
    ),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
_PLATFORMS = ("macOS", "iOS", "Windows", "Android", "Windows")
_CATEGORIES = ("Dresses", "Shoes", "Outerwear", "Accessories", "Knitwear", "Denim", "Bags")
_ADJECTIVES = ("Classic", "Organic", "Relaxed", "Slim", "Vintage", "Everyday", "Merino", "Linen")
_NOUNS = ("Tee", "Sneaker", "Parka", "Tote", "Cardigan", "Jean", "Dress", "Scarf", "Boot")
_COLOURS = ("black", "navy", "oat", "forest", "rust", "white", "grey")
_SIZES = ("XS", "S", "M", "L", "XL")
_REFERRERS = (
    "https://www.google.com/",
    "https://www.instagram.com/",
    "https://l.facebook.com/",
    "https://shop.example.com/",
    "",
)
_UNNAMED = (
    "Newsletter Subscribed",
    "Video Played",
    "Filter Applied",
    "Size Guide Opened",
    "Review Submitted",
    "Store Locator Used",
    "Back In Stock Requested",
    "Quiz Completed",
)
_BAD_TIMESTAMPS = (
    "not a timestamp",
    "2026-13-45T25:61:00Z",
    "08/01/2026 13:55",
    "1999-12-31T23:59:59Z",
    "2031-01-01T00:00:00Z",
    "",
)
_SHOP = "https://shop.example.com"


class _Generator:
    """Draws events from one seeded ``random.Random``; the same seed gives the same bytes."""

    def __init__(self, seed: int, users: int, mix: tuple[tuple[str, float], ...] = MIX) -> None:
        self.rng = random.Random(seed)
        self.users = [self._user(index) for index in range(users)]
        self.catalogue = [self._product(index) for index in range(600)]
        self.kinds = [kind for kind, _ in mix]
        self.weights = [weight for _, weight in mix]
        self.rich = mix is CUSTOM_HEAVY_MIX

    # -- people and products ------------------------------------------------------------------

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def _uuid(self) -> str:
        h = self._hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def _phone(self) -> str:
        rng = self.rng
        area = rng.choice(_AREA_CODES)
        exchange = rng.randint(200, 999)
        line = rng.randint(0, 9999)
        style = rng.random()
        if style < 0.80:
            return f"+1{area}{exchange}{line:04d}"
        if style < 0.93:
            return f"({area}) {exchange}-{line:04d}"
        if style < 0.97:
            return f"{area}-{exchange}-{line:04d}"
        return f"+44 7700 {rng.randint(900000, 900999)}"

    def _user(self, index: int) -> Event:
        rng = self.rng
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        kind = rng.random()
        email = f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@{rng.choice(_DOMAINS)}"
        user: Event = {
            "anonymousId": self._uuid(),
            "firstName": first,
            "lastName": last,
            "userId": f"usr_{index:07d}" if rng.random() < 0.7 else None,
            "email": email if kind < 0.85 else None,
            "phone": self._phone() if kind < 0.45 or kind >= 0.85 else None,
            "username": f"{first.lower()}_{last.lower()}_{index}" if rng.random() < 0.05 else None,
            "city": rng.choice(_CITIES),
            "createdAt": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
            "agent": rng.randrange(len(_USER_AGENTS)),
            "ip": f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
            f"{rng.randint(1, 254)}",
        }
        return user

    def _product(self, index: int) -> Event:
        rng = self.rng
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        slug = name.lower().replace(" ", "-")
        return {
            "product_id": f"prod_{index:05d}",
            "sku": f"SKU-{index:05d}-{rng.choice(_COLOURS).upper()[:3]}",
            "category": rng.choice(_CATEGORIES),
            "name": name,
            "brand": "Example Apparel",
            "price": round(rng.uniform(9, 240), 2),
            "url": f"{_SHOP}/products/{slug}-{index}",
            "image_url": f"https://cdn.example.com/images/{slug}-{index}.jpg",
        }

    def _line_item(self, position: int) -> Event:
        rng = self.rng
        item = dict(rng.choice(self.catalogue))
        item["variant"] = f"{rng.choice(_COLOURS)} / {rng.choice(_SIZES)}"
        item["quantity"] = rng.choice((1, 1, 1, 1, 2, 2, 3))
        item["position"] = position
        if rng.random() < 0.03:
            item["price"] = f"{item['price']:.2f}"  # some shops send prices as strings
        return item

    # -- event envelope -----------------------------------------------------------------------

    def _moment(self) -> datetime:
        rng = self.rng
        if rng.random() < STALE_SHARE:
            return RECEIVED_AT - timedelta(hours=rng.uniform(13, 60))
        return RECEIVED_AT - timedelta(seconds=rng.uniform(0.05, 900))

    @staticmethod
    def _iso(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def _context(self, user: Event, path: str, title: str) -> Event:
        rng = self.rng
        agent = user["agent"]
        context: Event = {
            "ip": user["ip"],
            "library": {"name": "analytics.js", "version": "npm:next-1.76.0"},
            "locale": "en-US",
            "page": {
                "path": path,
                "referrer": rng.choice(_REFERRERS),
                "search": "",
                "title": title,
                "url": f"{_SHOP}{path}",
            },
            "userAgent": _USER_AGENTS[agent],
            "timezone": "America/Los_Angeles",
        }
        if "Chrome/" in _USER_AGENTS[agent]:  # only Chromium browsers report userAgentData
            context["userAgentData"] = {
                "brands": [
                    {"brand": "Chromium", "version": "131"},
                    {"brand": "Not_A Brand", "version": "24"},
                ],
                "mobile": _PLATFORMS[agent] == "Android",
                "platform": _PLATFORMS[agent],
            }
        if rng.random() < 0.15:
            context["campaign"] = {
                "name": "winter_sale",
                "source": rng.choice(("google", "instagram", "newsletter")),
                "medium": rng.choice(("cpc", "social", "email")),
            }
        return context

    def _identified_traits(self, user: Event) -> Event:
        traits: Event = {}
        if user["email"] is not None:
            traits["email"] = user["email"]
        if user["phone"] is not None:
            traits["phone"] = user["phone"]
        if user["username"] is not None:
            traits["username"] = user["username"]
        return traits

    def event(self) -> Event:
        rng = self.rng
        kind = rng.choices(self.kinds, self.weights)[0]
        user = rng.choice(self.users)
        anonymous = rng.random() < ANONYMOUS_SHARE or (
            user["email"] is None and user["phone"] is None and user["userId"] is None
        )
        moment = self._moment()
        sent = moment + timedelta(milliseconds=rng.randint(5, 400))
        name = rng.choice(_UNNAMED) if kind == "unnamed track" else kind
        path, title, properties = self._properties(name)
        if self.rich and kind in _CUSTOM_EVENTS:
            properties = self._enriched(properties)
        event: Event = {
            "anonymousId": user["anonymousId"],
            "context": self._context(user, path, title),
            "integrations": {},
            "messageId": f"ajs-next-{self._hex(32)}",
            "originalTimestamp": self._iso(moment),
            "receivedAt": self._iso(RECEIVED_AT),
            "sentAt": self._iso(sent),
            "timestamp": self._iso(moment),
            "type": "track",
            "version": 2,
            "writeKey": "wk_3f9a0c1e7b2d4c58",
        }
        if not anonymous and user["userId"] is not None:
            event["userId"] = user["userId"]
        if kind == "identify":
            event["type"] = "identify"
            city, state, postal = user["city"]
            event["traits"] = {
                **({} if anonymous else self._identified_traits(user)),
                "firstName": user["firstName"],
                "lastName": user["lastName"],
                "createdAt": user["createdAt"],
                "address": {"city": city, "state": state, "postalCode": postal, "country": "US"},
                "plan": rng.choice(("free", "member", "vip")),
                "acceptsMarketing": rng.random() < 0.6,
            }
            return event
        if not anonymous:
            event["context"]["traits"] = self._identified_traits(user)
        if kind == "page":
            event["type"] = "page"
            event["name"] = title
            event["properties"] = properties
        else:
            event["event"] = name
            event["properties"] = properties
        if rng.random() < BAD_TIMESTAMP_SHARE:
            event["timestamp"] = rng.choice(_BAD_TIMESTAMPS)
            if event["timestamp"] == "":
                event["originalTimestamp"] = "yesterday"
        return event

    def _properties(self, kind: str) -> tuple[str, str, Event]:
        """The page the event happens on, and its ``properties``."""
        rng = self.rng
        if kind in {"page", "identify"}:
            choice = rng.random()
            if choice < 0.3:
                path, title = "/", "Example Apparel"
            elif choice < 0.7:
                product = rng.choice(self.catalogue)
                path, title = product["url"].removeprefix(_SHOP), product["name"]
            else:
                category = rng.choice(_CATEGORIES)
                path, title = f"/collections/{category.lower()}", category
            search = "?utm_source=newsletter" if rng.random() < 0.1 else ""
            return (
                path,
                title,
                {
                    "path": path,
                    "referrer": rng.choice(_REFERRERS),
                    "search": search,
                    "title": f"{title} | Example Apparel",
                    "url": f"{_SHOP}{path}{search}",
                },
            )
        if kind in {"Product Viewed", "Product Added", "Product Clicked", "Product Removed"}:
            item = self._line_item(rng.randint(1, 24))
            item["currency"] = "USD"
            if kind == "Product Added":
                item["cart_id"] = f"cart_{self._hex(12)}"
            return item["url"].removeprefix(_SHOP), item["name"], item
        if kind == "Product Added to Wishlist":
            item = self._line_item(1)
            item.update(wishlist_id=f"wl_{self._hex(8)}", wishlist_name="Favourites")
            return "/account/wishlist", "Wishlist", item
        if kind == "Product List Viewed":
            category = rng.choice(_CATEGORIES)
            products = [self._line_item(p) for p in range(1, rng.randint(2, 6))]
            return (
                f"/collections/{category.lower()}",
                category,
                {"list_id": f"list_{category.lower()}", "category": category, "products": products},
            )
        if kind == "Products Searched":
            query = f"{rng.choice(_COLOURS)} {rng.choice(_NOUNS).lower()}"
            return "/search", "Search", {"query": query}
        if kind in {"Promotion Viewed", "Promotion Clicked"}:
            return (
                "/",
                "Example Apparel",
                {
                    "promotion_id": f"promo_{rng.randint(1, 20)}",
                    "creative": "top_banner",
                    "name": "winter_sale",
                    "position": "home_banner_top",
                },
            )
        if kind == "Coupon Entered":
            return (
                "/checkout",
                "Checkout",
                {
                    "order_id": f"ord_{self._hex(10)}",
                    "cart_id": f"cart_{self._hex(12)}",
                    "coupon_id": rng.choice(("WINTER20", "WELCOME10")),
                },
            )
        if kind == "Payment Info Entered":
            return (
                "/checkout/payment",
                "Checkout",
                {
                    "checkout_id": f"chk_{self._hex(12)}",
                    "order_id": f"ord_{self._hex(10)}",
                    "step": 3,
                    "shipping_method": "ground",
                    "payment_method": rng.choice(("card", "paypal", "apple_pay")),
                },
            )
        if kind in _UNNAMED:
            return self._unnamed(kind)
        return self._order(kind)

    def _enriched(self, properties: Event) -> Event:
        """``properties`` with 1-4 products and 5-15 properties in all (``CUSTOM_HEAVY_MIX``)."""
        rng = self.rng
        products = properties.get("products")
        if not isinstance(products, list):
            products = [self._line_item(p) for p in range(1, rng.randint(1, 4) + 1)]
        properties["products"] = products[:4]
        wanted = rng.randint(5, 15)
        extras = [key for key in _EXTRA_PROPERTIES if key not in properties]
        for key in rng.sample(extras, max(0, min(len(extras), wanted - len(properties)))):
            properties[key] = self._extra(key)
        return properties

    def _extra(self, key: str) -> object:
        rng = self.rng
        draws: dict[str, Callable[[], object]] = {
            "session_id": lambda: f"sess_{self._hex(16)}",
            "page_type": lambda: rng.choice(("checkout", "cart", "collection", "account")),
            "experiment": lambda: rng.choice(("free_shipping_banner", "one_page_checkout")),
            "experiment_group": lambda: rng.choice(("control", "treatment")),
            "source": lambda: rng.choice(("web", "mobile_web", "app")),
            "loyalty_tier": lambda: rng.choice(("none", "silver", "gold")),
            "items_count": lambda: rng.randint(1, 9),
            "value": lambda: round(rng.uniform(10, 400), 2),
            "currency": lambda: "USD",
            "logged_in": lambda: rng.random() < 0.7,
            "list_name": lambda: rng.choice(_CATEGORIES),
            "step": lambda: rng.randint(1, 4),
            "shipping_method": lambda: rng.choice(("ground", "express", "pickup")),
        }
        return draws[key]()

    def _unnamed(self, name: str) -> tuple[str, str, Event]:
        """Properties of the shop's own track events, which no mapping table names."""
        rng = self.rng
        product = rng.choice(self.catalogue)
        path, title = product["url"].removeprefix(_SHOP), product["name"]
        if name == "Newsletter Subscribed":
            properties: Event = {"list": "weekly", "source": rng.choice(("footer", "popup"))}
            return "/", "Example Apparel", properties
        if name == "Video Played":
            properties = {
                "video_id": f"vid_{rng.randint(1, 40)}",
                "position": rng.randint(0, 90),
                "total_length": 94,
                "sound": rng.randint(0, 100),
                "full_screen": rng.random() < 0.2,
            }
        elif name == "Filter Applied":
            properties = {
                "list_id": f"list_{product['category'].lower()}",
                "filters": [
                    {"type": "size", "value": rng.choice(_SIZES)},
                    {"type": "color", "value": rng.choice(_COLOURS)},
                ],
                "sorts": [{"type": "price", "value": "asc"}],
            }
            path, title = f"/collections/{product['category'].lower()}", product["category"]
        elif name == "Review Submitted":
            properties = {
                "product_id": product["product_id"],
                "rating": rng.randint(1, 5),
                "review_title": "Great fit",
                "review_body": "Fits true to size, the fabric is soft and it washes well.",
            }
        elif name == "Store Locator Used":
            properties = {"zip": rng.choice(_CITIES)[2], "results": rng.randint(0, 6)}
            path, title = "/stores", "Find a store"
        else:  # Size Guide Opened, Back In Stock Requested, Quiz Completed
            properties = {
                "product_id": product["product_id"],
                "sku": product["sku"],
                "name": product["name"],
                "category": product["category"],
                "variant": f"{rng.choice(_COLOURS)} / {rng.choice(_SIZES)}",
            }
        return path, title, properties

    def _order(self, kind: str) -> tuple[str, str, Event]:
        rng = self.rng
        products = [self._line_item(p) for p in range(1, rng.randint(1, 5) + 1)]
        subtotal = round(sum(float(p["price"]) * p["quantity"] for p in products), 2)
        shipping = rng.choice((0.0, 4.95, 9.95))
        tax = round(subtotal * 0.0825, 2)
        discount = round(subtotal * 0.2, 2) if rng.random() < 0.2 else 0
        order: Event = {
            "order_id": f"ord_{self._hex(10)}",
            "affiliation": "Example Apparel Online",
            "currency": "USD",
            "products": products,
        }
        if kind == "Cart Viewed":
            return "/cart", "Cart", {"cart_id": f"cart_{self._hex(12)}", "products": products}
        if kind == "Checkout Started":
            order.update(
                value=subtotal, revenue=subtotal, shipping=shipping, tax=tax, discount=discount
            )
            if discount:
                order["coupon"] = "WINTER20"
            return "/checkout", "Checkout", order
        order.update(
            checkout_id=f"chk_{self._hex(12)}",
            total=round(subtotal + shipping + tax - discount, 2),
            subtotal=subtotal,
            revenue=subtotal,
            shipping=shipping,
            tax=tax,
            discount=discount,
        )
        if discount:
            order["coupon"] = "WINTER20"
        where = {
            "Order Completed": ("/checkout/thank-you", "Thank you"),
            "Order Updated": ("/account/orders", "Your orders"),
            "Order Refunded": ("/account/orders", "Your orders"),
            "Order Cancelled": ("/account/orders", "Your orders"),
        }
        path, title = where.get(kind, ("/", "Example Apparel"))
        return path, title, order


def generate(events: int, seed: int = DEFAULT_SEED, mix: str = "default") -> list[bytes]:
    """``events`` NDJSON lines (each ending in a newline) drawn from ``seed``, in ``MIXES[mix]``."""
    generator = _Generator(seed, users=max(50, events // 4), mix=MIXES[mix])
    return [
        orjson.dumps(generator.event(), option=orjson.OPT_APPEND_NEWLINE) for _ in range(events)
    ]
