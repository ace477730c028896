"""Screenshots of the operator console for the README: ``python -m tests.console_screenshots DIR``.

Starts a sandbox (rate-limited, with a few scripted failures) and ``serve`` with the console on
a temporary queue, posts a realistic mix of events (delivered, skipped, rejected, retried,
throttled with 429, one dead letter), waits until delivery has settled, and saves full-page
PNGs of the console's pages, 1280 px wide, into DIR. ``make screenshots`` writes them to docs/.
It uses the same page helpers as the console's browser tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.browser_harness import chromium, missing_parts, opened
from tests.console_harness import (
    TOKEN,
    VIEWPORT,
    capture,
    pick_sample,
    row_with,
    send,
    sign_in,
)

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

KEY = "wk_shop_web_2f9d"
DEAD = "evt-9f27c1"
"""Attentive answers 400 to this event: it ends as a dead letter."""
RETRIED = "evt-41ab07"
"""Attentive answers 503 once to this one: it is retried, then delivered."""
CUSTOM_RATE = 4
"""Requests per second the sandbox allows to /v1/events/custom (more get 429)."""

PEOPLE = (
    ("user-1042", "ada.lovelace@example.com"),
    ("user-2231", "grace.hopper@example.com"),
    ("user-3307", "alan.turing@example.com"),
    ("user-4410", "katherine.johnson@example.com"),
    ("user-5528", "edsger.dijkstra@example.com"),
)


def traits(email: str) -> dict[str, Any]:
    return {"traits": {"email": email}}


def events() -> list[dict[str, Any]]:
    """Events as a shop's site and backend send them."""
    batch: list[dict[str, Any]] = []
    for n, (user, email) in enumerate(PEOPLE):
        batch += [
            {
                "type": "identify",
                "messageId": f"evt-id-{n}",
                "userId": user,
                "traits": {"email": email, "first_name": email.split(".")[0].title()},
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "messageId": f"evt-pv-{n}",
                "userId": user,
                "context": traits(email),
                "properties": {"product_id": f"sku-{100 + n}", "name": "Wool Scarf", "price": 39},
            },
        ]
        for m in range(2):
            batch.append(
                {
                    "type": "track",
                    "event": "Newsletter Opened",
                    "messageId": f"evt-nl-{n}-{m}",
                    "userId": user,
                    "context": traits(email),
                    "properties": {"campaign": f"autumn-{m + 1}"},
                }
            )
    batch += [
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "evt-order-1",
            "userId": PEOPLE[0][0],
            "context": traits(PEOPLE[0][1]),
            "properties": {
                "order_id": "ord-7731",
                "total": 78.0,
                "currency": "USD",
                "products": [
                    {"product_id": "sku-100", "name": "Wool Scarf", "price": 39.0, "quantity": 2}
                ],
            },
        },
        {
            "type": "track",
            "event": "Gift Card Redeemed",
            "messageId": DEAD,
            "userId": PEOPLE[1][0],
            "context": traits(PEOPLE[1][1]),
            "properties": {"amount": 25},
        },
        {
            "type": "track",
            "event": "Wishlist Shared",
            "messageId": RETRIED,
            "userId": PEOPLE[2][0],
            "context": traits(PEOPLE[2][1]),
            "properties": {"items": 3},
        },
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "evt-anon-1",
            "anonymousId": "anon-5c1d",
            "properties": {"product_id": "sku-104", "price": 12},
        },
        {"type": "page", "messageId": "evt-page-1", "userId": PEOPLE[3][0], "name": "Home"},
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "evt-bad-price",
            "userId": PEOPLE[4][0],
            "context": traits(PEOPLE[4][1]),
            "properties": {"product_id": "sku-101", "price": "free"},
        },
    ]
    return batch


def settled(queue: Path, timeout: float = 60.0) -> None:
    """Wait until nothing is waiting for delivery."""
    deadline = time.monotonic() + timeout
    while True:
        store = SQLiteQueue(queue)
        try:
            counts = store.counts()
        finally:
            store.close()
        if counts[State.QUEUED] + counts[State.IN_FLIGHT] == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"delivery did not settle within {timeout:g} s: {counts}")
        time.sleep(0.1)


def shoot(browser: Any, url: str, out: Path) -> list[Path]:
    """Sign in and save each page; return the files."""
    saved = []
    with opened(browser) as tab:
        page = tab.page
        page.set_viewport_size(VIEWPORT)
        sign_in(page, url)
        page.wait_for_selector("#event-rows tr[data-id]")
        saved.append(capture(page, out / "console-events.png"))
        with page.expect_navigation():
            row_with(page, "Order Completed").locator("a").first.click()
        saved.append(capture(page, out / "console-event.png"))
        page.goto(f"{url}/console/overview")
        page.wait_for_selector(".endpoint svg")
        saved.append(capture(page, out / "console-overview.png"))
        page.goto(f"{url}/console/dead-letters")
        page.wait_for_selector("#dead-letters tr[data-id]")
        saved.append(capture(page, out / "console-dead-letters.png"))
        page.goto(f"{url}/console/mapping")
        pick_sample(page, "rejected: a price that is not a number")
        saved.append(capture(page, out / "console-mapping.png"))
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.console_screenshots")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="where the PNGs go")
    args = parser.parse_args(argv)
    missing = missing_parts(analytics_js=False)
    if missing:
        print(f"screenshots need {', '.join(missing)} (run `make browser`)", file=sys.stderr)
        return 2
    faults = {"scripts": {DEAD: [400], RETRIED: [503]}, "retry_after": "1"}
    with (
        tempfile.TemporaryDirectory(prefix="console-screenshots-") as folder,
        SandboxProcess(faults=faults, rate_limits={"/v1/events/custom": CUSTOM_RATE}) as sandbox,
    ):
        queue = Path(folder) / "queue.db"
        with ServeProcess(
            queue=queue,
            sandbox=sandbox,
            write_keys=(f"web={KEY}",),
            args=["--console-token", TOKEN],
        ) as serve:
            send(serve.url, KEY, events())
            settled(queue)
            with chromium() as browser:
                saved = shoot(browser, serve.url, args.out)
    for path in saved:
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
