"""What the console's tests and its screenshot script share: events, waits, and the pages.

The page helpers drive a real Chromium (``tests.browser_harness``) through the console as an
operator would: sign in on the form, open a page, wait until it shows what it should, and save
a full-page screenshot.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from attentive_router._queue.interface import Record, State
from attentive_router._queue.sqlite import SQLiteQueue

TOKEN = "console-token-5f0c9a2e71d4b8"
"""The console token the tests sign in with (at least 16 characters)."""

CUSTOM = "/v1/events/custom"
VIEWPORT = {"width": 1280, "height": 800}
"""The browser's window: screenshots are this wide (and as tall as the page)."""


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def custom_event(message_id: str, email: str, user_id: str, **fields: Any) -> dict[str, Any]:
    """A track event the rules send to ``/v1/events/custom``."""
    return {
        "type": "track",
        "event": "Gift Card Redeemed",
        "messageId": message_id,
        "userId": user_id,
        "properties": {"amount": 25, "currency": "USD"},
        "context": {"traits": {"email": email}},
        **fields,
    }


def send(url: str, write_key: str, batch: list[dict[str, Any]]) -> None:
    """POST a batch to ``serve`` with the write key (HTTP Basic); it must be accepted."""
    response = httpx.post(
        f"{url}/v1/batch", json={"batch": batch}, auth=(write_key, ""), trust_env=False
    )
    assert response.status_code == 200, response.text


def record_of(queue: Path, key: str) -> Record | None:
    """The queue's latest record with this messageId, read through the queue file."""
    store = SQLiteQueue(queue)
    try:
        return store.record(key)
    finally:
        store.close()


def wait_for_state(queue: Path, key: str, state: State, timeout: float = 20.0) -> Record:
    """Wait until the event ``key`` is in ``state``; return its record."""
    deadline = time.monotonic() + timeout
    while True:
        record = record_of(queue, key)
        if record is not None and record.state is state:
            return record
        if time.monotonic() > deadline:
            found = None if record is None else record.state
            raise AssertionError(f"{key}: {found} after {timeout:g} s, not {state}")
        time.sleep(0.05)


# --- pages in the browser -------------------------------------------------------------------------


def sign_in(page: Any, url: str, token: str = TOKEN) -> None:
    """Open the console and sign in on the form; ends on the live events."""
    page.goto(f"{url}/console/events")
    page.fill("#token", token)
    page.click("form[action='/console/sign-in'] button[type=submit]")
    page.wait_for_url(f"{url}/console/events")


def capture(page: Any, path: Path) -> Path:
    """A full-page PNG of what the page shows now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def row_with(page: Any, text: str) -> Any:
    """The live events' row showing ``text`` (a user id)."""
    return page.locator("#event-rows tr", has_text=text)


def wait_for_badge(page: Any, text: str, outcome: str, timeout: float = 20.0) -> None:
    """Wait (the list polls every 2 s, without reloading) until a row shows the outcome."""
    row_with(page, text).locator(f".outcome.{outcome}").first.wait_for(timeout=timeout * 1000)


def pick_sample(page: Any, name: str) -> None:
    """The mapping tester: load a sample, then show its outcome."""
    page.select_option("#sample", label=name)
    page.click("#load-sample")
    page.wait_for_selector(f"#sample option[selected]:text-is('{name}')", state="attached")
    page.click("#try-mapping")
    page.wait_for_selector("#result-1")


def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` (no browser involved) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)
