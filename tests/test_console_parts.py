"""The console's parts in one process: the journal, the chart, the queue's search, the token
checks, and the pages over a real queue file (the browser and ``serve`` tests cover the rest)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from tests.command import run_command

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._console import journal as journal_module
from attentive_router._console.app import Console, Destination
from attentive_router._console.chart import bar_chart
from attentive_router._console.journal import MINUTES, Journal
from attentive_router._console.security import (
    COOKIE,
    ConsoleTokenError,
    Guard,
    check_token,
    cross_site,
)
from attentive_router._queue.interface import NewEvent, Settlement, State
from attentive_router._queue.sqlite import Search, SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess
from attentive_router._transform.options import Config

TOKEN = "console-token-for-tests-0001"
NOW = 1_800_000_030.0
"""Half a minute into a minute."""


# --- the journal ------------------------------------------------------------------------------


def _settled(state: State, status: int | None, endpoint: str | None = "/v1/events/custom") -> Any:
    return Settlement(
        id=1, state=state, attempts=1, status=status, endpoint=endpoint, last_attempt_at=NOW
    )


def test_the_journal_counts_each_kind_per_endpoint_and_minute() -> None:
    journal = Journal(clock=lambda: NOW)
    journal.answered(1, "/v1/events/custom", b"{}", 200, "{}", NOW - 30, 0.01)
    journal.answered(2, "/v1/events/custom", b"{}", 200, "{}", NOW - 130, 0.01)
    journal.answered(3, "/v1/events/custom", b"{}", 500, "oops", NOW, 0.01)  # counted on settle
    journal.settled(_settled(State.QUEUED, 500))
    journal.settled(_settled(State.QUEUED, 429))
    journal.settled(_settled(State.QUEUED, None))  # no answer at all: a retry too
    journal.settled(_settled(State.QUEUED, 401))  # a refused key pauses: not a retry
    journal.settled(_settled(State.QUEUED, None, endpoint=None))  # put back at a stop
    journal.settled(_settled(State.DEAD, 400))
    journal.settled(_settled(State.DEAD, None, endpoint=None))  # the transform failed
    journal.settled(_settled(State.DELIVERED, None))  # counted per request, when answered
    series = journal.series(NOW)
    custom = series["/v1/events/custom"]
    assert len(custom["delivered"]) == MINUTES
    assert custom["delivered"][-1] == 1  # this minute
    assert custom["delivered"][-3] == 1  # two minutes ago
    assert sum(custom["retried"]) == 2
    assert sum(custom["throttled"]) == 1
    assert sum(custom["dead_lettered"]) == 1
    assert sum(series["(none)"]["dead_lettered"]) == 1
    totals = journal.totals(NOW)
    assert totals["/v1/events/custom"]["delivered"] == 2


def test_the_journal_forgets_what_is_older_than_an_hour() -> None:
    journal = Journal(clock=lambda: NOW)
    journal.answered(1, "/v1/events/custom", b"{}", 200, "", NOW - 2 * 3600, 0.0)
    assert journal.series(NOW) == {}
    journal.answered(2, "/v1/events/custom", b"{}", 200, "", NOW - (MINUTES - 1) * 60, 0.0)
    assert sum(journal.series(NOW)["/v1/events/custom"]["delivered"]) == 1


def test_the_journal_keeps_the_latest_answers_of_the_latest_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(journal_module, "EVENTS_KEPT", 3)
    monkeypatch.setattr(journal_module, "ANSWERS_KEPT", 2)
    journal = Journal(clock=lambda: NOW)
    for event in range(1, 6):
        for attempt in range(3):
            journal.answered(event, "/p", b"{}", 500, f"answer {attempt}", NOW + attempt, 0.5)
    assert journal.answers(1) == ()
    assert journal.answers(2) == ()
    kept = journal.answers(5)
    assert [answer.text for answer in kept] == ["answer 1", "answer 2"]
    assert kept[0].status == 500
    assert kept[0].elapsed == 0.5


# --- the chart --------------------------------------------------------------------------------


def test_the_chart_stacks_the_kinds_and_says_what_each_bar_holds() -> None:
    series = {
        "delivered": [0, 4, 2],
        "retried": [0, 0, 2],
        "throttled": [0, 0, 0],
        "dead_lettered": [1, 0, 0],
    }
    svg = bar_chart(series, "shop <custom>")
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "shop &lt;custom&gt;" in svg
    assert "<custom>" not in svg
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill="#[0-9a-f]{6}"', svg)]
    assert len(heights) == 4  # four values above zero, one rectangle each
    # The 4 delivered a minute ago are the peak: the full height; the others in proportion.
    assert heights[1] == max(heights)
    assert heights[2] == pytest.approx(heights[1] / 2)
    assert heights[0] == pytest.approx(heights[1] / 4)
    assert "1 min ago: delivered 4" in svg
    assert "this minute: delivered 2, retried 2" in svg
    assert "2 min ago: dead-lettered 1" in svg


def test_an_empty_chart_is_still_a_chart() -> None:
    svg = bar_chart({"delivered": [0] * 60}, "nothing")
    assert "<rect" not in svg
    assert "60 min ago" in svg


# --- the queue's search -----------------------------------------------------------------------


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SQLiteQueue]:
    store = SQLiteQueue(tmp_path / "queue.db")
    events = [
        NewEvent(
            "m-order",
            "user:ada",
            orjson.dumps({"type": "track", "event": "Order Completed", "userId": "ada"}),
            NOW,
            source="web",
        ),
        NewEvent(
            "m-identify",
            "user:bob",
            orjson.dumps({"type": "identify", "userId": "bob"}),
            NOW + 1,
            source="app",
        ),
        NewEvent(
            "m-bad",
            "event:m-bad",
            b"\xff not json",
            NOW + 2,
            source="web",
            rejected=("invalid_json", "not JSON"),
        ),
    ]
    store.put(events, NOW)
    yield store
    store.close()


def _keys(queue: SQLiteQueue, search: Search, **options: Any) -> list[str]:
    return [record.key for record in queue.search(search, **options)]


def test_the_search_lists_the_newest_first_and_applies_every_filter(queue: SQLiteQueue) -> None:
    assert _keys(queue, Search()) == ["m-bad", "m-identify", "m-order"]
    assert _keys(queue, Search(source="web")) == ["m-bad", "m-order"]
    assert _keys(queue, Search(state=State.REJECTED)) == ["m-bad"]
    assert _keys(queue, Search(reason="invalid_json")) == ["m-bad"]
    assert _keys(queue, Search(name="Order Completed")) == ["m-order"]
    assert _keys(queue, Search(name="identify")) == ["m-identify"]
    assert _keys(queue, Search(text="bob")) == ["m-identify"]
    assert _keys(queue, Search(text="m-order")) == ["m-order"]
    assert _keys(queue, Search(source="app", name="Order Completed")) == []
    assert _keys(queue, Search(), limit=1) == ["m-bad"]
    newest = queue.search(Search(), limit=1)[0]
    assert _keys(queue, Search(), before=newest.id) == ["m-identify", "m-order"]
    assert queue.reasons() == ["invalid_json"]


def test_the_search_looks_at_the_newest_events_only(
    queue: SQLiteQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attentive_router._queue import sqlite  # noqa: PLC0415

    monkeypatch.setattr(sqlite, "SEARCH_SPAN", 2)
    assert _keys(queue, Search()) == ["m-bad", "m-identify"]
    # Dead letters stay until replayed: they are found however old they are.
    (oldest,) = queue.claim(NOW, 1)
    assert oldest.key == "m-order"
    queue.settle([Settlement(oldest.id, State.DEAD, attempts=1, reason="permanent_error")])
    assert _keys(queue, Search(state=State.DEAD)) == ["m-order"]
    assert _keys(queue, Search(reason="permanent_error")) == []


# --- the token --------------------------------------------------------------------------------


def test_a_short_token_or_a_write_key_is_refused() -> None:
    with pytest.raises(ConsoleTokenError, match="at least 16"):
        check_token("short", [])
    with pytest.raises(ConsoleTokenError, match="at least 16"):
        check_token(f" {TOKEN} ", [])
    with pytest.raises(ConsoleTokenError, match="must not be a write key"):
        check_token(TOKEN, {TOKEN: "web"})
    check_token(TOKEN, {"wk_web": "web"})


def _request(headers: dict[str, str], scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/console/x",
        "headers": [(b"host", b"127.0.0.1:8088"), *raw],
        "scheme": scheme,
        "query_string": b"",
        "server": ("127.0.0.1", 8088),
    }
    return Request(scope)


def test_cross_site_requests_are_told_apart() -> None:
    assert cross_site(_request({})) is None
    assert cross_site(_request({"Origin": "http://127.0.0.1:8088"})) is None
    assert cross_site(_request({"Sec-Fetch-Site": "same-origin"})) is None
    assert "Origin" in (cross_site(_request({"Origin": "https://evil.example"})) or "")
    assert "null" in (cross_site(_request({"Origin": "null"})) or "")
    assert "cross-site" in (cross_site(_request({"Sec-Fetch-Site": "cross-site"})) or "")
    assert "same-site" in (cross_site(_request({"Sec-Fetch-Site": "same-site"})) or "")
    # Another port on the same host is another origin.
    assert cross_site(_request({"Origin": "http://127.0.0.1:9999"})) is not None
    # Behind a proxy: the public origin counts.
    public = cross_site(
        _request({"Origin": "https://events.shop.example"}),
        lambda _request: "https://events.shop.example",
    )
    assert public is None


def test_the_guard_takes_the_session_cookie_or_the_token_and_nothing_else() -> None:
    guard = Guard(TOKEN)
    assert TOKEN not in guard.session
    assert guard.session != guard.form_token
    assert guard.signed_in(_request({"Cookie": f"{COOKIE}={guard.session}"}))
    assert guard.signed_in(_request({"Authorization": f"Bearer {TOKEN}"}))
    assert not guard.signed_in(_request({"Cookie": f"{COOKIE}={TOKEN}"}))
    assert not guard.signed_in(_request({"Cookie": f"{COOKIE}={guard.form_token}"}))
    assert not guard.signed_in(_request({"Authorization": "Bearer wrong"}))
    assert not guard.signed_in(_request({"Authorization": "Basic " + TOKEN}))
    assert guard.form_ok(guard.form_token)
    assert not guard.form_ok(guard.session)
    assert not guard.form_ok(None)


# --- the pages over a queue file ---------------------------------------------------------------


def _get(app: Starlette, path: str, **headers: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8088") as c:
            return await c.get(path, headers=headers)

    return asyncio.run(fetch())


def _app(queue: SQLiteQueue, paused: str | None = None) -> Starlette:
    destination = Destination(
        "shop",
        Config(),
        queue=queue,
        state=lambda: "paused" if paused else "running",
        paused=lambda: paused,
    )
    console = Console([destination], ["web", "app"], Guard(TOKEN), clock=lambda: NOW + 60)
    return Starlette(routes=[Mount("/console", routes=console.routes())])


def test_a_paused_destination_shows_a_banner_with_the_reason(queue: SQLiteQueue) -> None:
    why = "Attentive refused the API key (401 from /v1/events/custom): check it"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    page = _get(_app(queue, paused=why), "/console/overview", **bearer)
    assert page.status_code == 200
    assert 'class="banner"' in page.text
    assert "Delivery paused:" in page.text
    assert "Attentive refused the API key" in page.text
    running = _get(_app(queue), "/console/overview", **bearer)
    assert 'class="banner"' not in running.text
    # The queue's depth and its oldest event's age are shown.
    assert re.search(r'id="depth-shop">3<', running.text) is None  # rejected is not waiting
    assert re.search(r'id="depth-shop">2<', running.text)
    assert "60 s" in running.text


def test_the_live_list_answers_json_with_each_event_and_its_link(queue: SQLiteQueue) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = _get(_app(queue), "/console/api/events?source=web", **bearer)
    assert answer.status_code == 200
    rows = answer.json()["rows"]
    assert [row["key"] for row in rows] == ["m-bad", "m-order"]
    assert rows[0]["outcome"] == "rejected"
    assert rows[0]["reason"] == "invalid_json"
    assert rows[1]["name"] == "Order Completed"
    assert rows[1]["user"] == "ada"
    page = _get(_app(queue), rows[0]["href"], **bearer)
    assert page.status_code == 200
    assert "not JSON" in page.text  # the reason's message
    assert "Attentive requests" not in page.text  # no transform of an input that was no event
    missing = _get(_app(queue), "/console/events/shop/999", **bearer)
    assert missing.status_code == 404
    nobody = _get(_app(queue), "/console/api/events")
    assert nobody.status_code == 401
    assert "m-order" not in nobody.text
    assert "ada" not in nobody.text


def test_a_key_attentive_refuses_shows_as_a_banner_in_a_running_serve(tmp_path: Path) -> None:
    """The whole path: the sandbox answers 401, serve pauses, the overview says why."""
    with (
        SandboxProcess(no_rate_limits=True) as sandbox,
        ServeProcess(
            queue=tmp_path / "queue.db",
            sandbox=sandbox,
            write_keys=("web=wk_banner",),
            args=["--token", "a-key-attentive-refuses", "--console-token", TOKEN],
        ) as serve,
    ):
        event = {"type": "track", "event": "Gift Wrapped", "userId": "ada", "messageId": "b-1"}
        assert serve.post("/v1/track", json=event, auth=("wk_banner", "")).status_code == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=serve.url, headers=bearer, timeout=10) as client:
            while True:
                page = client.get("/console/overview")
                if 'class="banner"' in page.text or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert page.status_code == 200
            banner = page.text.split('class="banner"', 1)[1].split("</div>", 1)[0]
            assert "Delivery paused:" in banner
            assert "401" in banner
            assert 'class="state paused"' in page.text
            rows = client.get("/console/api/events").json()["rows"]
            assert [(row["key"], row["outcome"]) for row in rows] == [("b-1", "queued")]


def test_config_check_shows_where_the_console_token_comes_from_and_refuses_a_short_one(
    tmp_path: Path,
) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        '[queue]\npath = "queue.db"\n[serve]\nconsole_token_env = "SHOP_CONSOLE"\n'
        '[sources.web]\nwrite_key = "wk_web"\ndestination = "shop"\n'
        '[destinations.shop]\ntoken_env = "SHOP_KEY"\n'
    )
    config.chmod(0o600)
    check = ("config", "check", "--config", str(config))
    good = run_command(*check, env={"SHOP_CONSOLE": TOKEN, "SHOP_KEY": "k"}, cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert re.search(r'serve\.console_token_env = "\*+" +# env \$SHOP_CONSOLE', good.stdout)
    assert TOKEN not in good.stdout + good.stderr
    short = run_command(*check, env={"SHOP_CONSOLE": "short", "SHOP_KEY": "k"}, cwd=tmp_path)
    assert short.returncode == 2
    assert "console token (env $SHOP_CONSOLE) is shorter than 16 characters" in short.stderr
    unset = run_command(*check, env={"SHOP_KEY": "k"}, cwd=tmp_path, drop=["SHOP_CONSOLE"])
    assert unset.returncode == 2
    assert "serve.console_token_env: $SHOP_CONSOLE is not set" in unset.stderr


def test_the_journal_keeps_within_its_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "BYTES_KEPT", 10_000)
    journal = Journal(clock=lambda: NOW)
    body = b"x" * 1_000
    for event in range(1, 21):
        journal.answered(event, "/p", body, 503, "y" * 1_000, NOW, 0.1)
    kept = [event for event in range(1, 21) if journal.answers(event)]
    assert kept == list(range(16, 21))  # 2,000 characters each: the newest five fit
