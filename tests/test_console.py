"""The operator console over HTTP: who may open it, what it refuses, what it never shows or logs.

Real ``serve`` processes on 127.0.0.1 (one without the console, one with it, delivering to a
sandbox that answers 400 to the dead letters' first requests); each test uses a fresh HTTP
client, so no cookie carries over from one to the next, and events of its own.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from tests.console_harness import (
    CUSTOM,
    TOKEN,
    custom_event,
    record_of,
    send,
    uid,
    wait_for_state,
)

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import State
from attentive_router._sandbox.process import SandboxProcess

KEY = "wk_console_shop_7c1e"
"""The write key (16+ characters: long enough to be refused as a console token for what it is)."""

DEAD_CSRF = "console-dead-csrf"
DEAD_LOGS = "console-dead-logs"
"""The sandbox answers 400 to these events' first requests (dead letters), 200 afterwards."""

GET_PATHS = (
    "/console",
    "/console/",
    "/console/events",
    "/console/api/events",
    "/console/events/default/1",
    "/console/overview",
    "/console/dead-letters",
    "/console/mapping",
    "/console/static/console.js",
    "/console/sign-in",
)
REPLAY = "/console/dead-letters/replay"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    faults = {"scripts": {DEAD_CSRF: [400], DEAD_LOGS: [400]}}
    with SandboxProcess(faults=faults, no_rate_limits=True) as process:
        yield process


@pytest.fixture(scope="module")
def off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    queue = tmp_path_factory.mktemp("console-off") / "queue.db"
    with ServeProcess(queue=queue, write_keys=(f"shop={KEY}",)) as process:
        yield process


@pytest.fixture(scope="module")
def queue_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-on") / "queue.db"


@pytest.fixture(scope="module")
def on(sandbox: SandboxProcess, queue_path: Path) -> Iterator[ServeProcess]:
    args = ["--console-token", TOKEN, "--log-level", "info"]
    with ServeProcess(
        queue=queue_path, sandbox=sandbox, write_keys=(f"shop={KEY}",), args=args
    ) as process:
        yield process


@pytest.fixture
def client(on: ServeProcess) -> Iterator[httpx.Client]:
    """A client of the console's server with no cookie (redirects are not followed)."""
    with httpx.Client(base_url=on.url, trust_env=False, timeout=10) as fresh:
        yield fresh


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def signed_in(client: httpx.Client) -> str:
    """Sign ``client`` in on the form; return the form token the pages carry."""
    response = client.post("/console/sign-in", data={"token": TOKEN, "next": "/console/events"})
    assert response.status_code == 303, response.text
    page = client.get("/console/dead-letters")
    assert page.status_code == 200, page.text
    found = re.search(r'name="form_token" value="([0-9a-f]{64})"', page.text)
    assert found is not None, page.text
    return found.group(1)


def is_sign_in_page(response: httpx.Response) -> bool:
    return (
        response.headers["content-type"].startswith("text/html")
        and "Sign in to the console" in response.text
        and 'name="token"' in response.text
        and "attentive_router_console" not in response.headers.get("set-cookie", "")
    )


def sandbox_bodies(sandbox: SandboxProcess, key: str) -> list[dict[str, object]]:
    """The bodies the sandbox accepted for the event ``key``."""
    return [r["body"] for r in sandbox.requests(CUSTOM) if r["body"].get("externalEventId") == key]


# --- off --------------------------------------------------------------------------------------


def test_without_a_token_every_console_path_is_404(off: ServeProcess) -> None:
    with httpx.Client(base_url=off.url, trust_env=False) as client:
        for path in GET_PATHS:
            assert client.get(path).status_code == 404, path
        assert client.get("/console/static/console.css").status_code == 404
        replay = client.post(REPLAY, data={"pick": "default/1"})
        assert replay.status_code == 404
        assert client.post("/console/sign-in", data={"token": TOKEN}).status_code == 404
        assert (
            client.get("/console/events", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            == 404
        )
        assert client.get("/healthz").status_code == 200  # the server itself answers


# --- on, without the credential ---------------------------------------------------------------


def test_without_the_credential_every_path_is_401_and_shows_no_event(
    on: ServeProcess, queue_path: Path, client: httpx.Client
) -> None:
    key, user, email = uid("leak-msg"), uid("leak-user"), f"{uid('leak')}@example.com"
    send(on.url, KEY, [custom_event(key, email, user)])
    record = wait_for_state(queue_path, key, State.DELIVERED)
    secrets = (key, user, email, email.split("@", maxsplit=1)[0])
    paths = (*GET_PATHS, f"/console/events/default/{record.id}", f"/console/events?q={user}")
    for path in paths:
        response = client.get(path)
        assert response.status_code == 401, path
        assert is_sign_in_page(response), path
        for secret in secrets:
            assert secret not in response.text, (path, secret)
    replay = client.post(REPLAY, data={"pick": f"default/{record.id}"})
    assert replay.status_code == 401
    assert is_sign_in_page(replay)
    # The stylesheet too: the sign-in page carries its style inline (allowed by a nonce).
    assert client.get("/console/static/console.css").status_code == 401
    sign_in = client.get("/console/sign-in")
    assert "/console/static/" not in sign_in.text
    nonce = re.search(r'<style nonce="([^"]+)">', sign_in.text)
    assert nonce is not None
    assert f"style-src 'nonce-{nonce.group(1)}'" in sign_in.headers["content-security-policy"]
    # The same request with the token shows the event: what the 401s hide is there.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    opened = client.get(f"/console/events/default/{record.id}", headers=bearer)
    assert opened.status_code == 200
    assert all(secret in opened.text for secret in (key, user, email))


def test_a_write_key_or_a_wrong_token_does_not_open_it(client: httpx.Client) -> None:
    wrong = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        basic(KEY),
        basic(TOKEN),  # the token only opens it as a Bearer credential or on the form
        {"Authorization": f"Bearer {wrong}"},
        {"Cookie": f"attentive_router_console={TOKEN}"},  # the cookie is no copy of the token
    ):
        for path in ("/console/events", "/console/api/events"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (headers, path)
            assert is_sign_in_page(response)
    for typed in (KEY, wrong, ""):
        response = client.post("/console/sign-in", data={"token": typed})
        assert response.status_code == 401, typed
        assert is_sign_in_page(response)
        assert not client.cookies
    assert "That is not the console token." in response.text
    # After a wrong token the form still leads where the person was going.
    again = client.post("/console/sign-in", data={"token": wrong, "next": "/console/mapping"})
    assert '<input type="hidden" name="next" value="/console/mapping">' in again.text
    assert client.get("/console/events").status_code == 401
    assert (
        client.get("/console/events", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 200
    )


# --- signing in and what a signed-in browser may POST ------------------------------------------


def test_signing_in_sets_a_strict_http_only_cookie_for_the_console_only(
    client: httpx.Client,
) -> None:
    response = client.post("/console/sign-in", data={"token": TOKEN, "next": "/console/overview"})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/overview"
    cookie = response.headers["set-cookie"]
    parts = [part.strip() for part in cookie.split(";")]
    name, _, value = parts[0].partition("=")
    assert name == "attentive_router_console"
    assert value
    assert TOKEN not in cookie
    attributes = {part.lower() for part in parts[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= attributes
    assert "secure" not in attributes  # plain http on 127.0.0.1: a Secure cookie would be lost
    page = client.get("/console/overview")
    assert page.status_code == 200
    assert "Delivery overview" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # Browsers send "Origin: null" on a page's own POSTs under no-referrer (which the cross-site
    # check refuses); same-origin lets them send the console's origin.
    assert page.headers["referrer-policy"] == "same-origin"
    assert '<meta name="referrer"' not in page.text  # no tag that would say otherwise
    # An open redirect is not followed: "next" stays inside the console.
    for target in ("https://evil.example/", "//evil.example/", "/console//evil.example"):
        away = client.post("/console/sign-in", data={"token": TOKEN, "next": target})
        assert away.headers["location"] == "/console/events", target


def test_cross_site_posts_are_refused_and_replay_nothing(
    on: ServeProcess, queue_path: Path, sandbox: SandboxProcess, client: httpx.Client
) -> None:
    send(on.url, KEY, [custom_event(DEAD_CSRF, "csrf@example.com", "user-csrf")])
    dead = wait_for_state(queue_path, DEAD_CSRF, State.DEAD)
    assert (dead.status, dead.attempts) == (400, 1)
    form_token = signed_in(client)
    pick = f"default/{dead.id}"
    same_site = {"Origin": on.url, "Sec-Fetch-Site": "same-origin"}
    refused = [
        ({"Origin": "https://evil.example"}, {"form_token": form_token, "pick": pick}),
        ({"Sec-Fetch-Site": "cross-site"}, {"form_token": form_token, "pick": pick}),
        ({"Sec-Fetch-Site": "same-site"}, {"form_token": form_token, "pick": pick}),
        ({"Origin": "null"}, {"form_token": form_token, "pick": pick}),
        (same_site, {"pick": pick}),
        (same_site, {"form_token": "0" * 64, "pick": pick}),
    ]
    for headers, form in refused:
        response = client.post(REPLAY, data=form, headers=headers)
        assert response.status_code == 403, (headers, form)
        assert response.text.startswith("refused: ")
        assert "location" not in response.headers
    evil_sign_in = client.post(
        "/console/sign-in", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}
    )
    assert evil_sign_in.status_code == 403
    assert "set-cookie" not in evil_sign_in.headers
    after = record_of(queue_path, DEAD_CSRF)
    assert after is not None
    assert (after.state, after.attempts, after.reason) == (State.DEAD, 1, dead.reason)
    assert sandbox_bodies(sandbox, DEAD_CSRF) == []  # the sandbox keeps only what it accepts
    # From the console's own page, with its form token: replayed and delivered.
    response = client.post(REPLAY, data={"form_token": form_token, "pick": pick}, headers=same_site)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/dead-letters?replayed=1"
    wait_for_state(queue_path, DEAD_CSRF, State.DELIVERED)
    assert len(sandbox_bodies(sandbox, DEAD_CSRF)) == 1


# --- the token itself -------------------------------------------------------------------------


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATTENTIVE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
        check=False,
    )


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("short-token-15c", "must be at least 16 printable characters"),
        (KEY, "must not be a write key"),
    ],
    ids=["too-short", "a-write-key"],
)
def test_an_unusable_console_token_exits_2(tmp_path: Path, token: str, problem: str) -> None:
    queue = tmp_path / "queue.db"
    base = ["--queue", str(queue), "--no-deliver", "--write-key", f"shop={KEY}"]
    for given, env in (
        (["--console-token", token], None),
        ([], {"ATTENTIVE_ROUTER_CONSOLE_TOKEN": token}),
    ):
        result = run_serve(*base, *given, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("attentive-router serve: --console-token: the console ")
        assert problem in result.stderr
        assert result.stdout == ""
        assert not queue.exists()


def write_config(folder: Path, variable: str) -> Path:
    path = folder / "deploy.toml"
    path.write_text(
        f'[queue]\npath = "{folder / "queue.db"}"\n\n'
        f'[serve]\nconsole_token_env = "{variable}"\n\n'
        f'[sources.web]\nwrite_key = "{KEY}"\ndestination = "shop"\n\n'
        '[destinations.shop]\ntoken_env = "CONSOLE_TEST_SHOP_KEY"\n',
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def test_the_token_from_the_configuration_files_variable_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = "CONSOLE_TEST_TOKEN"
    token = "from-the-file-variable-" + uid("t")
    config = write_config(tmp_path, variable)
    for name in [name for name in os.environ if name.startswith("ATTENTIVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(variable, token)
    monkeypatch.setenv("CONSOLE_TEST_SHOP_KEY", "attentive-api-key")
    check = subprocess.run(
        [sys.executable, "-m", "attentive_router", "config", "check", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    [line] = [line for line in check.stdout.splitlines() if "console_token_env" in line]
    assert re.fullmatch(rf'serve\.console_token_env = "\*+" +# env \${variable}', line), line
    assert token not in check.stdout + check.stderr
    with (
        ServeProcess(queue=None, write_keys=(), args=["--config", str(config)]) as process,
        httpx.Client(base_url=process.url, trust_env=False) as client,
    ):
        assert client.get("/console/events").status_code == 401
        assert client.post("/console/sign-in", data={"token": TOKEN}).status_code == 401
        response = client.post("/console/sign-in", data={"token": token})
        assert response.status_code == 303
        assert client.get("/console/events").status_code == 200
    result = run_serve("--config", str(config), "--no-deliver", env={variable: "too-short"})
    assert result.returncode == 2
    assert f"the console token (env ${variable}) is shorter than 16 characters" in result.stderr


# --- logs -------------------------------------------------------------------------------------


def test_the_logs_show_neither_the_token_nor_the_events_contact_details(
    on: ServeProcess, queue_path: Path, client: httpx.Client
) -> None:
    email = f"{uid('logged')}@example.com"
    send(on.url, KEY, [custom_event(DEAD_LOGS, email, "user-logs")])
    dead = wait_for_state(queue_path, DEAD_LOGS, State.DEAD)
    wrong = client.post("/console/sign-in", data={"token": "not-the-token-" + email})
    assert wrong.status_code == 401
    form_token = signed_in(client)
    session = client.cookies["attentive_router_console"]
    same_site = {"Origin": on.url}
    for path in (
        "/console/events",
        f"/console/events?q={email}",
        "/console/api/events",
        f"/console/events/default/{dead.id}",
        "/console/dead-letters",
        "/console/overview",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
    assert email in client.get(f"/console/events/default/{dead.id}").text
    tried = client.post(
        "/console/mapping",
        data={
            "form_token": form_token,
            "destination": "default",
            "event": f'{{"type": "identify", "userId": "u", "traits": {{"email": "{email}"}}}}',
        },
        headers=same_site,
    )
    assert tried.status_code == 200
    assert email in tried.text
    refused = client.post(REPLAY, data={"pick": f"default/{dead.id}"}, headers=same_site)
    assert refused.status_code == 403
    replayed = client.post(
        REPLAY, data={"form_token": form_token, "pick": f"default/{dead.id}"}, headers=same_site
    )
    assert replayed.status_code == 303
    wait_for_state(queue_path, DEAD_LOGS, State.DELIVERED)
    text = on.stderr()
    # What was logged: the wrong token, the refused POST, the replay.
    lines = [orjson.loads(line) for line in text.splitlines()]
    said = {line["message"]: line for line in lines if line["logger"].endswith(".console")}
    assert said["console: a wrong token"]["client"] == "127.0.0.1"
    refused_line = said["console: a POST refused"]
    assert refused_line["problem"] == "the form token is missing or wrong (reload the page)"
    assert said["console: dead letters replayed"]["count"] == 1
    for secret in (TOKEN, session, form_token, email, email.split("@", maxsplit=1)[0]):
        assert secret not in text
