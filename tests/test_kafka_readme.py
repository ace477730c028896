"""The README's scale-out topology, started from its own configuration file and commands.

The file is used as written, with the brokers' addresses replaced by the test broker's (Tansu on
a loopback port); the commands run as written, with what a reader would fill in replaced: every
address by 127.0.0.1 and a free port, and ``--base-url`` pointing at the sandbox. Two ingest
nodes and two delivery workers then carry events from clients to the sandbox.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.kafka_broker import Broker, running_broker  # noqa: E402
from tests.test_readme import block  # noqa: E402

CONFIG_BLOCK = "# scale.toml: ingest nodes and delivery workers"
COMMANDS_BLOCK = "attentive-router kafka init --config scale.toml"
MANAGED_BLOCK = "# [kafka] of scale.toml on a managed cluster"
WRITE_KEY = "wk_scale_test"
EVERY_INTERFACE = ".".join("0" * 4)
"""What the README's production commands listen on; the tests listen on 127.0.0.1 only."""


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with running_broker() as started:
        yield started


def commands() -> dict[str, list[str]]:
    """The block's commands by name (``kafka``, ``serve``, ``deliver``), as argument lists."""
    found = {}
    for line in block(COMMANDS_BLOCK).text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "attentive-router", line
            found[words[1]] = words[1:]
    assert set(found) == {"kafka", "serve", "deliver"}
    return found


def on_loopback(words: list[str]) -> list[str]:
    """The command with every listening address made 127.0.0.1 and every port a free one."""
    return [
        word.replace(f"{EVERY_INTERFACE}:9464", "127.0.0.1:0").replace(EVERY_INTERFACE, "127.0.0.1")
        if word != "8088"
        else "0"
        for word in words
    ]


def scale_file(tmp_path: Path, broker: Broker) -> Path:
    text = block(CONFIG_BLOCK).text
    replaced, count = re.subn(r"kafka://[^\"]+/shop", broker.url("shop"), text)
    assert count == 1
    path = tmp_path / "scale.toml"
    path.write_text(replaced, encoding="utf-8")
    return path


def test_the_readme_topology_carries_events_from_two_nodes_through_two_workers(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    scale_file(tmp_path, broker)  # the README's file, beside its commands
    run = commands()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOP_WRITE_KEY", WRITE_KEY)
    init = subprocess.run(
        [sys.executable, "-m", "attentive_router", *run["kafka"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert "created shop.events (12 partitions, replication 3)" in init.stdout
    serve_args = on_loopback(run["serve"][1:])
    deliver_args = on_loopback(run["deliver"])
    with SandboxProcess(record=tmp_path / "attentive.ndjson") as sandbox:
        monkeypatch.setenv("SHOP_ATTENTIVE_KEY", sandbox.token)
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "attentive_router",
                    *deliver_args,
                    "--base-url",
                    sandbox.url,
                ],
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ),
            )
            for _ in range(2)
        ]
        try:
            with (
                ServeProcess(queue=None, write_keys=(), args=serve_args) as one,
                ServeProcess(queue=None, write_keys=(), args=serve_args) as two,
            ):
                for node in (one, two):
                    health = node.get("/healthz").json()
                    assert health["destinations"]["shop"]["kafka"]["reachable"] is True
                sent = set()
                for batch in range(6):
                    node = (one, two)[batch % 2]
                    events = [
                        {
                            "type": "track",
                            "event": "Gift Card Redeemed",
                            "userId": f"user-{n % 12}",
                            "messageId": f"readme-{batch}-{n}",
                            "properties": {"n": n},
                            "context": {"traits": {"email": f"user-{n % 12}@example.com"}},
                        }
                        for n in range(10)
                    ]
                    answer = node.post("/v1/batch", json={"batch": events}, auth=(WRITE_KEY, ""))
                    assert answer.status_code == 200, answer.text
                    sent |= {event["messageId"] for event in events}
                arrived = sandbox.wait_for_requests(60, "/v1/events/custom", timeout=90)
                ids = [request["body"]["externalEventId"] for request in arrived]
                assert set(ids) == sent
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            outputs = [worker.communicate(timeout=60)[1] for worker in workers]
        for worker, output in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, output
            assert "partitions assigned" in output
            assert "status on http://127.0.0.1:" in output
        settled = sum(
            int(match) for output in outputs for match in re.findall(r"delivered\s+(\d+)\n", output)
        )
        assert settled >= 60


def test_the_managed_cluster_settings_are_a_valid_file(tmp_path: Path, broker: Broker) -> None:
    base = scale_file(tmp_path, broker).read_text(encoding="utf-8")
    managed = block(MANAGED_BLOCK).text
    # The managed table replaces the first file's [kafka] table.
    without = re.sub(r"\[kafka\]\n(?:[^\[]*\n)*?\n", "", base, count=1)
    assert "[kafka]" not in without
    path = tmp_path / "managed.toml"
    path.write_text(without + "\n" + managed, encoding="utf-8")
    env = {**os.environ, "KAFKA_PASSWORD": "secret", "SHOP_WRITE_KEY": WRITE_KEY}
    env["SHOP_ATTENTIVE_KEY"] = "key"
    checked = subprocess.run(
        [sys.executable, "-m", "attentive_router", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    assert 'kafka.security_protocol = "SASL_SSL"' in checked.stdout
    assert "secret" not in checked.stdout + checked.stderr
    unset = {key: value for key, value in env.items() if key != "KAFKA_PASSWORD"}
    missing = subprocess.run(
        [sys.executable, "-m", "attentive_router", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=unset,
    )
    assert missing.returncode == 2
    assert "KAFKA_PASSWORD" in missing.stderr
