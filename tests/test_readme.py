"""The README's commands, run as a reader would run them, against the sandbox on 127.0.0.1.

Every fenced code block of the README is either run here (shell blocks by bash, Python blocks
by the interpreter), run by another test (the browser section's snippet and ``AnalyticsBrowser``
example by ``tests/test_browser.py``), or listed with the reason it is not run (sample output).
A new block that is none of these fails ``test_every_block_is_run_or_explained``, so the README
cannot drift from what the commands do.

The blocks are run as written, with only what a reader would fill in replaced: the API key
(``...``) by the sandbox's token, the example ports by free ones, ``.venv/bin`` by this
interpreter's, and, as a guard, ``--base-url`` pointing at the sandbox is added to every command
that would talk to Attentive, so that no test ever reaches the real API.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from attentive_router import Context, Mapped, route
from attentive_router._cli.main import build_parser
from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.browser_harness import free_port  # noqa: E402

README = ROOT / "README.md"
SAMPLES = ROOT / "src" / "attentive_router" / "_cli" / "samples" / "sample-events.ndjson"
BIN = Path(sys.executable).parent
TALKS_TO_ATTENTIVE = ("check", "send", "deliver", "serve")
SERVE_PORT, SANDBOX_PORT = "8088", "8788"


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    text: str


def blocks(text: str | None = None) -> list[Block]:
    text = README.read_text(encoding="utf-8") if text is None else text
    return [
        Block(text[: match.start()].count("\n") + 1, match.group(1), match.group(2))
        for match in re.finditer(
            r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", text, re.DOTALL | re.MULTILINE
        )
    ]


def block(marker: str) -> Block:
    found = [b for b in blocks() if marker in b.text]
    assert len(found) == 1, f"{len(found)} README blocks contain {marker!r}"
    return found[0]


RUN_HERE = {
    "attentive-router transform events.ndjson": "test_transform_block",
    "attentive-router dead-letters list": "test_delivery_block",
    "attentive-router serve --port 8088           #": "test_serve_block",
    "import segment.analytics as analytics": "test_library_client_blocks",
    "import rudderstack.analytics as rudder_analytics": "test_library_client_blocks",
    "--analytics-js node_modules/@segment/analytics-next/dist/umd": "test_browser_serve_block",
    "ATTENTIVE_ROUTER_WEBHOOK_SECRETS=": "test_webhook_blocks",
    "openssl dgst -sha1 -hmac": "test_webhook_blocks",
    "attentive-router sandbox --port 8788": "test_sandbox_block",
    'ATTENTIVE_ROUTER_CONSOLE_TOKEN="$(openssl rand': "test_console_block",
    "from attentive_router import Config, Context, Mapped, route, to_json": "test_library_block",
}
RUN_ELSEWHERE = {
    "SNIPPET_VERSION": "tests/test_browser.py loads this snippet in Chromium",
    "AnalyticsBrowser.load": "tests/test_browser.py runs this call in Chromium",
    "# deploy.toml: one brand": "tests/test_config.py loads this file and serves with it",
    "# deploy.toml: two brands": "tests/test_config.py loads this file, sends and serves with it",
    "# deploy.toml (flag --config)": "tests/test_config.py compares config check's output to it",
    "deploy.toml: 3 problems:": "tests/test_config.py compares a bad file's messages to it",
    "# scale.toml: ingest nodes": "tests/test_kafka_readme.py starts its topology from this file",
    "attentive-router kafka init --config scale.toml": "tests/test_kafka_readme.py runs these",
    "# [kafka] of scale.toml on a managed": "tests/test_kafka_readme.py runs config check on it",
}
NOT_RUN = {
    "make run    # demo": "make test is this suite; make run is `demo`, run by test_cli_delivery",
    '{"messageId": "…", "outcome": "mapped"': "sample output of transform, not a command",
    "ID  STATE               LINE": "sample output of events list (run in test_delivery_block)",
    "# /etc/systemd/system/attentive-router-ingest.service": "a systemd unit file",
    "# /etc/systemd/system/attentive-router-deliver.service": "a systemd unit file",
    "# /etc/systemd/system/attentive-router-brands.service": "a systemd unit file",
    "# /etc/systemd/system/attentive-router-brands-deliver.service": "a systemd unit file",
    "# /etc/systemd/system/attentive-router-worker.service": "a systemd unit file",
    "clients ──► load balancer": "a drawing of the scale-out topology",
}


def unclaimed(text: str | None = None) -> list[str]:
    """Blocks that no test runs and no reason explains (or that more than one claims)."""
    known = {**RUN_HERE, **RUN_ELSEWHERE, **NOT_RUN}
    problems = []
    for found in blocks(text):
        claims = [marker for marker in known if marker in found.text]
        if len(claims) != 1:
            problems.append(f"README line {found.line}: claimed by {claims}")
    return problems


def test_every_block_is_run_or_explained() -> None:
    assert unclaimed() == []
    for marker in {**RUN_HERE, **RUN_ELSEWHERE, **NOT_RUN}:
        block(marker)  # each marker names exactly one block
    for name in set(RUN_HERE.values()):
        assert callable(globals().get(name)), name


def test_a_new_block_without_a_test_is_found() -> None:
    text = "# Title\n\n```sh\nattentive-router transform new.ndjson\n```\n"
    assert unclaimed(text) == ["README line 3: claimed by []"]


# --- running a shell block ---------------------------------------------------------------------


def shell_script(text: str, ports: Mapping[str, int], sandbox: str) -> tuple[str, list[str]]:
    """The block as a bash script (placeholders filled, servers in the background), and its
    commands: the script notes the status of command ``k`` as ``status CODE k``."""
    commands: list[str] = []
    joined = re.sub(r"\\\n\s*", "", text)
    lines = [
        "set -uo pipefail",
        "pids=()",
        "trap 'for p in \"${pids[@]}\"; do kill $p 2>/dev/null || true; done; wait' EXIT",
    ]
    for raw in joined.splitlines():
        line = raw.replace(".venv/bin/", f"{BIN}/")
        line = line.replace("ATTENTIVE_API_TOKEN=...", "ATTENTIVE_API_TOKEN=sandbox-token")
        line = line.replace("whsec-...", "whsec-readme-test")
        for example, port in ports.items():
            line = re.sub(rf"\b{example}\b", str(port), line)
        match = re.search(r"attentive-router (\w+)", line)
        command = match.group(1) if match else ""
        if command in TALKS_TO_ATTENTIVE and "--base-url" not in line and match:
            line = line[: match.end()] + f" --base-url {sandbox}" + line[match.end() :]
        if command in ("serve", "sandbox"):
            code = line.split("#", 1)[0].rstrip()
            listens = re.search(r"--port (\d+)", code)
            assert listens, f"a README server without --port: {raw}"
            lines += [f"{code} > server-{listens.group(1)}.log 2>&1 &", "pids+=($!)"]
            lines.append(f"wait_for {listens.group(1)}")
        elif line.split("#", 1)[0].strip() and not line.lstrip().startswith(
            ("export ", "SECRET=", "body=", "sig=")
        ):
            # A reader runs each command on its own: note its status, go on to the next.
            lines.append(line)
            lines.append(f'echo "status $? {len(commands)}" >> statuses')
            commands.append(line)
        else:
            lines.append(line)
    prelude = (
        "wait_for() { for _ in $(seq 200); do "
        '(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; '
        'echo "nothing listens on $1" >&2; cat server-$1.log >&2; return 1; }\n'
        # What the test adds after a block: wait until serve's queue has nothing left to send.
        # Every destination's queue_depth sample is 0.
        "settled() { for _ in $(seq 200); do m=$(curl -s 127.0.0.1:$1/metrics); "
        "echo \"$m\" | grep -q '^attentive_router_queue_depth{' && "
        "! echo \"$m\" | grep -q '^attentive_router_queue_depth{[^}]*} [1-9]' && return 0; "
        "sleep 0.05; done; return 1; }"
    )
    return prelude + "\n" + "\n".join(lines) + "\n", commands


def run_shell(
    text: str,
    workdir: Path,
    ports: Mapping[str, int],
    sandbox: str,
    failing: Mapping[str, int] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the block; every command must exit 0, or with the status ``failing`` gives for it."""
    script, commands = shell_script(text, ports, sandbox)
    (workdir / "statuses").unlink(missing_ok=True)
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # Nothing may leave the machine: a request to any other host fails at once.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    explain = f"--- script\n{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"exit {result.returncode}\n{explain}"
    statuses = (
        (workdir / "statuses").read_text().split("\n") if (workdir / "statuses").exists() else []
    )
    for entry in filter(None, statuses):
        _, status, index = entry.split()
        command = commands[int(index)]
        written = command.split("#", 1)[0]
        expected = next((n for part, n in (failing or {}).items() if part in written), 0)
        assert int(status) == expected, f"{command!r} exited {status}, not {expected}\n{explain}"
    return result


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess() as process:
        yield process


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copyfile(SAMPLES, tmp_path / "events.ndjson")
    return tmp_path


# --- the blocks -----------------------------------------------------------------------------------


def test_transform_block(workdir: Path, sandbox: SandboxProcess) -> None:
    text = block("attentive-router transform events.ndjson").text
    result = run_shell(text, workdir, {}, sandbox.url)
    outcomes = (workdir / "outcomes.ndjson").read_text().splitlines()
    assert len(outcomes) == len(SAMPLES.read_text().splitlines())
    assert "mapped" in result.stderr


def test_delivery_block(workdir: Path, sandbox: SandboxProcess) -> None:
    """check, send, deliver and dead-letters list / show / replay, as the README has them.

    The sandbox refuses two custom events (400) so that there are dead letters to show and
    replay; the README's example id and messageId (42, evt-7) are replaced by theirs once
    ``send`` made them.
    """
    text = block("attentive-router dead-letters list").text
    refused = custom_event_ids()[:2]
    sandbox.set_faults(scripts={message: [400] for message in refused})
    first, rest = text.split("dead-letters list\n", 1)
    # send exits 1 when some events ended as dead letters, as its --help says.
    run_shell(
        first + "dead-letters list\n",
        workdir,
        {},
        sandbox.url,
        failing={"attentive-router send ": 1},
    )
    queue = SQLiteQueue(workdir / "attentive-router.db")
    try:
        dead = queue.records(State.DEAD)
    finally:
        queue.close()
    assert sorted(r.key for r in dead) == sorted(refused)
    ids = [str(r.id) for r in dead]
    # The README names one dead letter by id and one by messageId.
    rest = rest.replace("show 42", f"show {ids[0]}")
    rest = rest.replace("replay 42 evt-7", f"replay {ids[0]} {dead[1].key}")
    result = run_shell(rest, workdir, {}, sandbox.url)
    assert refused[0] in result.stdout  # show prints the dead letter
    queue = SQLiteQueue(workdir / "attentive-router.db")
    try:
        replayed = [queue.record(int(i)) for i in ids]
        assert [r.state if r else None for r in replayed] == [State.QUEUED, State.QUEUED]
    finally:
        queue.close()


def custom_event_ids() -> list[str]:
    """messageIds of the samples that become custom events (their externalEventId)."""
    context = Context(received_at=datetime.now(UTC))
    found = []
    for line in SAMPLES.read_text().splitlines():
        event = json.loads(line)
        outcome = route(event, context)
        if isinstance(outcome, Mapped) and outcome.requests[0].path == "/v1/events/custom":
            found.append(event["messageId"])
    return found


def test_sandbox_block(workdir: Path, sandbox: SandboxProcess) -> None:
    text = block("attentive-router sandbox --port 8788").text
    result = run_shell(text, workdir, {SANDBOX_PORT: free_port()}, sandbox.url)
    assert '"path": "/v1/' in result.stdout or '"path":"/v1/' in result.stdout


def test_serve_block(workdir: Path, sandbox: SandboxProcess) -> None:
    text = block("attentive-router serve --port 8088           #").text + "settled 8088\n"
    result = run_shell(text, workdir, {SERVE_PORT: free_port()}, sandbox.url)
    assert '"status":"ok"' in result.stdout.replace(" ", "")
    assert '"success":true' in result.stdout.replace(" ", "")
    sandbox.wait_for_requests(1, "/v1/events/ecommerce/product-view", timeout=10)


def test_console_block(workdir: Path, sandbox: SandboxProcess) -> None:
    text = block('ATTENTIVE_ROUTER_CONSOLE_TOKEN="$(openssl rand').text
    result = run_shell(text, workdir, {SERVE_PORT: free_port()}, sandbox.url)
    # curl prints each answer without a newline: the console's answer is the one with rows.
    rows = json.loads(result.stdout[result.stdout.index('{"rows"') :])["rows"]
    assert [(row["user"], row["name"], row["source"]) for row in rows] == [
        ("user-7", "Product Viewed", "shop")
    ]


def test_webhook_blocks(workdir: Path, sandbox: SandboxProcess) -> None:
    setup = block("ATTENTIVE_ROUTER_WEBHOOK_SECRETS=").text
    request = block("openssl dgst -sha1 -hmac").text
    script = setup + request + "settled 8088\n"
    result = run_shell(script, workdir, {SERVE_PORT: free_port()}, sandbox.url)
    assert '"success":true' in result.stdout.replace(" ", "")
    sandbox.wait_for_requests(1, "/v1/identity-resolution/user-identifiers", timeout=10)


def test_browser_serve_block(workdir: Path, sandbox: SandboxProcess) -> None:
    modules = ROOT / "tests" / "browser" / "node_modules"
    if not (modules / "@segment" / "analytics-next").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("tests/browser/node_modules is missing: run `make browser`")
        pytest.skip("needs @segment/analytics-next in tests/browser (run `make browser`)")
    (workdir / "node_modules").symlink_to(modules)
    text = block("--analytics-js node_modules/@segment/analytics-next/dist/umd").text
    text = text.replace("npm install @segment/analytics-next", "ls node_modules/@segment")
    port = free_port()
    text += f"curl -sf 127.0.0.1:{port}/v1/projects/YOUR_WRITE_KEY/settings\n"
    text = text.replace("attentive-router serve ", f"attentive-router serve --port {port} ", 1)
    result = run_shell(text, workdir, {}, sandbox.url)
    assert '"apiHost":"events.shop.example/v1"' in result.stdout


def test_library_block() -> None:
    code = block("from attentive_router import Config, Context, Mapped, route, to_json").text
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('POST /v1/events/ecommerce/product-view {"items": [')


def test_library_client_blocks(sandbox: SandboxProcess, tmp_path: Path) -> None:
    """The segment and rudder examples, against a serve that knows their write key."""
    for marker in (
        "import segment.analytics as analytics",
        "import rudderstack.analytics as rudder_analytics",
    ):
        sandbox.reset()
        code = block(marker).text
        with ServeProcess(
            queue=tmp_path / f"{marker.split()[1]}.db", sandbox=sandbox, write_keys=("wk_live_123",)
        ) as serve:
            code = code.replace("http://127.0.0.1:8088", serve.url)
            result = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env={**os.environ, "NO_PROXY": "127.0.0.1"},
            )
            assert result.returncode == 0, result.stderr
            purchases = sandbox.wait_for_requests(1, "/v1/events/ecommerce/purchase", timeout=10)
            assert purchases[0]["body"]["orderId"] == "o-1001"


SYSTEMD_UNITS = (
    "# /etc/systemd/system/attentive-router-ingest.service",
    "# /etc/systemd/system/attentive-router-deliver.service",
    "# /etc/systemd/system/attentive-router-brands.service",
    "# /etc/systemd/system/attentive-router-brands-deliver.service",
    "# /etc/systemd/system/attentive-router-worker.service",
)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_units_are_valid(tmp_path: Path) -> None:
    """Not run (that needs systemd as init), but checked as systemd reads them."""
    installed = str(BIN / "attentive-router")
    names = []
    for marker in SYSTEMD_UNITS:
        text = block(marker).text
        assert "/opt/attentive-router/.venv/bin/attentive-router" in text
        unit = tmp_path / marker.rsplit("/", 1)[1]
        unit.write_text(text.replace("/opt/attentive-router/.venv/bin/attentive-router", installed))
        names.append(str(unit))
    assert "serve --no-deliver" in block(SYSTEMD_UNITS[0]).text
    assert "deliver --follow" in block(SYSTEMD_UNITS[1]).text
    # one serve for every destination of the file, or deliver --follow for every destination
    assert "serve --config /etc/attentive-router/deploy.toml" in block(SYSTEMD_UNITS[2]).text
    assert "deliver --follow --config" in block(SYSTEMD_UNITS[3]).text
    assert (
        "deliver --follow --config /etc/attentive-router/scale.toml" in block(SYSTEMD_UNITS[4]).text
    )
    for marker in SYSTEMD_UNITS:
        [command] = re.findall(r"^ExecStart=\S+ (.*)$", block(marker).text, re.MULTILINE)
        parsed = build_parser().parse_args(shlex.split(command.replace("%d", "/run/creds")))
        assert parsed.command in {"serve", "deliver"}, command
    result = subprocess.run(
        ["systemd-analyze", "verify", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
