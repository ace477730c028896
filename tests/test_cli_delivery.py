"""The delivery commands as users run them: subprocesses against a real sandbox on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router._queue.interface import State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.delivery_harness import custom_event  # noqa: E402

SAMPLES = Path(__file__).parents[1] / "src/attentive_router/_cli/samples/sample-events.ndjson"
TOKEN = "cli-test-token-7f3a91"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(sandbox: SandboxProcess) -> None:
    sandbox.reset()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def send_args(sandbox: SandboxProcess, queue: Path, *rest: str) -> list[str]:
    return [
        "--queue",
        str(queue),
        "--base-url",
        sandbox.url,
        "--token",
        TOKEN,
        "--progress",
        "never",
        *rest,
    ]


def custom_events(count: int, users: int = 5, prefix: str = "evt") -> bytes:
    lines = [custom_event(f"{prefix}-{i}", f"user-{i % users}", i) for i in range(count)]
    return b"\n".join(orjson.dumps(line) for line in lines) + b"\n"


def accepted_ids(sandbox: SandboxProcess) -> Counter[str]:
    return Counter(
        r["body"].get("externalEventId", "") for r in sandbox.requests("/v1/events/custom")
    )


def test_send_delivers_the_samples_and_a_second_run_sends_nothing(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    queue = tmp_path / "q.db"
    first = cli("send", str(SAMPLES), *send_args(sandbox, queue))
    assert first.returncode == 0, first.stderr
    assert "read 37: 37 new" in first.stderr
    assert "delivered               32" in first.stderr
    sent = len(sandbox.requests())
    assert sent == 35  # 32 events, three identify calls send two requests each
    again = cli("send", str(SAMPLES), *send_args(sandbox, queue))
    assert again.returncode == 0, again.stderr
    assert "37 already queued before (not sent again)" in again.stderr
    assert len(sandbox.requests()) == sent
    window_passed = cli("send", str(SAMPLES), *send_args(sandbox, queue, "--dedupe-window", "0"))
    assert window_passed.returncode == 0, window_passed.stderr
    assert "read 37: 37 new" in window_passed.stderr
    assert len(sandbox.requests()) == 2 * sent


def test_unreadable_lines_are_recorded_as_rejected(sandbox: SandboxProcess, tmp_path: Path) -> None:
    source = tmp_path / "in.ndjson"
    source.write_bytes(custom_events(2) + b"{not json\n")
    result = cli("send", str(source), *send_args(sandbox, tmp_path / "q.db"))
    assert result.returncode == 0, result.stderr
    assert "invalid_json" in result.stderr
    queue = SQLiteQueue(tmp_path / "q.db")
    try:
        rejected = queue.records(State.REJECTED)
    finally:
        queue.close()
    assert [r.reason for r in rejected] == ["invalid_json"]
    assert rejected[0].event == b"{not json\n"


def test_missing_token_is_a_usage_error(tmp_path: Path) -> None:
    env = {"ATTENTIVE_API_TOKEN": ""}
    result = cli("send", str(SAMPLES), "--queue", str(tmp_path / "q.db"), env=env)
    assert result.returncode == 2
    assert "no API key" in result.stderr


def test_refused_key_stops_sending_keeps_events_queued_and_never_leaks_the_key(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.set_faults(status_for_all=401)
    queue = tmp_path / "q.db"
    source = tmp_path / "in.ndjson"
    source.write_bytes(custom_events(200))
    result = cli("send", str(source), *send_args(sandbox, queue, "--concurrency", "4"))
    assert result.returncode == 3, result.stderr
    assert "SENDING STOPPED" in result.stderr
    assert "401" in result.stderr
    assert sandbox.stats()["total"] < 50
    store = SQLiteQueue(queue)
    try:
        counts = store.counts()
    finally:
        store.close()
    assert counts[State.QUEUED] == 200
    assert counts[State.DEAD] == 0
    for path in tmp_path.iterdir():
        assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in result.stdout + result.stderr
    sandbox.set_faults({})
    resumed = cli("deliver", *send_args(sandbox, queue))
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(accepted_ids(sandbox)) == sorted(f"evt-{i}" for i in range(200))


def test_ctrl_c_stops_cleanly_and_deliver_resumes(sandbox: SandboxProcess, tmp_path: Path) -> None:
    sandbox.set_faults(latency_ms=100)
    queue = tmp_path / "q.db"
    source = tmp_path / "in.ndjson"
    source.write_bytes(custom_events(300, users=300))
    args = [sys.executable, "-m", "attentive_router", "send", str(source)]
    process = subprocess.Popen(
        [*args, *send_args(sandbox, queue, "--concurrency", "4")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while sandbox.stats()["accepted"] < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    store = SQLiteQueue(queue)
    try:
        counts = store.counts()
    finally:
        store.close()
    assert counts[State.IN_FLIGHT] == 0  # every claim was settled or put back
    assert counts[State.QUEUED] > 0
    sandbox.set_faults({})
    resumed = cli("deliver", *send_args(sandbox, queue))
    assert resumed.returncode == 0, resumed.stderr
    ids = accepted_ids(sandbox)
    assert set(ids) == {f"evt-{i}" for i in range(300)}
    assert max(ids.values()) == 1  # stopping waited for the requests in flight


def test_dead_letters_list_show_replay(sandbox: SandboxProcess, tmp_path: Path) -> None:
    sandbox.set_faults(scripts={"evt-1": [422]})
    queue = tmp_path / "q.db"
    source = tmp_path / "in.ndjson"
    source.write_bytes(custom_events(3))
    sent = cli("send", str(source), *send_args(sandbox, queue))
    assert sent.returncode == 1, sent.stderr
    assert "permanent_error" in sent.stderr
    listing = cli("dead-letters", "list", "--queue", str(queue))
    assert listing.returncode == 0
    assert "evt-1" in listing.stdout
    assert "422" in listing.stdout
    shown = cli("dead-letters", "show", "evt-1", "--queue", str(queue))
    record = orjson.loads(shown.stdout)
    assert record["lastStatus"] == 422
    assert record["request"]["path"] == "/v1/events/custom"
    assert record["request"]["body"]["externalEventId"] == "evt-1"
    assert record["event"]["messageId"] == "evt-1"
    assert "error" in record["lastResponse"]
    replayed = cli("dead-letters", "replay", "--all", "--queue", str(queue))
    assert replayed.stdout.startswith("1 dead letter(s) queued again")
    delivered = cli("deliver", *send_args(sandbox, queue))
    assert delivered.returncode == 0, delivered.stderr
    again = cli("dead-letters", "replay", "--all", "--queue", str(queue))
    assert again.stdout.startswith("0 dead letter(s)")
    assert accepted_ids(sandbox)["evt-1"] == 1
    assert "no dead letters" in cli("dead-letters", "list", "--queue", str(queue)).stdout


def test_one_deliverer_per_queue(sandbox: SandboxProcess, tmp_path: Path) -> None:
    sandbox.set_faults(latency_ms=200)
    queue = tmp_path / "q.db"
    source = tmp_path / "in.ndjson"
    source.write_bytes(custom_events(40, users=1))
    first = subprocess.Popen(
        [sys.executable, "-m", "attentive_router", "send", str(source), *send_args(sandbox, queue)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while sandbox.stats()["total"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    second = cli("deliver", *send_args(sandbox, queue))
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)
    assert second.returncode == 2
    assert "is being delivered from by pid" in second.stderr


def test_check(sandbox: SandboxProcess) -> None:
    good = cli("check", "--base-url", sandbox.url, "--token", TOKEN)
    assert good.returncode == 0
    assert "valid" in good.stdout
    bad = cli("check", "--base-url", sandbox.url, "--token", "wrong")
    assert bad.returncode == 3  # as `send` exits for a refused key
    assert "401" in bad.stderr


def test_demo_runs_the_whole_pipeline() -> None:
    result = cli("demo", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "delivered               32" in result.stdout
    assert "still queued             0" in result.stdout
    assert "POST /v1/events/ecommerce/purchase" in result.stdout
    # The samples happened on 2026-01-08: older than Attentive's 12-hour journey horizon.
    assert re.search(r"stale_event\s+29\b", result.stdout)
    # The same samples through `serve`, posted as one Segment batch.
    assert "POST /v1/batch (37 events): 200" in result.stdout
    assert "the server's queue: 32 delivered, 3 skipped, 2 rejected" in result.stdout
    delivered = 'attentive_router_events_total{destination="default",outcome="delivered",reason=""}'
    assert f"{delivered} 32.0" in result.stdout
