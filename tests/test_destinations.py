"""Several Attentive accounts from one process: each with its own key, queue and rate.

A configuration file with two destinations (brand A, brand B) and a sandbox that accepts both
keys, each with its own rate limits as at Attentive. `serve` and `deliver` run every
destination side by side; the sandbox's records say which key every request carried.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.command import ROUTER_VARIABLES, run_command

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import NewEvent, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

CUSTOM_PATH = "/v1/events/custom"
KEY_A = "brand-a-attentive-key"
KEY_B = "brand-b-attentive-key"
CLEAN = (*ROUTER_VARIABLES, "BRAND_B_ATTENTIVE_KEY")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLEAN:
        monkeypatch.delenv(name, raising=False)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_command(*args, env=env, drop=CLEAN)


def two_brands(tmp_path: Path, url: str, *, key_a: str = KEY_A, more: str = "") -> Path:
    """Brand A reads its key from a file (re-read on SIGHUP), brand B from a variable."""
    key_file = tmp_path / "brand-a.key"
    key_file.write_text(key_a + "\n")
    key_file.chmod(0o600)
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""\
[sources.a-web]
write_key = "wk_a"
destination = "brand_a"

[sources.b-web]
write_key = "wk_b"
destination = "brand_b"

[destinations.brand_a]
token_file = "brand-a.key"
base_url = "{url}"
queue = "brand-a.db"
{more}
[destinations.brand_b]
token_env = "BRAND_B_ATTENTIVE_KEY"
base_url = "{url}"
queue = "brand-b.db"
{more}""",
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


def event(brand: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Gift Card Redeemed",
        "messageId": f"{brand}-{n}",
        "userId": f"{brand}-u{n}",
        "context": {"traits": {"email": f"{brand}-{n}@example.com"}},
    }


def queue_events(path: Path, destination: str, brand: str, count: int) -> None:
    queue = SQLiteQueue(path, destination=destination)
    try:
        news = [
            NewEvent(f"{brand}-{n}", f"{brand}-{n}", orjson.dumps(event(brand, n)), time.time())
            for n in range(count)
        ]
        queue.put(news, time.time())
    finally:
        queue.close()


def states(path: Path) -> dict[str, State]:
    queue = SQLiteQueue(path)
    try:
        return {r.key: r.state for r in queue.records()}
    finally:
        queue.close()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def delivered(sandbox: SandboxProcess) -> list[tuple[str, str]]:
    """(externalEventId, key) of every accepted custom event, in order of arrival."""
    return [(r["body"]["externalEventId"], r["token"]) for r in sandbox.requests(CUSTOM_PATH)]


def arrivals(sandbox: SandboxProcess, token: str) -> list[float]:
    return [
        datetime.fromisoformat(r["received_at"]).timestamp()
        for r in sandbox.requests(CUSTOM_PATH, token=token)
    ]


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    # Attentive's limits hold per key: 5 requests per second to the custom events endpoint
    with SandboxProcess(token=KEY_A, more_tokens=[KEY_B], rate_limits={CUSTOM_PATH: 5}) as s:
        yield s


# --- the rate of each key ------------------------------------------------------------------

RATE = 5
EACH = 30


def test_one_serve_holds_each_keys_rate_and_delivers_both_brands_at_once(
    tmp_path: Path, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = two_brands(tmp_path, sandbox.url, more=f"rate_limit = {RATE}\n")
    monkeypatch.setenv("BRAND_B_ATTENTIVE_KEY", KEY_B)
    args = ["--config", str(config)]
    with ServeProcess(queue=None, write_keys=(), args=args, deliver=True) as serve:
        for key, brand in (("wk_a", "a"), ("wk_b", "b")):
            batch = {"batch": [event(brand, n) for n in range(EACH)]}
            answer = serve.post("/v1/batch", json=batch, auth=(key, ""))
            assert answer.status_code == 200, answer.text
        wait_for(lambda: len(delivered(sandbox)) >= 2 * EACH, "every event delivered", 60)
    sent = delivered(sandbox)
    assert sorted(sent) == sorted(
        [(f"a-{n}", KEY_A) for n in range(EACH)] + [(f"b-{n}", KEY_B) for n in range(EACH)]
    )
    keys = sandbox.stats()["keys"]
    periods = {}
    for token in (KEY_A, KEY_B):
        # never over the limit: the sandbox's bucket (5 of slack) would have answered 429
        assert keys[token] == {"200": EACH}, keys
        times = arrivals(sandbox, token)
        span = times[-1] - times[0]
        rate = (len(times) - 1) / span
        # each key at its own limit: within it (tolerance for clocks), and not sharing it
        assert 0.5 * RATE < rate <= 1.25 * RATE, (token, rate)
        busiest = max(sum(1 for t in times if start <= t < start + 1) for start in times)
        assert busiest <= RATE + 1, (token, busiest)
        periods[token] = (times[0], times[-1])
    # side by side: brand B began before brand A was done, and the other way round
    (first_a, last_a), (first_b, last_b) = periods[KEY_A], periods[KEY_B]
    assert max(first_a, first_b) < min(last_a, last_b) - 2, periods


# --- a refused key pauses one brand, a fixed key file and SIGHUP resume it ---------------


def test_one_serve_pauses_a_refused_brand_and_resumes_it_after_sighup_delivering_all_once(
    tmp_path: Path, sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = two_brands(tmp_path, sandbox.url, key_a="brand-a-revoked-key")
    monkeypatch.setenv("BRAND_B_ATTENTIVE_KEY", KEY_B)
    # A long interval: brand A resumes because of SIGHUP, not because of a scheduled check.
    args = ["--config", str(config), "--key-retry-interval", "600"]
    with ServeProcess(queue=None, write_keys=(), args=args, deliver=True) as serve:
        for key, brand in (("wk_a", "a"), ("wk_b", "b")):
            for n in range(3):
                answer = serve.post("/v1/track", json=event(brand, n), auth=(key, ""))
                assert answer.status_code == 200, answer.text
        wait_for(lambda: len(delivered(sandbox)) >= 3, "brand B delivered")
        health = wait_for(
            lambda: (body := serve.get("/healthz").json())["delivery"] == "paused" and body,
            what="brand A paused",
        )
        assert health["status"] == "degraded"
        assert health["destinations"]["brand_b"] == {"status": "ok", "delivery": "running"}
        paused = health["destinations"]["brand_a"]
        assert paused["delivery"] == "paused"
        assert str(tmp_path / "brand-a.key") in paused["problem"]
        metrics = serve.get("/metrics").text
        assert 'attentive_router_queue_depth{destination="brand_a"} 3.0' in metrics
        # each brand's requests were stored by its own queue's transactions (one per request here)
        for brand in ("brand_a", "brand_b"):
            committed = f'queue_commits_total{{destination="{brand}",outcome="committed"}} 3.0'
            assert f"attentive_router_{committed}" in metrics
            assert f'queue_commit_events_sum{{destination="{brand}"}} 3.0' in metrics
        assert sorted(delivered(sandbox)) == [(f"b-{n}", KEY_B) for n in range(3)]
        # the key is fixed in its file, and the process told to read it again
        (tmp_path / "brand-a.key").write_text(KEY_A + "\n")
        serve.send_signal(signal.SIGHUP)
        wait_for(lambda: len(delivered(sandbox)) >= 6, "brand A delivered after SIGHUP")
        health = wait_for(
            lambda: (body := serve.get("/healthz").json())["delivery"] == "running" and body,
            what="brand A running again",
        )
        assert health["status"] == "ok"
        assert health["destinations"]["brand_a"] == {"status": "ok", "delivery": "running"}
        time.sleep(0.5)  # anything sent twice would have arrived by now
    # every event of both brands exactly once, each with its own brand's key
    assert sorted(delivered(sandbox)) == [(f"a-{n}", KEY_A) for n in range(3)] + [
        (f"b-{n}", KEY_B) for n in range(3)
    ]
    answers = sandbox.stats()["received"][CUSTOM_PATH]
    assert answers["200"] == 6
    # the refused key was tried only by the requests already in flight when it was refused
    assert set(answers) == {"200", "401"}
    assert 1 <= answers["401"] <= 3, answers
    for name, brand in (("brand-a.db", "a"), ("brand-b.db", "b")):
        assert states(tmp_path / name) == {f"{brand}-{n}": State.DELIVERED for n in range(3)}
    assert "the API key is accepted again" in serve.stderr()


# --- deliver (one-shot) for every destination -----------------------------------------------


def test_deliver_drains_every_destination_and_a_refused_key_keeps_only_its_events(
    tmp_path: Path, sandbox: SandboxProcess
) -> None:
    config = two_brands(tmp_path, sandbox.url)
    queue_events(tmp_path / "brand-a.db", "brand_a", "a", 4)
    queue_events(tmp_path / "brand-b.db", "brand_b", "b", 3)
    env = {"BRAND_B_ATTENTIVE_KEY": KEY_B}
    both = cli("deliver", "--config", str(config), "--progress", "never", env=env)
    assert both.returncode == 0, both.stderr
    assert sorted(delivered(sandbox)) == [(f"a-{n}", KEY_A) for n in range(4)] + [
        (f"b-{n}", KEY_B) for n in range(3)
    ]
    assert "deliver brand_a: 4 event(s) settled" in both.stderr
    assert "deliver brand_b: 3 event(s) settled" in both.stderr
    assert (
        "deliver: 2 destination(s) in all: 7 event(s) settled (delivered 7, skipped 0, "
        "rejected 0, dead_lettered 0); 0 still queued"
    ) in both.stderr
    # brand A's key is refused: its events stay queued, brand B's are delivered
    sandbox.reset()
    (tmp_path / "brand-a.key").write_text("brand-a-revoked-key\n")
    queue_events(tmp_path / "brand-a.db", "brand_a", "a2", 2)
    queue_events(tmp_path / "brand-b.db", "brand_b", "b2", 2)
    refused = cli("deliver", "--config", str(config), "--progress", "never", env=env)
    assert refused.returncode == 3, refused.stderr
    assert sorted(delivered(sandbox)) == [("b2-0", KEY_B), ("b2-1", KEY_B)]
    assert "SENDING STOPPED: Attentive answered 401" in refused.stderr
    assert (
        f"Fix the key (the file {tmp_path / 'brand-a.key'}, named by the configuration file), "
        f"then run `attentive-router deliver --config {config} --destination brand_a`"
    ) in refused.stderr
    assert "; 2 still queued" in refused.stderr
    left = states(tmp_path / "brand-a.db")
    assert [key for key, state in left.items() if state is State.QUEUED] == ["a2-0", "a2-1"]
    assert states(tmp_path / "brand-b.db")["b2-1"] is State.DELIVERED


# --- one key or one queue for several destinations is refused -------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--token", "one-key"], "--token with 2 destinations (brand_a, brand_b) would send"),
        (["--token-file", "brand-a.key"], "--token-file with 2 destinations (brand_a, brand_b)"),
        (["--queue", "one.db"], "--queue with 2 destinations (brand_a, brand_b) would put"),
    ],
    ids=["token", "token-file", "queue"],
)
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["deliver"]])
def test_one_key_or_queue_for_several_destinations_is_refused(
    tmp_path: Path, flags: list[str], message: str, command: list[str]
) -> None:
    config = two_brands(tmp_path, "http://127.0.0.1:9")
    flags = [str(tmp_path / f) if f.endswith((".key", ".db")) else f for f in flags]
    result = cli(*command, "--config", str(config), *flags, env={"BRAND_B_ATTENTIVE_KEY": KEY_B})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "or choose one with --destination NAME" in result.stderr
    assert "listening" not in result.stdout + result.stderr
    assert not (tmp_path / "one.db").exists()


# --- config check: $ATTENTIVE_API_TOKEN does not override a destination's own key -----------


def test_config_check_warns_that_the_global_key_does_not_override_the_destinations(
    tmp_path: Path,
) -> None:
    config = two_brands(tmp_path, "http://127.0.0.1:9")
    env = {"BRAND_B_ATTENTIVE_KEY": KEY_B, "ATTENTIVE_API_TOKEN": "global-key"}
    result = cli("config", "check", str(config), env=env)
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: $ATTENTIVE_API_TOKEN is set, but brand_a ({tmp_path / 'brand-a.key'}), "
        "brand_b ($BRAND_B_ATTENTIVE_KEY) name their own key with token_env or token_file"
    ) in result.stderr
    # the key each destination uses, masked, and where it comes from
    rows = result.stdout
    [row_a] = [row for row in rows.splitlines() if row.startswith("destinations.brand_a.token ")]
    assert row_a.startswith('destinations.brand_a.token = "********"')
    assert row_a.endswith(f"# file {tmp_path / 'brand-a.key'} (token_file)")
    assert "# env $BRAND_B_ATTENTIVE_KEY" in rows
    assert "global-key" not in rows + result.stderr
    assert KEY_A not in rows + result.stderr
    assert KEY_B not in rows + result.stderr
    quiet = cli("config", "check", str(config), env={"BRAND_B_ATTENTIVE_KEY": KEY_B})
    assert quiet.returncode == 0, quiet.stderr
    assert "ATTENTIVE_API_TOKEN" not in quiet.stderr


def test_a_destinations_token_file_is_checked(tmp_path: Path) -> None:
    config = two_brands(tmp_path, "http://127.0.0.1:9")
    (tmp_path / "brand-a.key").unlink()
    env = {"BRAND_B_ATTENTIVE_KEY": KEY_B}
    missing = cli("config", "check", str(config), env=env)
    assert missing.returncode == 2
    assert (
        f"destinations.brand_a.token_file: cannot read the API key from "
        f"{tmp_path / 'brand-a.key'}: No such file or directory"
    ) in missing.stderr
    text = config.read_text()
    both = text.replace('token_file = "brand-a.key"', 'token_file = "k"\ntoken_env = "A_KEY"')
    config.write_text(both)
    twice = cli("config", "check", str(config), env=env)
    assert twice.returncode == 2
    assert "destinations.brand_a: give token_env or token_file, not both" in twice.stderr
    config.write_text(text.replace('token_file = "brand-a.key"', "token_file = 3"))
    wrong = cli("config", "check", str(config), env=env)
    assert wrong.returncode == 2
    assert "destinations.brand_a.token_file: expected a non-empty string, got 3" in wrong.stderr


# --- events and dead letters name each event's destination ----------------------------------


def test_events_and_dead_letters_show_each_events_destination(tmp_path: Path) -> None:
    faults = {"scripts": {"a-1": [400], "b-1": [400]}}  # one dead letter per brand
    with SandboxProcess(token=KEY_A, more_tokens=[KEY_B], faults=faults) as sandbox:
        config = two_brands(tmp_path, sandbox.url)
        queue_events(tmp_path / "brand-a.db", "brand_a", "a", 2)
        queue_events(tmp_path / "brand-b.db", "brand_b", "b", 2)
        env = {"BRAND_B_ATTENTIVE_KEY": KEY_B}
        result = cli("deliver", "--config", str(config), "--progress", "never", env=env)
        assert result.returncode == 1, result.stderr  # dead letters
    names = "has 2 destinations (brand_a, brand_b): choose one with --destination NAME"
    for command in (["events", "list"], ["dead-letters", "list"], ["dead-letters", "show", "1"]):
        unchosen = cli(*command, "--config", str(config))
        assert unchosen.returncode == 2, unchosen.stderr
        assert names in unchosen.stderr
        assert "or name the queue file with --queue PATH" in unchosen.stderr
        assert unchosen.stdout == ""
        by_env = cli(*command, env={"ATTENTIVE_ROUTER_CONFIG": str(config)})
        assert by_env.returncode == 2
        assert names in by_env.stderr
    chosen = ("--config", str(config), "--destination", "brand_a")
    events = cli("events", "list", *chosen, "--state", "delivered,dead_lettered")
    assert events.returncode == 0, events.stderr
    header, *rows = events.stdout.splitlines()
    assert "DESTINATION" in header.split()
    assert [row.split()[:2] + row.split()[3:4] for row in rows] == [
        ["1", "delivered", "brand_a"],
        ["2", "dead_lettered", "brand_a"],
    ]
    dead = cli("dead-letters", "list", "--config", str(config), "--destination", "brand_b")
    assert dead.returncode == 0, dead.stderr
    header, row = dead.stdout.splitlines()
    assert "DESTINATION" in header.split()
    assert "brand_b" in row.split()
    assert row.split()[-1] == "b-1"
    shown = cli("dead-letters", "show", "b-1", "--config", str(config), "--destination", "brand_b")
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["destination"] == "brand_b"
    # --queue names the file: no destination needed, and each event still says its own
    listed = cli(
        "events",
        "list",
        "--queue",
        str(tmp_path / "brand-a.db"),
        "--json",
        "--state",
        "dead_lettered",
    )
    assert listed.returncode == 0, listed.stderr
    assert [
        (e["messageId"], e["destination"]) for e in map(orjson.loads, listed.stdout.splitlines())
    ] == [("a-1", "brand_a")]
    own = cli("dead-letters", "list", "--json", "--queue", str(tmp_path / "brand-b.db"))
    assert [orjson.loads(line)["destination"] for line in own.stdout.splitlines()] == ["brand_b"]
    wrong = cli("events", "list", "--config", str(config), "--destination", "brand_c")
    assert wrong.returncode == 2
    assert "has no such destination (brand_a, brand_b)" in wrong.stderr
