"""analytics.js in a real Chromium, posting to a real ``serve`` that delivers to the sandbox.

Debian's Chromium runs headless under Playwright (one browser for the module, a fresh context
per case); Segment's ``@segment/analytics-next`` and ``@segment/snippet`` come unmodified from
npm. The snippet and the ``AnalyticsBrowser.load`` call are taken from the README's browser
section, so what the README tells a site to paste is what runs here. The snippet always loads
over https, so ``serve`` sits behind a TLS front on 127.0.0.1, as it would behind a proxy in
production (``--public-url``). Each case checks the bodies the sandbox accepted for a user of its
own; on failure the page's network log and console are printed.

``make browser`` installs Chromium and the npm packages. Without them these tests skip with the
reason, except in CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser_harness import (
    UMD,
    PageServer,
    Tab,
    TlsFront,
    chromium,
    free_port,
    html_page,
    opened,
    readme_npm_load,
    readme_snippet,
    require_parts,
    self_signed_certificate,
    stock_snippet,
    wait_for,
)

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

KEY = "wk_browser_7d21"
IDENTITY = "/v1/identity-resolution/user-identifiers"
ATTRIBUTES = "/v1/attributes/custom"
CUSTOM = "/v1/events/custom"
PRODUCT_VIEW = "/v1/events/ecommerce/product-view"
PURCHASE = "/v1/events/ecommerce/purchase"
TIMEOUT = 20.0


@pytest.fixture(scope="module", autouse=True)
def collected() -> Iterator[None]:
    """Whatever the browser's driver leaves for the garbage collector goes now, in this module."""
    yield
    gc.collect()


@pytest.fixture(scope="module", autouse=True)
def browser_parts() -> None:
    require_parts()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as started:
        yield started


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        yield process


@pytest.fixture(scope="module")
def site() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFront]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    tls = TlsFront(cert, key)
    yield tls
    tls.close()


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser") / "queue.db"


@pytest.fixture(scope="module")
def serve(
    sandbox: SandboxProcess,
    site: PageServer,
    front: TlsFront,
    queue_path: Path,
) -> Iterator[ServeProcess]:
    args = ["--cors-origin", site.origin, "--public-url", f"https://{front.host}"]
    args += ["--analytics-js", str(UMD)]
    with ServeProcess(
        queue=queue_path, sandbox=sandbox, write_keys=(f"shop={KEY}",), args=args
    ) as process:
        front.backend = int(process.url.rsplit(":", 1)[1])
        yield process


# --- helpers --------------------------------------------------------------------------------------


def client_user_id(body: dict[str, Any]) -> Any:
    if "clientUserId" in body:
        return body["clientUserId"]
    return body.get("user", {}).get("externalIdentifiers", {}).get("clientUserId")


def bodies(sandbox: SandboxProcess, path: str, user: str) -> list[dict[str, Any]]:
    return [r["body"] for r in sandbox.requests(path) if client_user_id(r["body"]) == user]


def arrived(
    sandbox: SandboxProcess, tab: Tab, path: str, user: str, count: int = 1
) -> list[dict[str, Any]]:
    """Wait until the sandbox accepted ``count`` requests to ``path`` for ``user``."""

    def check() -> list[dict[str, Any]] | None:
        found = bodies(sandbox, path, user)
        return found if len(found) >= count else None

    return wait_for(f"{count} x {path} for {user}", check, TIMEOUT, tab)


def js(value: Any) -> str:
    return json.dumps(value)


def calls(*lines: str) -> str:
    return "<script>" + "\n".join(lines) + "</script>"


def new_user() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"ada-{tag}", f"ada.{tag}@example.com"


VIEWED = {"product_id": "sku-tee", "name": "Tee", "price": 19.99, "currency": "USD"}


def order(order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "currency": "EUR",
        "products": [
            {"product_id": "sku-tee", "name": "Tee", "price": 19.99, "quantity": 2},
            {"product_id": "sku-cap", "name": "Cap", "price": "7.50", "quantity": 1},
        ],
    }


def records_for(queue_path: Path, user: str) -> list[Any]:
    """Every queue record whose event names ``user`` (in any state)."""
    queue = SQLiteQueue(queue_path)
    try:
        found, after = [], 0
        while batch := queue.records(limit=500, after=after):
            found += [record for record in batch if user.encode() in record.event]
            after = batch[-1].id
        return found
    finally:
        queue.close()


# --- the README's snippet is the stock one --------------------------------------------------------


@pytest.mark.usefixtures("browser_parts")
def test_the_readme_snippet_is_segments_own_with_only_the_host_changed() -> None:
    host = "events.shop.example"
    assert readme_snippet(host, "YOUR_WRITE_KEY").strip() == (
        "<script>\n" + stock_snippet(host, "YOUR_WRITE_KEY") + "\n</script>"
    )
    # And Segment's own is the same text with its CDN's host.
    assert stock_snippet("cdn.segment.com", "k").replace("cdn.segment.com", host) == (
        stock_snippet(host, "k")
    )


# --- the drop-in: stock snippet, host changed -----------------------------------------------------


@pytest.mark.usefixtures("serve")
def test_stock_snippet_delivers_identify_page_and_track_end_to_end(
    browser: Any, sandbox: SandboxProcess, site: PageServer, front: TlsFront
) -> None:
    user, email = new_user()
    snippet = readme_snippet(front.host, KEY)
    landing = site.page(
        f"/shop-{user}",
        html_page(
            snippet,
            calls(
                f"analytics.identify({js(user)}, {js({'email': email, 'plan': 'pro'})});",
                f"analytics.track('Product Viewed', {js(VIEWED)});",
            ),
        ),
    )
    checkout = site.page(
        f"/checkout-{user}",
        html_page(snippet, calls(f"analytics.track('Order Completed', {js(order(user))});")),
    )
    with opened(browser) as tab:
        tab.page.goto(landing)
        identity = arrived(sandbox, tab, IDENTITY, user)
        assert identity == [{"clientUserId": user, "email": email}]
        attributes = arrived(sandbox, tab, ATTRIBUTES, user)
        assert attributes[0]["properties"] == {"plan": "pro"}
        viewed = arrived(sandbox, tab, PRODUCT_VIEW, user)
        assert viewed[0]["items"] == [
            {
                "productId": "sku-tee",
                "productVariantId": "sku-tee",
                "price": [{"value": 19.99, "currency": "USD"}],
                "name": "Tee",
            }
        ]
        # The next page: the snippet's page() now carries the identified user.
        tab.page.goto(checkout)
        purchase = arrived(sandbox, tab, PURCHASE, user)
        assert purchase[0]["orderId"] == user
        assert [(i["productId"], i["quantity"], i["price"]) for i in purchase[0]["items"]] == [
            ("sku-tee", 2, [{"value": 19.99, "currency": "EUR"}]),
            ("sku-cap", 1, [{"value": 7.5, "currency": "EUR"}]),
        ]
        pages = wait_for(
            "the checkout page view",
            lambda: (
                [
                    body
                    for body in bodies(sandbox, CUSTOM, user)
                    if body["properties"].get("path") == f"/checkout-{user}"
                ]
                or None
            ),
            TIMEOUT,
            tab,
        )
        assert pages[0]["type"] == "page"
        assert pages[0]["properties"]["url"] == checkout
        assert pages[0]["properties"]["title"] == "Example Store"
        # The library came from serve, its settings too, and every call went to serve.
        tab.pause(0.2)
        assert tab.requests_to(rf"<- 200 GET https://{front.host}/analytics.js/v1/{KEY}/")
        assert tab.requests_to(rf"<- 200 GET https://{front.host}/v1/projects/{KEY}/settings")
        posts = tab.requests_to(r"-> POST ")
        assert posts, tab.explain()
        assert all(f"https://{front.host}/v1/" in line for line in posts), tab.explain()
        assert {line.rsplit("/", 1)[1] for line in posts} >= {"i", "p", "t"}


def test_settings_name_this_server_and_turn_telemetry_off(
    serve: ServeProcess, front: TlsFront, site: PageServer
) -> None:
    response = serve.get(f"/v1/projects/{KEY}/settings")
    assert response.status_code == 200
    assert response.json() == {
        "integrations": {
            "Segment.io": {"apiKey": KEY, "apiHost": f"{front.host}/v1", "protocol": "https"}
        },
        "metrics": {"sampleRate": 0, "host": f"{front.host}/v1"},
    }
    assert response.headers["cache-control"] == "public, max-age=300"
    allowed = httpx.get(
        f"{serve.url}/v1/projects/{KEY}/settings", headers={"Origin": site.origin}, timeout=10
    )
    assert allowed.headers["access-control-allow-origin"] == site.origin
    unknown = serve.get("/v1/projects/wk_someone_else/settings")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "unknown_write_key"
    assert KEY not in unknown.text


# --- the npm package ------------------------------------------------------------------------------


def npm_page(site: PageServer, path: str, load: str, body: str) -> str:
    library = site.file(
        "/assets/analytics-next.umd.js", (UMD / "index.js").read_bytes(), "text/javascript"
    )
    return site.page(path, html_page(f"<script src='{library}'></script>" + calls(load), body))


@pytest.mark.parametrize("strategy", ["standard", "batching"])
@pytest.mark.usefixtures("serve")
def test_npm_analytics_browser_load_delivers(
    browser: Any,
    sandbox: SandboxProcess,
    site: PageServer,
    front: TlsFront,
    strategy: str,
) -> None:
    user, email = new_user()
    load = readme_npm_load(f"https://{front.host}", KEY)
    if strategy == "batching":
        options = {
            "integrations": {
                "Segment.io": {
                    "deliveryStrategy": {
                        "strategy": "batching",
                        "config": {"size": 10, "timeout": 500},
                    }
                }
            }
        }
        load = load.replace("cdnURL:", "__CDN__").replace("});", f"}}, {js(options)});", 1)
        load = load.replace("__CDN__", "cdnURL:")
    # The README's example identifies user-42; each case has its own user.
    load = load.replace('"user-42"', js(user)).replace('"ada@example.com"', js(email))
    url = npm_page(site, f"/npm-{strategy}-{user}", load, "")
    with opened(browser) as tab:
        tab.page.goto(url)
        assert arrived(sandbox, tab, IDENTITY, user) == [{"clientUserId": user, "email": email}]
        viewed = arrived(sandbox, tab, PRODUCT_VIEW, user)
        assert viewed[0]["items"][0]["productId"] == "sku-1"
        tab.pause(0.2)
        endpoint = "b" if strategy == "batching" else "t"
        assert tab.requests_to(rf"-> POST https://{front.host}/v1/{endpoint}$"), tab.explain()
        if strategy == "batching":
            assert not tab.requests_to(r"-> POST .*/v1/[tpi]$"), tab.explain()


@pytest.mark.usefixtures("serve")
def test_npm_load_with_a_wrong_write_key_gets_404_settings_and_stores_nothing(
    browser: Any, site: PageServer, front: TlsFront, queue_path: Path
) -> None:
    user, _ = new_user()
    load = readme_npm_load(f"https://{front.host}", "wk_not_ours").replace('"user-42"', js(user))
    url = npm_page(site, f"/wrong-key-{user}", load, "")
    with opened(browser) as tab:
        tab.page.goto(url)
        wait_for(
            "settings answered 404",
            lambda: tab.requests_to(r"<- 404 GET .*/v1/projects/wk_not_ours/settings") or None,
            TIMEOUT,
            tab,
        )
        tab.pause(1.0)
        assert not tab.requests_to(r"-> POST "), tab.explain()
    assert records_for(queue_path, user) == []


@pytest.mark.usefixtures("serve")
def test_stock_snippet_with_a_wrong_write_key_loads_nothing_and_stores_nothing(
    browser: Any, site: PageServer, front: TlsFront, queue_path: Path
) -> None:
    user, _ = new_user()
    snippet = readme_snippet(front.host, "wk_not_ours")
    url = site.page(
        f"/wrong-snippet-{user}",
        html_page(snippet, calls(f"analytics.identify({js(user)});")),
    )
    with opened(browser) as tab:
        tab.page.goto(url)
        wait_for(
            "analytics.js refused",
            lambda: tab.requests_to(r"<- 404 GET .*/analytics.js/v1/wk_not_ours/") or None,
            TIMEOUT,
            tab,
        )
        tab.pause(1.0)
        assert not tab.requests_to(r"-> POST "), tab.explain()
    assert records_for(queue_path, user) == []


# --- an origin that is not allowed ----------------------------------------------------------------


def test_a_page_on_an_origin_not_allowed_stores_nothing_and_the_log_says_why(
    browser: Any, serve: ServeProcess, front: TlsFront, queue_path: Path
) -> None:
    other = PageServer()
    try:
        user, _ = new_user()
        snippet = readme_snippet(front.host, KEY)
        url = other.page(
            f"/elsewhere-{user}",
            html_page(
                snippet,
                calls(
                    f"analytics.identify({js(user)});",
                    f"analytics.track('Product Viewed', {js(VIEWED)});",
                ),
            ),
        )
        with opened(browser) as tab:
            tab.page.goto(url)
            wait_for(
                "the settings refused",
                lambda: tab.requests_to(r"(<- 403|xx) GET .*/settings") or None,
                TIMEOUT,
                tab,
            )
            tab.pause(1.0)
        assert records_for(queue_path, user) == []
        refused = [
            json.loads(line) for line in serve.stderr().splitlines() if '"origin_refused"' in line
        ]
        assert any(entry["about"] == other.origin for entry in refused), serve.stderr()
    finally:
        other.close()


# --- leaving the page -----------------------------------------------------------------------------

KEEPALIVE = {"integrations": {"Segment.io": {"deliveryStrategy": {"config": {"keepalive": True}}}}}

LEAVE_WHEN_SENT = """
(function () {
  var send = window.fetch;
  window.fetch = function (url) {
    var sent = send.apply(this, arguments);
    if (String(url).slice(-5) === "/v1/t") { window.location.href = %s; }
    return sent;
  };
})();
"""
"""Navigates away the moment analytics.js hands the track request to the browser."""


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "default"])
@pytest.mark.usefixtures("serve")
def test_a_request_in_flight_when_the_page_navigates_away(
    browser: Any,
    sandbox: SandboxProcess,
    site: PageServer,
    front: TlsFront,
    keepalive: bool,
) -> None:
    """With ``keepalive`` in the load options the browser finishes the request after the page
    is gone. Without it (the snippet's default) the request is cut off, and analytics.js sends
    it again from its stored queue when the next page of the site loads it."""
    user, email = new_user()
    snippet = readme_snippet(front.host, KEY)
    if keepalive:
        snippet = snippet.replace(
            f'analytics.load("{KEY}");', f'analytics.load("{KEY}", {js(KEEPALIVE)});'
        )
        assert js(KEEPALIVE) in snippet
        away = site.page(f"/away-{user}", html_page("", "", title="Elsewhere"))
    else:
        away = site.page(f"/next-{user}", html_page(snippet, "", title="Next page"))
    url = site.page(
        f"/leaving-{user}",
        html_page(
            "<script>" + LEAVE_WHEN_SENT % js(away) + "</script>" + snippet,
            calls(
                f"analytics.identify({js(user)}, {js({'email': email})});",
                f"analytics.track('Order Completed', {js(order(user))});",
            ),
        ),
    )
    with opened(browser) as tab:
        tab.page.goto(url)
        wait_for("navigated away", lambda: tab.page.url == away or None, TIMEOUT, tab)
        purchase = arrived(sandbox, tab, PURCHASE, user)
        assert purchase[0]["orderId"] == user
        assert len(bodies(sandbox, PURCHASE, user)) == 1


# --- serve down, then up --------------------------------------------------------------------------


def test_events_fired_while_serve_is_down_arrive_when_it_is_back(
    browser: Any,
    sandbox: SandboxProcess,
    site: PageServer,
    tmp_path: Path,
) -> None:
    """The site hosts the settings itself; serve is down when the events fire, up later."""
    port = free_port()
    user, email = new_user()
    settings = {
        "integrations": {
            "Segment.io": {"apiKey": KEY, "apiHost": f"127.0.0.1:{port}/v1", "protocol": "http"}
        },
        "metrics": {"sampleRate": 0},
    }
    site.file(
        f"/own-cdn/v1/projects/{KEY}/settings", json.dumps(settings).encode(), "application/json"
    )
    load = (
        "window.analytics = window.AnalyticsNext.AnalyticsBrowser.load("
        f"{{writeKey: {js(KEY)}, cdnURL: {js(site.origin + '/own-cdn')}}});\n"
        f"analytics.identify({js(user)}, {js({'email': email})});\n"
        f"analytics.track('Product Viewed', {js(VIEWED)});"
    )
    url = npm_page(site, f"/outage-{user}", load, "")
    with opened(browser) as tab:
        tab.page.goto(url)
        wait_for(
            "a refused POST",
            lambda: tab.requests_to(rf"xx POST http://127.0.0.1:{port}/v1/") or None,
            TIMEOUT,
            tab,
        )
        args = ["--port", str(port), "--cors-origin", site.origin]
        with ServeProcess(
            queue=tmp_path / "queue.db", sandbox=sandbox, write_keys=(KEY,), args=args
        ):
            identity = arrived(sandbox, tab, IDENTITY, user)
            assert identity == [{"clientUserId": user, "email": email}]
            assert arrived(sandbox, tab, PRODUCT_VIEW, user)[0]["items"][0]["productId"] == (
                "sku-tee"
            )


@pytest.mark.usefixtures("serve")
def test_when_the_settings_cannot_be_loaded_the_page_sends_nothing_even_later(
    browser: Any, site: PageServer, front: TlsFront, queue_path: Path
) -> None:
    """Where events are lost, as the README says: serve down at page load in the drop-in setup.

    analytics.js gives up on a failed settings request: the calls made on that page are not
    kept, and nothing is sent when the server is back.
    """
    user, _ = new_user()
    load = readme_npm_load(f"https://{front.host}", KEY).replace('"user-42"', js(user))
    url = npm_page(site, f"/down-at-load-{user}", load, "")
    backend, front.backend = front.backend, None
    try:
        with opened(browser) as tab:
            tab.page.goto(url)
            wait_for(
                "the settings request failed",
                lambda: tab.requests_to(r"xx GET .*/v1/projects/.*/settings") or None,
                TIMEOUT,
                tab,
            )
            front.backend = backend
            tab.pause(3.0)
            assert not tab.requests_to(r"-> POST "), tab.explain()
    finally:
        front.backend = backend
    assert records_for(queue_path, user) == []
