"""The operator console in a real Chromium: signing in, live events, one event, replay, mapping.

``serve`` runs with ``--console-token`` and delivers to a sandbox that answers 400 to the dead
letters' first requests (and accepts them afterwards, so a replay is delivered). Events are
posted through the ingest API with the write key, as a site would; the browser only reads and
clicks. Each case opens its own browser context and signs in on the form, and saves a
screenshot of the page it checks under its ``tmp_path``.

Debian's Chromium and the playwright package (``make browser``) are needed: without them these
tests skip with the reason, except in CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser_harness import Tab, chromium, opened, require_parts, wait_for
from tests.console_harness import (
    CUSTOM,
    TOKEN,
    capture,
    custom_event,
    is_png,
    pick_sample,
    row_with,
    send,
    sign_in,
    uid,
    wait_for_badge,
    wait_for_state,
)

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import State
from attentive_router._sandbox.process import SandboxProcess

KEY = "wk_console_browser_41b7"
DEAD_LIVE = "console-browser-dead-live"
DEAD_REPLAY = "console-browser-dead-replay"
"""The sandbox answers 400 to these events' first requests, then accepts them."""


@pytest.fixture(scope="module", autouse=True)
def collected() -> Iterator[None]:
    """Whatever the browser's driver leaves for the garbage collector goes now, in this module."""
    yield
    gc.collect()


@pytest.fixture(scope="module", autouse=True)
def browser_parts() -> None:
    require_parts(analytics_js=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as started:
        yield started


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    faults = {"scripts": {DEAD_LIVE: [400], DEAD_REPLAY: [400]}}
    with SandboxProcess(faults=faults, no_rate_limits=True) as process:
        yield process


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-browser") / "queue.db"


@pytest.fixture(scope="module")
def serve(sandbox: SandboxProcess, queue_path: Path) -> Iterator[ServeProcess]:
    with ServeProcess(
        queue=queue_path,
        sandbox=sandbox,
        write_keys=(f"shop={KEY}",),
        args=["--console-token", TOKEN],
    ) as process:
        yield process


class Three:
    """One delivered, one skipped (no identifier) and one dead-lettered event, by user id."""

    def __init__(self, dead_key: str, queue: Path) -> None:
        self.queue = queue
        self.delivered = uid("delivered")
        self.skipped = uid("skipped")
        self.dead = uid("dead")
        self.dead_key = dead_key
        self.email = f"{uid('shopper')}@example.com"

    def batch(self) -> list[dict[str, Any]]:
        skipped = custom_event(self.skipped, "", self.skipped)
        del skipped["userId"], skipped["context"]
        skipped["anonymousId"] = self.skipped
        return [
            custom_event(self.delivered, self.email, self.delivered),
            skipped,
            custom_event(self.dead_key, f"{self.dead}@example.com", self.dead),
        ]


def page_errors(tab: Tab) -> list[str]:
    """Scripts that failed and files the browser refused (the 401 of a page itself is no error)."""
    return [line for line in tab.console if line.startswith("pageerror") or "Refused" in line]


@pytest.fixture(scope="module")
def posted(serve: ServeProcess, queue_path: Path) -> Three:
    """Three events, settled before the cases that read them start."""
    three = Three(DEAD_REPLAY, queue_path)
    send(serve.url, KEY, three.batch())
    wait_for_state(queue_path, three.delivered, State.DELIVERED)
    wait_for_state(queue_path, three.skipped, State.SKIPPED)
    wait_for_state(queue_path, DEAD_REPLAY, State.DEAD)
    return three


def test_signing_in_on_the_form(browser: Any, serve: ServeProcess, tmp_path: Path) -> None:
    with opened(browser) as tab:
        page = tab.page
        answer = page.goto(f"{serve.url}/console/overview")
        assert answer.status == 401
        assert page.locator("h1").inner_text() == "Sign in to the console"
        assert page.locator("nav").count() == 0  # no link to any page before signing in
        styled = "getComputedStyle(document.querySelector('section.sign-in')).maxWidth"
        assert page.evaluate(styled) == "480px"  # console.css applies (30rem), inline
        assert not tab.requests_to(r"/console/static/")  # nothing else loads before signing in
        assert not page_errors(tab)
        shot = capture(page, tmp_path / "sign-in.png")
        page.fill("#token", KEY)  # a write key is no console token
        page.click("button[type=submit]")
        page.wait_for_selector("text=That is not the console token.")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{serve.url}/console/overview")  # back where it was going
        assert page.locator("h1").inner_text() == "Delivery overview"
        cookies = {c["name"]: c for c in tab.context.cookies()}
        cookie = cookies["attentive_router_console"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
            True,
            "Strict",
            "/console",
        )
        assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
        assert is_png(shot)


def test_live_events_arrive_without_reloading_with_their_outcomes(
    browser: Any, serve: ServeProcess, queue_path: Path, tmp_path: Path
) -> None:
    three = Three(DEAD_LIVE, queue_path)
    with opened(browser) as tab:
        page = tab.page
        sign_in(page, serve.url)
        page.evaluate("window.stillTheSamePage = true")
        assert row_with(page, three.delivered).count() == 0
        send(serve.url, KEY, three.batch())
        for user, outcome in (
            (three.delivered, "delivered"),
            (three.skipped, "skipped"),
            (three.dead, "dead_lettered"),
        ):
            wait_for_badge(page, user, outcome)
        assert page.evaluate("window.stillTheSamePage") is True
        assert "no_identifier" in row_with(page, three.skipped).inner_text()
        assert "permanent_error" in row_with(page, three.dead).inner_text()
        assert not page_errors(tab)
        assert is_png(capture(page, tmp_path / "events.png"))


def test_an_event_shows_its_attentive_request_and_the_answers(
    browser: Any, serve: ServeProcess, posted: Three, tmp_path: Path
) -> None:
    with opened(browser) as tab:
        page = tab.page
        sign_in(page, serve.url)
        row_with(page, posted.delivered).locator("td").nth(5).click()  # the row opens
        page.wait_for_url("**/console/events/default/*")
        assert page.locator("#outcome").inner_text() == "delivered"
        request = page.locator(".request", has_text=f"POST {CUSTOM}")
        body = request.locator("pre").inner_text()
        assert posted.delivered in body
        assert posted.email in body
        assert '"type": "Gift Card Redeemed"' in body
        answers = page.locator("#answers tbody tr")
        assert answers.count() == 1
        cells = answers.first.locator("td")
        assert cells.nth(1).inner_text() == CUSTOM
        assert cells.nth(2).inner_text() == "200"
        assert is_png(capture(page, tmp_path / "event.png"))

        page.goto(f"{serve.url}/console/events?q={posted.skipped}")
        with page.expect_navigation():
            page.click(f"#event-rows tr:has-text('{posted.skipped}') a")
        why = page.locator("#why").inner_text()
        assert "Skipped (no_identifier)" in why
        assert "none of traits.email, traits.phone or userId is present" in why
        assert page.locator("text=None: nothing was sent.").count() == 1
        assert page.locator("#answers").count() == 0


def test_replaying_a_dead_letter_delivers_it(
    browser: Any,
    serve: ServeProcess,
    sandbox: SandboxProcess,
    posted: Three,
    tmp_path: Path,
) -> None:
    dead = wait_for_state(posted.queue, DEAD_REPLAY, State.DEAD)
    with opened(browser) as tab:
        page = tab.page
        sign_in(page, serve.url)
        page.click("nav >> text=Dead letters")
        row = page.locator(f"#dead-letters tr[data-id='default/{dead.id}']")
        assert "permanent_error" in row.inner_text()
        assert f"400 from {CUSTOM}" in row.inner_text()
        assert is_png(capture(page, tmp_path / "dead-letters.png"))
        row.locator("input[name=pick]").check()
        with page.expect_navigation():
            page.click("#replay-selected")
        assert page.locator("#replayed").inner_text().startswith("1 dead letter replayed")

        def accepted() -> list[dict[str, Any]] | None:
            bodies = [
                r["body"]
                for r in sandbox.requests(CUSTOM)
                if r["body"].get("externalEventId") == DEAD_REPLAY
            ]
            return bodies or None

        [body] = wait_for("the sandbox accepts the replayed event", accepted, 20, tab)
        assert body["user"]["email"] == f"{posted.dead}@example.com"
        wait_for_state(posted.queue, DEAD_REPLAY, State.DELIVERED)
        page.goto(f"{serve.url}/console/events")
        wait_for_badge(page, posted.dead, "delivered")
        page.goto(f"{serve.url}/console/events/default/{dead.id}")
        assert page.locator("#outcome").inner_text() == "delivered"
        statuses = page.locator("#answers tbody tr td:nth-child(3)").all_inner_texts()
        assert statuses == ["400", "200"]  # the first answer, then the replay's


def test_the_mapping_tester_explains_a_skipped_and_a_rejected_sample(
    browser: Any, serve: ServeProcess, tmp_path: Path
) -> None:
    with opened(browser) as tab:
        page = tab.page
        sign_in(page, serve.url)
        page.click("nav >> text=Mapping tester")
        pick_sample(page, "skipped: no identifier")
        result = page.locator("#result-1")
        assert result.locator(".outcome").inner_text() == "skipped"
        assert "Skipped (no_identifier)" in result.locator(".why").inner_text()
        assert result.locator(".request").count() == 0

        pick_sample(page, "rejected: a price that is not a number")
        result = page.locator("#result-1")
        assert result.locator(".outcome").inner_text() == "rejected"
        why = result.locator(".why").inner_text()
        assert why.startswith("Rejected (")
        assert "price" in why
        assert "free" in why
        assert is_png(capture(page, tmp_path / "mapping.png"))


def test_the_overview_draws_a_chart_per_endpoint(
    browser: Any, serve: ServeProcess, posted: Three, tmp_path: Path
) -> None:
    assert posted.delivered
    with opened(browser) as tab:
        page = tab.page
        sign_in(page, serve.url)
        page.click("nav >> text=Delivery overview")
        section = page.locator("#destination-default")
        assert section.locator(".state").inner_text() == "running"
        endpoint = section.locator(".endpoint", has_text=CUSTOM)
        chart = endpoint.locator("svg[role=img]")
        assert chart.count() == 1
        assert CUSTOM in (chart.get_attribute("aria-label") or "")
        assert chart.locator("rect[fill='#2f855a']").count() >= 1  # delivered, in green
        assert chart.bounding_box()["width"] > 300
        assert is_png(capture(page, tmp_path / "overview.png"))
