"""The configuration file, through the real ``attentive-router`` command.

Every mistake in a file is reported at once with its key path (exit status 2); flags override
environment variables, which override the file, and ``config check`` says which one won;
secrets are masked; ``config init`` writes a valid file; ``send --destination`` delivers with
that destination's key and options; ``serve`` with several destinations refuses to start, and
``serve --destination`` accepts only that destination's write keys. The README's example files
are the ones loaded here, and its ``config check`` output is compared with the real one.
"""

from __future__ import annotations

import re
import stat
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.command import ROUTER_VARIABLES, run_command

from attentive_router._cli.config import (
    MAPPED_EVENTS,
    ConfigError,
    load,
    parse,
    transform_config,
)
from attentive_router._cli.config_command import EXAMPLE
from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import NewEvent, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

README = Path(__file__).resolve().parents[1] / "README.md"
SECRETS = {
    "BRAND_A_ATTENTIVE_KEY": "brand-a-secret-key",
    "BRAND_B_ATTENTIVE_KEY": "brand-b-secret-key",
    "BRAND_A_WEBHOOK_SECRET": "whsec-brand-a-secret",
    "BRAND_A_SEGMENT_WRITE_KEY": "wk-brand-a-segment-secret",
}
CLEAN = ROUTER_VARIABLES


def readme_block(marker: str) -> str:
    found = [
        match.group(2)
        for match in re.finditer(
            r"^```(\w*)\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE
        )
        if marker in match.group(2)
    ]
    assert len(found) == 1, f"{len(found)} README blocks contain {marker!r}"
    return found[0]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    return run_command(*args, env=env, cwd=cwd, drop=SECRETS, timeout=60)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*CLEAN, *SECRETS):
        monkeypatch.delenv(name, raising=False)


# --- every mistake, at once, with its key path ----------------------------------------------

BAD = """\
typo_at_top = 1

[serve]
port = 70000
log_level = "loud"
commit = "batched"

[sources.web]
write_key = "wk_web"

[destinations.shop]
token_env = "SHOP_KEY"
rate_limit = "fast"
rate_limt = 3
default_region = "ZZ"
strict_property_keys = "yes"

[destinations.shop.aliases]
"Added To Cart" = "Product Addded"

[destinations.shop.filter]
allow_calls = ["track", "tracks"]
deny_events = "Debug *"

[destinations.shop.consent]
missing = "maybe"
"""

BAD_MESSAGES = [
    "  serve.port: expected a port number from 0 to 65535, got 70000",
    '  serve.log_level: expected one of "debug", "info", "warning", "error", got "loud"',
    '  serve.commit: expected one of "group", "per-request", got "batched"',
    "  sources.web.destination: missing: this key is required",
    '  destinations.shop.rate_limit: expected a number > 0, got "fast"',
    '  destinations.shop.strict_property_keys: expected true or false, got "yes"',
    '  destinations.shop.default_region: expected a region code such as "US" or "GB", got "ZZ"',
    (
        "  destinations.shop.filter.allow_calls[1]: expected a Segment call type (identify, "
        'track, page, screen, group, alias), got "tracks"'
    ),
    '  destinations.shop.filter.deny_events: expected a list, got "Debug *"',
    '  destinations.shop.consent.missing: expected one of "send", "skip", got "maybe"',
    "  destinations.shop.rate_limt: unknown key (did you mean rate_limit?)",
    "  typo_at_top: unknown key (known: queue, serve, sources, destinations, kafka)",
]


@pytest.mark.parametrize(
    "command",
    [
        ["config", "check", "{file}"],
        ["send", "--config", "{file}", "events.ndjson"],
        ["deliver", "--config", "{file}"],
        ["serve", "--config", "{file}", "--port", "0"],
        ["transform", "--config", "{file}", "events.ndjson"],
    ],
    ids=lambda command: command[0],
)
def test_every_mistake_is_reported_at_once_by_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    config = write(tmp_path / "bad.toml", BAD)
    (tmp_path / "events.ndjson").write_text("")
    result = cli(*(part.format(file=config) for part in command), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"attentive-router: {config}: 13 problems:"
    for message in BAD_MESSAGES:
        assert message in lines, (message, result.stderr)
    alias = next(line for line in lines if "aliases" in line)
    assert alias.startswith('  destinations.shop.aliases."Added To Cart": expected an event name')
    assert alias.endswith('got "Product Addded"')
    assert all(name in alias for name in MAPPED_EVENTS)  # the valid targets are listed
    assert result.stdout == ""
    assert not (tmp_path / "attentive-router.db").exists()  # nothing was started


def test_the_readme_error_sample_is_what_a_bad_file_gets(tmp_path: Path) -> None:
    config = write(
        tmp_path / "deploy.toml",
        '[sources.web]\nwrite_key = "wk"\ndestination = "shop"\n\n[destinations.shop]\n'
        'rate_limit = "fast"\nrate_limt = 3\n\n[destinations.shop.filter]\n'
        'allow_calls = ["track", "tracks"]\n',
    )
    result = cli("config", "check", config.name, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == readme_block("deploy.toml: 3 problems:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[destinations.a]\n[destinations.b]\n", "a and b share the default queue"),
        (
            '[sources.web]\nwrite_key = "wk"\ndestination = "nowhere"\n[destinations.shop]\n',
            'sources.web.destination: no destination "nowhere" (shop)',
        ),
        (
            '[sources.web]\ndestination = "shop"\n[destinations.shop]\n',
            "sources.web: give write_key or write_key_env (one of them)",
        ),
        (
            (
                '[sources.a]\nwrite_key = "wk"\ndestination = "shop"\n'
                '[sources.b]\nwrite_key = "wk"\ndestination = "shop"\n[destinations.shop]\n'
            ),
            "sources.b.write_key: the same write key as sources.a",
        ),
        (
            '[serve.webhook_secret_env]\nweb = "SECRET"\n[destinations.shop]\n',
            'serve.webhook_secret_env.web: no source "web" in [sources]',
        ),
        ("[destinations.shop]\ntoken_env = 5\n", "destinations.shop.token_env: expected the name"),
        ("[destinations.shop]\nfilter = []\n", "destinations.shop.filter: expected a table"),
        ('[destinations.shop.consent]\nmissing = "skip"\n', "consent.category: missing"),
        ('[destinations.shop]\nbase_url = "ftp://x"\n', "expected an http:// or https:// URL"),
        ("[destinations.shop]\nmax_attempts = 0\n", "expected a whole number >= 1, got 0"),
        ("[destinations.shop]\nmax_attempts = true\n", "expected a whole number >= 1, got true"),
        ("[destinations.shop]\nretry_window = -1\n", "expected a number >= 0, got -1"),
        ("[destinations.shop]\ntimeout = nan\n", "expected a number > 0, got nan"),
        ('[destinations."brand a"]\n', 'destinations."brand a": expected a name of letters'),
        ("queue = 1\n", "queue: expected a table, got 1"),
        ('[queue]\npath = ""\n', 'queue.path: expected a non-empty string, got ""'),
    ],
)
def test_each_kind_of_mistake_names_its_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(tomllib.loads(text), "f.toml")
    assert message in str(raised.value)


def test_a_file_that_is_not_toml_or_not_there_is_a_usage_error(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.toml", "[destinations.shop\n")
    result = cli("config", "check", str(broken))
    assert result.returncode == 2
    assert f"attentive-router: {broken}: not valid TOML:" in result.stderr
    missing = cli("send", "--config", str(tmp_path / "none.toml"), "-")
    assert missing.returncode == 2
    assert "none.toml: cannot be read: No such file or directory" in missing.stderr
    nothing = cli("config", "check")
    assert nothing.returncode == 2
    assert "name the file, or set $ATTENTIVE_ROUTER_CONFIG" in nothing.stderr


# --- secrets: named, never written; a missing variable is named ------------------------------

ONE = """\
[queue]
path = "from-file.db"

[serve]
cors_origins = ["https://file.example"]
port = 9001
commit = "per-request"

[serve.webhook_secret_env]
web = "SHOP_WEBHOOK_SECRET"

[sources.web]
write_key = "wk_file"
destination = "shop"

[sources.server]
write_key_env = "SHOP_SERVER_WRITE_KEY"
destination = "shop"

[destinations.shop]
token_env = "SHOP_KEY"
rate_limit = 40
"""


def test_a_missing_key_variable_is_named_and_stops_the_command(tmp_path: Path) -> None:
    config = write(tmp_path / "one.toml", ONE)
    sent = cli("send", "--config", str(config), "-", cwd=tmp_path)
    assert sent.returncode == 2
    assert "$SHOP_KEY is not set" in sent.stderr
    assert not (tmp_path / "from-file.db").exists()
    checked = cli("config", "check", str(config))
    assert checked.returncode == 2
    assert f"{config}: destinations.shop.token_env: $SHOP_KEY is not set" in checked.stderr
    assert f"{config}: sources.server.write_key_env: $SHOP_SERVER_WRITE_KEY is not set" in (
        checked.stderr
    )
    assert "serve.webhook_secret_env.web: $SHOP_WEBHOOK_SECRET is not set" in checked.stderr
    # transform needs no key: the same file maps events
    mapped = cli("transform", "--config", str(config), "-")
    assert mapped.returncode == 0, mapped.stderr


def test_config_check_masks_every_secret(tmp_path: Path) -> None:
    config = write(tmp_path / "one.toml", ONE)
    secrets = {
        "SHOP_KEY": "attentive-key-1234567",
        "SHOP_SERVER_WRITE_KEY": "server-write-key-7654321",
        "SHOP_WEBHOOK_SECRET": "whsec-shop-0000",
    }
    result = cli("config", "check", str(config), env=secrets)
    assert result.returncode == 0, result.stderr
    for secret in secrets.values():
        assert secret not in result.stdout + result.stderr
    assert re.search(
        r'^destinations\.shop\.token = "\*+" +# env \$SHOP_KEY$', result.stdout, re.MULTILINE
    )
    assert 'sources.server = {write_key = "********", destination = "shop"}' in result.stdout
    assert 'sources.web = {write_key = "wk_file", destination = "shop"}' in result.stdout
    assert 'serve.webhook_secret_env.web = "********"' in result.stdout
    flagged = cli("config", "check", str(config), "--token", "flag-key-99", env=secrets)
    assert "flag-key-99" not in flagged.stdout + flagged.stderr
    assert re.search(
        r"^destinations\.shop\.token = .*# flag --token$", flagged.stdout, re.MULTILINE
    )


def origin_of(output: str, key: str) -> tuple[str, str]:
    match = re.search(rf"^{re.escape(key)} = (.*?) +# (.*)$", output, re.MULTILINE)
    assert match, f"{key} not in\n{output}"
    return match.group(1), match.group(2)


def test_flags_override_environment_variables_which_override_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "one.toml", ONE)
    base = {"SHOP_KEY": "k", "SHOP_SERVER_WRITE_KEY": "w", "SHOP_WEBHOOK_SECRET": "s"}
    env = {
        **base,
        "ATTENTIVE_ROUTER_QUEUE": "from-env.db",
        "ATTENTIVE_ROUTER_CORS_ORIGINS": "https://env.example",
        "ATTENTIVE_API_TOKEN": "env-token",
    }
    flags = ["--queue", "from-flag.db", "--cors-origin", "https://flag.example", "--token", "t"]
    flags += ["--rate", "7", "--port", "9002", "--commit", "group"]

    file_only = cli("config", "check", str(config), env=base).stdout
    env_too = cli("config", "check", str(config), env=env).stdout
    flag_too = cli("config", "check", str(config), *flags, env=env).stdout

    queue = "destinations.shop.queue"
    assert origin_of(file_only, queue) == (f'"{tmp_path / "from-file.db"}"', "file")
    assert origin_of(env_too, queue) == ('"from-env.db"', "env $ATTENTIVE_ROUTER_QUEUE")
    assert origin_of(flag_too, queue) == ('"from-flag.db"', "flag --queue")
    cors = "serve.cors_origins"
    assert origin_of(file_only, cors) == ('["https://file.example"]', "file")
    assert origin_of(env_too, cors) == (
        '["https://env.example"]',
        "env $ATTENTIVE_ROUTER_CORS_ORIGINS",
    )
    assert origin_of(flag_too, cors) == ('["https://flag.example"]', "flag --cors-origin")
    token = "destinations.shop.token"
    assert origin_of(file_only, token)[1] == "env $SHOP_KEY"
    # the destination names its own token_env: $ATTENTIVE_API_TOKEN does not override it
    assert origin_of(env_too, token)[1] == "env $SHOP_KEY"
    assert origin_of(flag_too, token)[1] == "flag --token"
    assert origin_of(file_only, "destinations.shop.rate_limit") == ("40", "file")
    assert origin_of(flag_too, "destinations.shop.rate_limit") == ("7", "flag --rate")
    assert origin_of(file_only, "serve.port") == ("9001", "file")
    assert origin_of(flag_too, "serve.port") == ("9002", "flag --port")
    assert origin_of(file_only, "serve.commit") == ('"per-request"', "file")
    assert origin_of(flag_too, "serve.commit") == ('"group"', "flag --commit")
    assert origin_of(file_only, "destinations.shop.timeout") == ("10", "default")
    # a flag given with its default value still wins over the file
    default_flag = cli("config", "check", str(config), "--port", "8088", env=base).stdout
    assert origin_of(default_flag, "serve.port") == ("8088", "flag --port")


def test_the_file_can_be_named_by_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "one.toml", ONE)
    env = {"ATTENTIVE_ROUTER_CONFIG": str(config), "SHOP_KEY": "k"}
    env |= {"SHOP_SERVER_WRITE_KEY": "w", "SHOP_WEBHOOK_SECRET": "s"}
    result = cli("config", "check", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# {config} (env $ATTENTIVE_ROUTER_CONFIG)\n")


def test_a_file_others_may_read_or_write_is_warned_about(tmp_path: Path) -> None:
    env = {"SHOP_KEY": "k", "SHOP_SERVER_WRITE_KEY": "w", "SHOP_WEBHOOK_SECRET": "s"}
    private = write(tmp_path / "private.toml", ONE, 0o600)
    assert "warning" not in cli("config", "check", str(private), env=env).stderr
    shared = write(tmp_path / "shared.toml", ONE, 0o664)
    result = cli("config", "check", str(shared), env=env)
    assert result.returncode == 0
    assert (
        f"attentive-router: warning: {shared} is readable and writable by other users "
        f"(mode 0664)" in result.stderr
    )
    assert f"chmod 600 {shared}" in result.stderr


# --- config init -------------------------------------------------------------------------------


def test_config_init_writes_a_valid_private_file_and_never_overwrites(tmp_path: Path) -> None:
    written = cli("config", "init", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    path = tmp_path / "attentive-router.toml"
    assert path.read_text() == EXAMPLE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load(path)
    assert sorted(loaded.file.destinations) == ["shop"]
    assert loaded.file.sources["web"].destination == "shop"
    checked = cli("config", "check", str(path), env={"SHOP_ATTENTIVE_API_KEY": "k"})
    assert checked.returncode == 0, checked.stderr
    assert "warning" not in checked.stderr
    path.write_text("# mine\n")
    again = cli("config", "init", str(path))
    assert again.returncode == 2
    assert "exists: not overwritten" in again.stderr
    assert path.read_text() == "# mine\n"
    printed = cli("config", "init", "-")
    assert printed.returncode == 0
    assert printed.stdout == EXAMPLE


# --- the README's files ------------------------------------------------------------------------


def test_the_readme_files_load(tmp_path: Path) -> None:
    one = load(write(tmp_path / "one.toml", readme_block("# deploy.toml: one brand")))
    assert one.file.sources["web"].write_key == "wk_shop_web"
    assert one.file.destinations["shop"].token_env == "SHOP_ATTENTIVE_KEY"
    two = load(write(tmp_path / "two.toml", readme_block("# deploy.toml: two brands")))
    assert sorted(two.file.destinations) == ["brand_a", "brand_b"]
    brand_a, brand_b = two.file.destinations["brand_a"], two.file.destinations["brand_b"]
    assert brand_a.aliases == {"Added To Cart": "Product Added"}
    assert brand_a.filter.deny_events == ("Debug *", "Test Event")
    assert brand_a.filter.allow_calls == ()
    assert brand_a.filter.allow_events == ()
    assert (brand_b.consent.category, brand_b.consent.missing) == ("marketing", "skip")
    assert transform_config(brand_b).default_region == "GB"
    assert transform_config(brand_a).unnamed_track == "skip"


def test_the_readme_config_check_output_is_the_real_one(tmp_path: Path) -> None:
    write(tmp_path / "deploy.toml", readme_block("# deploy.toml: two brands"))
    result = cli("config", "check", "deploy.toml", "--port", "8089", cwd=tmp_path, env=SECRETS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == readme_block("# deploy.toml (flag --config)")
    for secret in SECRETS.values():
        assert secret not in result.stdout


# --- send, transform and serve with a destination ----------------------------------------------


def two_accounts(tmp_path: Path, sandbox: SandboxProcess) -> Path:
    return write(
        tmp_path / "deploy.toml",
        f"""\
[sources.a-web]
write_key = "wk_a"
destination = "brand_a"

[sources.b-web]
write_key = "wk_b"
destination = "brand_b"

[destinations.brand_a]
token_env = "BRAND_A_ATTENTIVE_KEY"
base_url = "{sandbox.url}"
queue = "brand-a.db"
max_attempts = 1
retry_window = 0

[destinations.brand_b]
token_env = "BRAND_B_ATTENTIVE_KEY"
base_url = "{sandbox.url}"
queue = "brand-b.db"
default_region = "GB"
""",
    )


IDENTIFY = {
    "type": "identify",
    "userId": "u-1",
    "messageId": "m-1",
    "traits": {"phone": "07700 900123"},
    # brand B sends only what the shopper consented to
    "context": {"consent": {"categoryPreferences": {"marketing": True}}},
}


CUSTOM = {
    "type": "track",
    "event": "Gift Card Redeemed",
    "userId": "u-2",
    "messageId": "m-2",
    "context": {"traits": {"email": "u-2@example.com"}},
}


def test_send_delivers_with_the_destinations_key_url_queue_and_options(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes(orjson.dumps(IDENTIFY) + b"\n")
    with SandboxProcess(token=SECRETS["BRAND_B_ATTENTIVE_KEY"]) as sandbox:
        config = two_accounts(tmp_path, sandbox)
        work = tmp_path / "elsewhere"
        work.mkdir()
        unchosen = cli("send", "--config", str(config), str(events), cwd=work, env=SECRETS)
        assert unchosen.returncode == 2
        assert "has 2 destinations (brand_a, brand_b): choose one with --destination" in (
            unchosen.stderr
        )
        args = ("send", "--config", str(config), "--progress", "never", str(events))
        sent = cli(*args, "--destination", "brand_b", cwd=work, env=SECRETS)
        assert sent.returncode == 0, sent.stderr
        assert "delivered" in sent.stderr
        bodies = [r["body"] for r in sandbox.requests("/v1/identity-resolution/user-identifiers")]
        assert bodies == [{"phone": "+447700900123", "clientUserId": "u-1"}]  # region GB
        assert (tmp_path / "brand-b.db").exists()  # the queue sits beside the file
        assert not (work / "attentive-router.db").exists()
        # brand A's key is not the one the sandbox accepts: Attentive refuses it
        custom = tmp_path / "custom.ndjson"
        custom.write_bytes(orjson.dumps(CUSTOM) + b"\n")
        args_a = (*args[:-1], str(custom), "--destination", "brand_a")
        refused = cli(*args_a, cwd=work, env=SECRETS)
        assert refused.returncode == 3, refused.stderr
        assert (
            "Fix the key ($BRAND_A_ATTENTIVE_KEY, named by the configuration file), then run "
            f"`attentive-router deliver --config {config} --destination brand_a`"
        ) in refused.stderr
        queue = SQLiteQueue(tmp_path / "brand-a.db")
        try:
            assert queue.counts().get(State.QUEUED) == 1  # kept for a deliver with a good key
        finally:
            queue.close()
        # the hint, run as printed once brand A's variable holds a key the sandbox accepts
        fixed = {**SECRETS, "BRAND_A_ATTENTIVE_KEY": sandbox.token}
        hint = ("deliver", "--config", str(config), "--destination", "brand_a")
        delivered = cli(*hint, "--progress", "never", cwd=work, env=fixed)
        assert delivered.returncode == 0, delivered.stderr
        assert [r["body"]["externalEventId"] for r in sandbox.requests("/v1/events/custom")] == [
            "m-2"
        ]
        unknown = cli(*args, "--destination", "brand_c", cwd=work, env=SECRETS)
        assert unknown.returncode == 2
        assert "--destination brand_c: " in unknown.stderr
        assert "has no such destination (brand_a, brand_b)" in unknown.stderr


def test_transform_uses_the_destinations_mapping_options(tmp_path: Path) -> None:
    config = write(tmp_path / "deploy.toml", readme_block("# deploy.toml: two brands"))
    line = orjson.dumps(IDENTIFY).decode() + "\n"
    source = tmp_path / "in.ndjson"
    source.write_text(line)
    records = {}
    for name in ("brand_a", "brand_b"):
        result = cli("transform", "--config", str(config), "--destination", name, str(source))
        assert result.returncode == 0, result.stderr
        records[name] = orjson.loads(result.stdout)
    # brand A reads phone numbers as US ones, where this one is not valid: nothing to send
    assert records["brand_a"]["outcome"] == "skipped"
    assert records["brand_b"]["requests"][0]["body"]["phone"] == "+447700900123"
    flag = cli(
        "transform",
        "--config",
        str(config),
        "--destination",
        "brand_a",
        "--default-region",
        "GB",
        str(source),
    )
    assert orjson.loads(flag.stdout)["requests"][0]["body"]["phone"] == "+447700900123"
    without = cli("transform", "--destination", "brand_a", str(source))
    assert without.returncode == 2
    assert "--destination brand_a: no configuration file" in without.stderr


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def test_one_serve_delivers_each_brand_with_its_own_key_and_a_refused_key_pauses_only_its_brand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SandboxProcess(token=SECRETS["BRAND_B_ATTENTIVE_KEY"]) as sandbox:
        config = two_accounts(tmp_path, sandbox)
        for name, value in SECRETS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ATTENTIVE_API_TOKEN", "global-key")  # never used: both name theirs
        args = ["--config", str(config), "--key-retry-interval", "0.2"]
        with ServeProcess(queue=None, write_keys=(), args=args, deliver=True) as serve:
            for key, brand in (("wk_a", "a"), ("wk_b", "b")):
                for n in range(3):
                    event = {**CUSTOM, "messageId": f"{brand}-{n}", "userId": f"{brand}-u{n}"}
                    answer = serve.post("/v1/track", json=event, auth=(key, ""))
                    assert answer.status_code == 200, answer.text
            sent = wait_for(
                lambda: len(found := sandbox.requests("/v1/events/custom")) >= 3 and found,
                what="brand B delivered",
            )
            assert sorted(r["body"]["externalEventId"] for r in sent) == ["b-0", "b-1", "b-2"]
            health = wait_for(
                lambda: (body := serve.get("/healthz").json())["delivery"] == "paused" and body,
                what="brand A paused",
            )
            assert health["status"] == "degraded"
            assert health["destinations"]["brand_b"] == {"status": "ok", "delivery": "running"}
            paused = health["destinations"]["brand_a"]
            assert paused["delivery"] == "paused"
            assert "$BRAND_A_ATTENTIVE_KEY" in paused["problem"]
            assert "next_key_check" in paused
            metrics = serve.get("/metrics").text
            assert 'attentive_router_delivery_paused{destination="brand_a"} 1.0' in metrics
            assert 'attentive_router_delivery_paused{destination="brand_b"} 0.0' in metrics
            assert 'attentive_router_queue_depth{destination="brand_a"} 3.0' in metrics
            assert "ATTENTIVE_API_TOKEN is set, but brand_a" in serve.stderr()
    brand_a = SQLiteQueue(tmp_path / "brand-a.db")
    try:
        records = brand_a.records()
        assert {r.destination for r in records} == {"brand_a"}
        assert {r.state for r in records} == {State.QUEUED}  # kept, nothing lost
    finally:
        brand_a.close()


def test_a_queue_holding_another_destinations_events_keeps_them_queued(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_bytes(orjson.dumps(CUSTOM) + b"\n")
    with SandboxProcess(token=SECRETS["BRAND_B_ATTENTIVE_KEY"]) as sandbox:
        config = two_accounts(tmp_path, sandbox)
        # brand A's events, queued without sending (ingest only) ...
        queue = SQLiteQueue(tmp_path / "brand-a.db", destination="brand_a")
        try:
            queue.put([NewEvent("m-x", "u-x", orjson.dumps(CUSTOM), 0.0)], 0.0)
        finally:
            queue.close()
        # ... then the file is moved to brand B in the configuration file
        moved = config.read_text().replace('queue = "brand-b.db"', 'queue = "brand-a.db"')
        moved = moved.replace('queue = "brand-a.db"\nmax_attempts', 'queue = "old-a.db"\nmax')
        config.write_text(moved.replace("max = 1", "max_attempts = 1"))
        env = {**SECRETS, "BRAND_B_ATTENTIVE_KEY": sandbox.token}
        args = ("deliver", "--config", str(config), "--destination", "brand_b")
        result = cli(*args, "--progress", "never", env=env)
        assert result.returncode == 0, result.stderr
        assert "holds events recorded for other destinations (1 for 'brand_a')" in result.stderr
        assert "'brand_b'" in result.stderr
        assert sandbox.requests("/v1/events/custom") == []
    stored = SQLiteQueue(tmp_path / "brand-a.db")
    try:
        assert [(r.destination, r.state) for r in stored.records()] == [("brand_a", State.QUEUED)]
    finally:
        stored.close()


def test_serve_with_a_destination_accepts_only_its_sources_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "deploy.toml", readme_block("# deploy.toml: two brands"))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    event = {"type": "track", "event": "Gift Card Redeemed", "userId": "u-1", "messageId": "m-1"}
    queue = tmp_path / "brand-a.db"
    args = ["--config", str(config), "--destination", "brand_a"]
    with ServeProcess(queue=queue, write_keys=(), args=args) as serve:
        for key in ("wk_brand_a_web", SECRETS["BRAND_A_SEGMENT_WRITE_KEY"]):
            accepted = serve.post("/v1/track", json=event, auth=(key, ""))
            assert accepted.status_code == 200, accepted.text
        refused = serve.post("/v1/track", json=event, auth=("wk_brand_b_web", ""))
        assert refused.status_code == 401
        cors = httpx.options(
            f"{serve.url}/v1/t",
            headers={
                "Origin": "https://brand-b.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert cors.headers.get("access-control-allow-origin") == "https://brand-b.example"
    stored = SQLiteQueue(queue)
    try:
        assert sorted(r.source for r in stored.records()) == ["brand-a-segment", "brand-a-web"]
    finally:
        stored.close()


def test_serve_start_warns_about_a_file_others_may_write(tmp_path: Path) -> None:
    config = write(tmp_path / "deploy.toml", readme_block("# deploy.toml: one brand"), 0o646)
    args = ["--config", str(config), "--log-level", "warning"]
    with ServeProcess(queue=tmp_path / "q.db", write_keys=(), args=args) as serve:
        health = httpx.get(f"{serve.url}/healthz", timeout=5)
        assert health.status_code == 200
        assert "is readable and writable by other users (mode 0646)" in serve.stderr()


def test_a_destinations_aliases_filter_and_consent_reach_the_transform(tmp_path: Path) -> None:
    """The README's two-brand file: brand A aliases and filters, brand B needs consent."""
    config = write(tmp_path / "deploy.toml", readme_block("# deploy.toml: two brands"))
    base = {"userId": "u-1", "timestamp": "2026-12-03T10:00:00Z"}
    events = [
        {
            **base,
            "type": "track",
            "event": "Added To Cart",
            "messageId": "alias",
            "properties": {"product_id": "sku-1", "price": 5, "currency": "USD"},
        },
        {**base, "type": "track", "event": "Debug click", "messageId": "debug"},
        {
            **base,
            "type": "track",
            "event": "Signed Up",
            "messageId": "consent",
            "context": {"consent": {"categoryPreferences": {"marketing": False}}},
        },
    ]
    source = tmp_path / "in.ndjson"
    source.write_text("".join(orjson.dumps(e).decode() + "\n" for e in events))
    outcomes = {}
    for name in ("brand_a", "brand_b"):
        result = cli("transform", "--config", str(config), "--destination", name, str(source))
        assert result.returncode == 0, result.stderr
        outcomes[name] = {
            record["messageId"]: record for record in map(orjson.loads, result.stdout.splitlines())
        }
    aliased = outcomes["brand_a"]["alias"]
    assert aliased["requests"][0]["path"] == "/v1/events/ecommerce/add-to-cart"
    assert "aliased_event" in [w["code"] for w in aliased["warnings"]]
    assert outcomes["brand_a"]["debug"]["reason"] == "filtered"
    # brand A checks no consent; it skips track events the rules do not name
    assert outcomes["brand_a"]["consent"]["reason"] == "unmapped_event"
    # brand B has no alias or filter, and needs the marketing consent
    assert outcomes["brand_b"]["alias"]["outcome"] != "mapped" or (
        outcomes["brand_b"]["alias"]["requests"][0]["path"] == "/v1/events/custom"
    )
    assert outcomes["brand_b"]["debug"]["reason"] == "no_consent"
    assert outcomes["brand_b"]["consent"]["reason"] == "no_consent"
