"""The tracking clients users point at ``serve``, unchanged, end to end into a real sandbox.

segment-analytics-python and rudder-sdk-python run as their docs show: the default background
consumer thread, batches posted to ``/v1/batch``, ``flush()`` and ``shutdown()`` at the end,
through their module-level API and through a ``Client``, with gzip on and off. segment-python
sends the write key as Basic auth and as ``writeKey`` in the body, rudder as Basic auth only.
analytics.js (a browser library, so not run here) is replayed as it posts: ``text/plain``,
``writeKey`` in the body and no Authorization header, to ``/v1/i``, ``/v1/p``, ``/v1/t`` and, in
its batching mode, ``/v1/b``.

Each case sends identify, page and the eCommerce funnel (Product Viewed, Product Added, Order
Completed) for a user of its own, and checks the Attentive requests the sandbox accepted for that
user: the paths, the identifiers, the items with their prices and currencies, the order id, the
custom event type and ``occurredAt``, which is the client's timestamp corrected for its clock:
``receivedAt - (sentAt - timestamp)``. One serve and one sandbox serve every case.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import FINAL_STATES, Record, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

T = TypeVar("T")

SHOP_KEY = "wk_clients_5b7e"
WRONG_KEY = "wk_unknown_0c41"

IDENTITY = "/v1/identity-resolution/user-identifiers"
ATTRIBUTES = "/v1/attributes/custom"
CUSTOM = "/v1/events/custom"
PRODUCT_VIEW = "/v1/events/ecommerce/product-view"
ADD_TO_CART = "/v1/events/ecommerce/add-to-cart"
PURCHASE = "/v1/events/ecommerce/purchase"

KINDS = ("identify", "page", "viewed", "added", "order")
TOLERANCE = timedelta(seconds=2)
"""How far occurredAt may be from the client's timestamp: receivedAt - sentAt on loopback."""
ROUNDING = timedelta(milliseconds=1)
"""occurredAt is written with milliseconds."""
DELIVERY_TIMEOUT = 15.0

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


# --- servers, libraries ---------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def loopback_environment() -> Iterator[None]:
    """No proxy between the clients and 127.0.0.1, whatever the environment (or a .env) says."""
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXY_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("NO_PROXY", "127.0.0.1")
        patch.setenv("no_proxy", "127.0.0.1")
        yield


@pytest.fixture(scope="module")
def segment() -> ModuleType:
    return importlib.import_module("segment.analytics")


@pytest.fixture(scope="module")
def rudder() -> ModuleType:
    """rudder-sdk-python, imported without letting a stray ``.env`` change the environment.

    Its import runs ``dotenv.load_dotenv()``, which reads a ``.env`` found above site-packages
    (or the working directory) into ``os.environ``; the environment is put back as it was. The
    data plane URL is always given explicitly, so a ``TEST_DATA_PLANE_URL`` there is not used.
    """
    saved = dict(os.environ)
    try:
        return importlib.import_module("rudderstack.analytics")
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        yield process


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-clients") / "queue.db"


@dataclass(frozen=True)
class Router:
    """The serve process, its queue file and the sandbox it delivers to."""

    serve: ServeProcess
    queue: Path
    sandbox: SandboxProcess

    @property
    def url(self) -> str:
        return self.serve.url


@pytest.fixture(scope="module")
def router(sandbox: SandboxProcess, queue_path: Path) -> Iterator[Router]:
    keys = (f"shop={SHOP_KEY}",)
    with ServeProcess(queue=queue_path, sandbox=sandbox, write_keys=keys) as serve:
        yield Router(serve, queue_path, sandbox)


def client_threads() -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if type(thread).__module__.startswith(("segment.", "rudderstack."))
    ]


@pytest.fixture(autouse=True)
def no_client_threads_left() -> Iterator[None]:
    """Every test stops the consumer threads it started (a later test must not inherit them)."""
    before = set(client_threads())
    yield
    left = [thread for thread in client_threads() if thread not in before and thread.is_alive()]
    assert not left, f"client threads still running: {left}"


# --- what a case sends, and what it expects -------------------------------------------------------


@dataclass
class Funnel:
    """One user's identify, page and funnel: identifiers, messageIds and expected event times."""

    label: str
    user: str = ""
    email: str = ""
    phone: str = ""
    username: str = ""
    order_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    occurred: dict[str, datetime] = field(default_factory=dict)
    """Kind -> when the event happened by the real clock (the expected occurredAt)."""

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.user = f"{self.label}-{tag}"
        self.email = f"shopper.{tag}@example.com"
        self.phone = f"+1415555{int(tag[:6], 16) % 10000:04d}"
        self.username = f"shopper_{tag}"
        self.order_id = f"order-{tag}"
        self.ids = {kind: f"{self.label}-{kind}-{tag}" for kind in KINDS}

    def contact(self) -> dict[str, Any]:
        """The ``context`` a call carries so that Attentive gets the user's email and phone."""
        return {"traits": {"email": self.email, "phone": self.phone}}

    def traits(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "phone": self.phone,
            "username": self.username,
            "first_name": "Ada",
            "plan": "pro",
            "address": {"city": "London"},
        }


PAGE_PROPERTIES = {
    "url": "https://shop.example.com/?utm_source=newsletter",
    "path": "/",
    "title": "Example Store | Home",
    "referrer": "https://www.google.com/",
    "search": "?utm_source=newsletter",
}
VIEWED = {
    "product_id": "sku-monopoly-3",
    "sku": "G-32",
    "name": "Monopoly: 3rd Edition",
    "variant": "200 pieces",
    "price": 18.99,
    "currency": "eur",
    "quantity": 1,
    "url": "https://shop.example.com/products/monopoly-3rd-edition",
    "image_url": "https://cdn.example.com/img/monopoly-3rd-edition.jpg",
}
ADDED = {
    "product_id": "sku-uno",
    "name": "Uno Card Game",
    "price": 24.5,
    "currency": "USD",
    "quantity": 2,
}


def order_properties(funnel: Funnel) -> dict[str, Any]:
    return {
        "order_id": funnel.order_id,
        "revenue": 26.0,
        "currency": "gbp",
        "products": [
            {"product_id": "sku-monopoly-3", "sku": "45790-32", "price": 19, "quantity": 1},
            {"product_id": "sku-uno", "price": "3.50", "quantity": 2, "currency": "EUR"},
        ],
    }


def send_funnel(sender: Any, funnel: Funnel) -> None:
    """Send the funnel with a segment/rudder ``Client`` or module (the calls are the same).

    The Order Completed carries an explicit timestamp five minutes back, as a client that queued
    it offline would; the other calls let the client stamp the time.
    """
    now = datetime.now(UTC)
    funnel.occurred["identify"] = now
    sender.identify(user_id=funnel.user, traits=funnel.traits(), message_id=funnel.ids["identify"])
    funnel.occurred["page"] = datetime.now(UTC)
    sender.page(
        user_id=funnel.user,
        category="Shop",
        name="Home",
        properties=dict(PAGE_PROPERTIES),
        context=funnel.contact(),
        message_id=funnel.ids["page"],
    )
    for kind, event, properties in (
        ("viewed", "Product Viewed", VIEWED),
        ("added", "Product Added", ADDED),
    ):
        funnel.occurred[kind] = datetime.now(UTC)
        sender.track(
            user_id=funnel.user,
            event=event,
            properties=dict(properties),
            context=funnel.contact(),
            message_id=funnel.ids[kind],
        )
    ordered = datetime.now(UTC).replace(microsecond=250_000) - timedelta(minutes=5)
    funnel.occurred["order"] = ordered
    sender.track(
        user_id=funnel.user,
        event="Order Completed",
        properties=order_properties(funnel),
        context=funnel.contact(),
        timestamp=ordered,
        message_id=funnel.ids["order"],
    )


# --- checks ---------------------------------------------------------------------------------------


def read_queue(path: Path, read: Callable[[SQLiteQueue], T]) -> T:
    queue = SQLiteQueue(path)
    try:
        return read(queue)
    finally:
        queue.close()


def settled_records(path: Path, keys: list[str]) -> dict[str, Record]:
    """The queue records of ``keys`` once every one is delivered, skipped, rejected or dead."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        found = read_queue(path, lambda queue: {key: queue.record(key) for key in keys})
        records = {key: r for key, r in found.items() if r is not None}
        if len(records) == len(keys) and all(r.state in FINAL_STATES for r in records.values()):
            return records
        if time.monotonic() > deadline:
            states = {key: None if r is None else r.state.label for key, r in found.items()}
            pytest.fail(f"not settled after {DELIVERY_TIMEOUT} s: {states}")
        time.sleep(0.05)


def assert_nothing_failed(path: Path) -> None:
    counts = read_queue(path, lambda queue: queue.counts())
    failed = {s.label: counts[s] for s in (State.REJECTED, State.DEAD, State.SKIPPED) if counts[s]}
    assert not failed, f"events not delivered in the queue file: {failed}"


def client_user_id(body: dict[str, Any]) -> Any:
    if "clientUserId" in body:
        return body["clientUserId"]
    return body.get("user", {}).get("externalIdentifiers", {}).get("clientUserId")


def bodies_for(sandbox: SandboxProcess, path: str, user: str) -> list[dict[str, Any]]:
    return [r["body"] for r in sandbox.requests(path) if client_user_id(r["body"]) == user]


def moment(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def check_occurred_at(body: dict[str, Any], record: Record, expected: datetime) -> None:
    """occurredAt = receivedAt - (sentAt - timestamp), and so close to the real event time."""
    occurred = body["occurredAt"]
    assert occurred.endswith("Z")
    assert len(occurred) == len("2026-01-08T13:52:50.212Z"), occurred
    event = orjson.loads(record.event)
    sent = moment(event["sentAt"])
    original = moment(event["originalTimestamp"])
    received = datetime.fromtimestamp(record.received_at, UTC)
    corrected = received - (sent - original)
    assert abs(moment(occurred) - corrected) <= ROUNDING, (occurred, event)
    assert abs(moment(occurred) - expected) <= TOLERANCE, (occurred, expected, event)


def check_delivered(router: Router, funnel: Funnel) -> None:
    """The Attentive requests for the funnel's user are exactly the right ones."""
    path, sandbox = router.queue, router.sandbox
    records = settled_records(path, [funnel.ids[kind] for kind in KINDS])
    states = {key: r.state.label for key, r in records.items()}
    assert all(r.state is State.DELIVERED for r in records.values()), states
    by_kind = {kind: records[funnel.ids[kind]] for kind in KINDS}
    identifiers = {"clientUserId": funnel.user}
    with_username = {
        **identifiers,
        "customIdentifiers": [{"name": "username", "value": funnel.username}],
    }
    contact = {"email": funnel.email, "phone": funnel.phone}

    [identity] = bodies_for(sandbox, IDENTITY, funnel.user)
    assert identity == {**contact, **with_username}
    [attributes] = bodies_for(sandbox, ATTRIBUTES, funnel.user)
    assert attributes == {
        "properties": {"first_name": "Ada", "plan": "pro", "address.city": "London"},
        "user": {**contact, "externalIdentifiers": with_username},
    }

    user = {**contact, "externalIdentifiers": identifiers}
    [page] = bodies_for(sandbox, CUSTOM, funnel.user)
    assert page["type"] == "page"
    assert page["user"] == user
    assert page["externalEventId"] == funnel.ids["page"]
    assert page["properties"] == PAGE_PROPERTIES
    check_occurred_at(page, by_kind["page"], funnel.occurred["page"])

    [viewed] = bodies_for(sandbox, PRODUCT_VIEW, funnel.user)
    assert viewed["user"] == user
    assert viewed["items"] == [
        {
            "productId": "sku-monopoly-3",
            "productVariantId": "200 pieces",
            "price": [{"value": 18.99, "currency": "EUR"}],
            "productImage": VIEWED["image_url"],
            "productUrl": VIEWED["url"],
            "name": "Monopoly: 3rd Edition",
            "quantity": 1,
        }
    ]
    check_occurred_at(viewed, by_kind["viewed"], funnel.occurred["viewed"])

    [added] = bodies_for(sandbox, ADD_TO_CART, funnel.user)
    assert added["user"] == user
    [item] = added["items"]
    assert item["productId"] == "sku-uno"
    assert item["price"] == [{"value": 24.5, "currency": "USD"}]
    assert item["quantity"] == 2
    assert item["name"] == "Uno Card Game"
    check_occurred_at(added, by_kind["added"], funnel.occurred["added"])

    [order] = bodies_for(sandbox, PURCHASE, funnel.user)
    assert order["user"] == user
    assert order["orderId"] == funnel.order_id
    assert [(i["productId"], i["price"], i["quantity"]) for i in order["items"]] == [
        ("sku-monopoly-3", [{"value": 19, "currency": "GBP"}], 1),
        ("sku-uno", [{"value": 3.5, "currency": "EUR"}], 2),
    ]
    check_occurred_at(order, by_kind["order"], funnel.occurred["order"])
    assert_nothing_failed(path)


# --- segment-analytics-python and rudder-sdk-python -----------------------------------------------


@dataclass
class Errors:
    """An ``on_error`` callback that keeps what it is given."""

    calls: list[tuple[Exception, list[dict[str, Any]]]] = field(default_factory=list)

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        self.calls.append((error, batch))


@pytest.fixture(params=["segment", "rudder"])
def library(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.getfixturevalue(request.param)
    return module


def host_setting(module: ModuleType) -> str:
    """The module setting for the server URL: ``host`` (segment), ``dataPlaneUrl`` (rudder)."""
    return "dataPlaneUrl" if module.__name__.startswith("rudderstack") else "host"


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("api", ["module", "client"])
def test_library_funnel_is_delivered_as_the_right_attentive_requests(
    library: ModuleType,
    api: str,
    gzip: bool,
    router: Router,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Background thread, one batch, ``flush()`` then ``shutdown()``; every call delivered.

    ``max_retries=0`` only changes what happens on a failure: any answer but 200 reaches
    ``on_error`` at once instead of after minutes of backoff.
    """
    name = library.__name__.split(".")[0]
    funnel = Funnel(f"{name}-{api}-{'gzip' if gzip else 'plain'}")
    errors = Errors()
    sender: Any
    if api == "module":
        monkeypatch.setattr(library, "default_client", None)
        monkeypatch.setattr(library, "write_key", SHOP_KEY)
        monkeypatch.setattr(library, host_setting(library), router.url)
        monkeypatch.setattr(library, "gzip", gzip)
        monkeypatch.setattr(library, "on_error", errors)
        monkeypatch.setattr(library, "max_retries", 0)
        monkeypatch.setattr(library, "sync_mode", False)
        sender = library
    else:
        sender = library.Client(
            SHOP_KEY, host=router.url, gzip=gzip, on_error=errors, max_retries=0
        )
    try:
        send_funnel(sender, funnel)
        sender.flush()
    finally:
        sender.shutdown()
    assert errors.calls == []
    check_delivered(router, funnel)


@pytest.mark.parametrize("name", ["segment", "rudder"])
def test_wrong_write_key_is_401_to_on_error_and_nothing_is_stored(
    name: str,
    request: pytest.FixtureRequest,
    router: Router,
) -> None:
    module: ModuleType = request.getfixturevalue(name)
    funnel = Funnel(f"{name}-wrong-key")
    before = read_queue(router.queue, lambda queue: sum(queue.counts().values()))
    errors = Errors()
    client = module.Client(WRONG_KEY, host=router.url, on_error=errors)
    try:
        send_funnel(client, funnel)
        client.flush()
    finally:
        client.shutdown()
    keys = [funnel.ids[kind] for kind in KINDS]
    assert errors.calls, "on_error was not called"
    for error, _ in errors.calls:
        assert getattr(error, "status", None) == 401, repr(error)
        assert getattr(error, "code", None) == "unauthorized", repr(error)
    # Usually one batch; a slow consumer thread may have split it: every message is reported.
    assert [message["messageId"] for _, batch in errors.calls for message in batch] == keys
    assert read_queue(router.queue, lambda queue: [queue.record(key) for key in keys]) == [None] * 5
    assert read_queue(router.queue, lambda queue: sum(queue.counts().values())) == before


# --- analytics.js: writeKey in a text/plain body, no Authorization --------------------------------

SKEW = timedelta(hours=-3)
"""The browser's clock is three hours slow: occurredAt must still be the real event time."""


def iso(moment: datetime) -> str:
    """Date.prototype.toISOString()."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def browser_funnel(funnel: Funnel) -> list[tuple[str, dict[str, Any]]]:
    """(analytics.js path, event) for the funnel, as ``normalize()`` builds them (no sentAt)."""
    anonymous = str(uuid.uuid4())
    real_now = datetime.now(UTC)
    context = {
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
        "locale": "en-GB",
        "page": {"path": "/", "url": "https://shop.example.com/", "title": "Example Store"},
    }
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("/v1/i", "identify", {"traits": funnel.traits()}),
        ("/v1/p", "page", {"name": "Home", "properties": dict(PAGE_PROPERTIES)}),
        ("/v1/t", "viewed", {"event": "Product Viewed", "properties": dict(VIEWED)}),
        ("/v1/t", "added", {"event": "Product Added", "properties": dict(ADDED)}),
        ("/v1/t", "order", {"event": "Order Completed", "properties": order_properties(funnel)}),
    ]
    events = []
    for index, (path, kind, fields) in enumerate(calls):
        happened = real_now - timedelta(milliseconds=200 * (len(calls) - index))
        funnel.occurred[kind] = happened
        traits = {} if kind == "identify" else {"traits": funnel.contact()["traits"]}
        event = {
            "type": {"i": "identify", "p": "page", "t": "track"}[path[-1]],
            "messageId": funnel.ids[kind],
            "userId": funnel.user,
            "anonymousId": anonymous,
            "timestamp": iso(happened + SKEW),
            "context": {**context, **traits},
            "integrations": {},
            "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
            **fields,
        }
        events.append((path, event))
    return events


def post_text(client: httpx.Client, url: str, body: dict[str, Any]) -> None:
    response = client.post(url, content=orjson.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def test_analytics_js_single_calls_with_the_write_key_in_the_body(
    router: Router, browser: httpx.Client
) -> None:
    funnel = Funnel("ajs-single")
    for path, event in browser_funnel(funnel):
        sent_at = iso(datetime.now(UTC) + SKEW)
        post_text(browser, router.url + path, {**event, "sentAt": sent_at, "writeKey": SHOP_KEY})
    check_delivered(router, funnel)


def test_analytics_js_batching_mode_with_the_write_key_in_the_envelope(
    router: Router, browser: httpx.Client
) -> None:
    funnel = Funnel("ajs-batch")
    batch = [event for _, event in browser_funnel(funnel)]
    envelope = {"batch": batch, "sentAt": iso(datetime.now(UTC) + SKEW), "writeKey": SHOP_KEY}
    post_text(browser, f"{router.url}/v1/b", envelope)
    check_delivered(router, funnel)
