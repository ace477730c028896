"""``deliver --follow`` next to ``serve --no-deliver`` on one queue file, against the sandbox.

Ingest and delivery run as two processes, as a team deploys them: the deliverer takes up what
the server queues after it started, without being restarted; SIGTERM leaves nothing in flight
and exits 0; while it runs, no other process delivers from the queue.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from tests.delivery_harness import custom_event

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._delivery import follow as follow_module
from attentive_router._delivery.follow import follow
from attentive_router._delivery.job import Run
from attentive_router._delivery.sender import SenderSettings
from attentive_router._queue.intake import new_event
from attentive_router._queue.interface import Claim, QueueError, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

TOKEN = "follow-token-51c7"
CUSTOM = "/v1/events/custom"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(sandbox: SandboxProcess) -> None:
    sandbox.reset()


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ATTENTIVE_API_TOKEN"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=cwd,
        check=False,
    )


class Follower:
    """``attentive-router deliver --follow`` in a subprocess; its stderr goes to a file."""

    def __init__(self, sandbox: SandboxProcess, queue: Path, *more: str) -> None:
        command = [sys.executable, "-m", "attentive_router", "deliver", "--follow"]
        command += ["--queue", str(queue), "--base-url", sandbox.url, "--token", TOKEN, *more]
        self.log = queue.with_name("follow.log")
        self._stderr: IO[str] = self.log.open("w")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env(), text=True
        )
        wait_for(lambda: "following" in self.stderr() or self.process.poll() is not None)
        assert self.process.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def delivering(queue: Path, sandbox: SandboxProcess) -> tuple[str, ...]:
    """The arguments of ``deliver`` from ``queue`` to the sandbox."""
    return ("deliver", "--queue", str(queue), "--base-url", sandbox.url, "--token", TOKEN)


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.02)


def post_events(server: ServeProcess, prefix: str, count: int) -> None:
    batch = [custom_event(f"{prefix}-{i}", f"{prefix}-user-{i}", i) for i in range(count)]
    answer = server.post("/v1/batch", json={"batch": batch}, auth=(server.write_key, ""))
    assert answer.status_code == 200, answer.text


def delivered_ids(sandbox: SandboxProcess, prefix: str) -> set[str]:
    ids = (r["body"].get("externalEventId", "") for r in sandbox.requests(CUSTOM))
    return {i for i in ids if i.startswith(prefix)}


def counts(queue: Path) -> dict[State, int]:
    reader = SQLiteQueue(queue)
    try:
        return reader.counts()
    finally:
        reader.close()


def test_a_follower_delivers_what_serve_queues_after_it_started_and_stops_cleanly(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    queue = tmp_path / "q.db"
    with ServeProcess(queue=queue) as server:  # --no-deliver: ingest only
        post_events(server, "before", 3)
        follower = Follower(sandbox, queue, "--poll-interval", "0.1")
        try:
            wanted = {f"before-{i}" for i in range(3)}
            wait_for(lambda: delivered_ids(sandbox, "before") == wanted, what="queued before")
            for burst in range(3):  # later events wake the same process, each burst in turn
                started = time.monotonic()
                post_events(server, f"burst{burst}", 20)
                wanted = {f"burst{burst}-{i}" for i in range(20)}
                wait_for(lambda b=burst, w=wanted: delivered_ids(sandbox, f"burst{b}") == w)  # type: ignore[misc]
                assert time.monotonic() - started < 5  # woken by the poll, not a long timer
            assert follower.process.poll() is None
            # a second deliverer refuses while the follower runs, and names it
            second = cli(*delivering(queue, sandbox), cwd=tmp_path)
            assert second.returncode == 2
            pid = follower.process.pid
            assert f"{queue} is being delivered from by pid {pid}" in second.stderr
            status = follower.stop()
        finally:
            follower.kill()
    err = follower.stderr()
    assert status == 0, err
    assert counts(queue)[State.DELIVERED] == 63
    assert sum(counts(queue).values()) == 63
    assert err.startswith(
        f"attentive-router deliver: following {queue} (pid {pid}): delivering what is queued"
    )
    # a line per burst, not per event; the summary at the end counts them all
    line = r"^attentive-router deliver: (\d+) event\(s\) settled \(delivered \1\); \d+ still queued"
    bursts = re.findall(line, err, re.MULTILINE)
    assert 1 <= len(bursts) <= 4, err
    assert sum(map(int, bursts)) == 63
    assert err.count(" settled since start") == len(bursts)
    assert re.search(r"^  delivered\s+63$", err, re.MULTILINE)
    assert "interrupted" not in err
    assert len(err.splitlines()) < 25
    # what the follower did is not sent again by a later run
    again = cli(*delivering(queue, sandbox), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^  delivered\s+0$", again.stderr, re.MULTILINE)


def test_sigterm_with_requests_in_flight_leaves_them_queued_and_exits_0(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.set_faults(latency_ms=4000)
    queue = tmp_path / "q.db"
    with ServeProcess(queue=queue) as server:
        follower = Follower(sandbox, queue, "--grace", "0.5", "--concurrency", "4")
        try:
            post_events(server, "slow", 6)
            wait_for(lambda: counts(queue)[State.IN_FLIGHT] >= 4, what="requests in flight")
            stopped = time.monotonic()
            status = follower.stop()
            took = time.monotonic() - stopped
        finally:
            follower.kill()
        after = counts(queue)
        assert status == 0, follower.stderr()
        assert took < 3.5  # the grace period, not the sandbox's 4 s
        assert after[State.IN_FLIGHT] == 0
        assert after[State.QUEUED] == 6  # back in the queue, none lost, none half-done
        assert "  still queued             6" in follower.stderr()
        # once Attentive is quick again, the next deliverer sends them all
        sandbox.set_faults({})
        done = cli(*delivering(queue, sandbox), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert counts(queue)[State.DELIVERED] == 6
    assert delivered_ids(sandbox, "slow") >= {f"slow-{i}" for i in range(6)}


def test_requests_that_end_within_the_grace_period_are_settled(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.set_faults(latency_ms=700)
    queue = tmp_path / "q.db"
    with ServeProcess(queue=queue) as server:
        follower = Follower(sandbox, queue, "--grace", "10", "--concurrency", "2")
        try:
            post_events(server, "graced", 2)
            wait_for(lambda: counts(queue)[State.IN_FLIGHT] == 2, what="requests in flight")
            status = follower.stop(signal.SIGINT)
        finally:
            follower.kill()
    assert status == 0, follower.stderr()
    assert counts(queue)[State.DELIVERED] == 2
    assert counts(queue)[State.IN_FLIGHT] == 0


def test_follow_options_are_checked(tmp_path: Path) -> None:
    SQLiteQueue(tmp_path / "q.db").close()
    base = ("deliver", "--queue", "q.db", "--token", TOKEN)
    zero = cli(*base, "--follow", "--poll-interval", "0", cwd=tmp_path)
    assert zero.returncode == 2
    assert "argument --poll-interval: expected a number > 0, got 0" in zero.stderr
    negative = cli(*base, "--follow", "--grace", "-1", cwd=tmp_path)
    assert negative.returncode == 2
    assert "argument --grace: expected a number >= 0, got -1" in negative.stderr
    alone = cli(*base, "--poll-interval", "2", "--grace", "1", cwd=tmp_path)
    assert alone.returncode == 2
    assert "--poll-interval and --grace only apply with --follow" in alone.stderr
    bar = cli(*base, "--follow", "--progress", "always", cwd=tmp_path)
    assert bar.returncode == 2
    assert "--progress always does not apply to --follow" in bar.stderr
    missing = cli("deliver", "--follow", "--queue", "none.db", "--token", TOKEN, cwd=tmp_path)
    assert missing.returncode == 2
    assert not (tmp_path / "none.db").exists()


def test_data_version_changes_when_another_process_queues(tmp_path: Path) -> None:
    watcher = SQLiteQueue(tmp_path / "q.db")
    writer = SQLiteQueue(tmp_path / "q.db")
    try:
        first = watcher.data_version()
        assert watcher.data_version() == first  # nothing written: no change
        writer.claim(time.time(), 10)  # nothing to claim: nothing written
        assert watcher.data_version() == first
        writer.put([new_event(custom_event("evt-1", "user-1"), time.time())], time.time())
        assert watcher.data_version() != first
    finally:
        watcher.close()
        writer.close()


def test_a_follower_says_what_fails_and_keeps_running_after_dead_letters(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.set_faults(status_for_all=400)  # permanent: dead-lettered at once
    queue = tmp_path / "q.db"
    with ServeProcess(queue=queue) as server:
        follower = Follower(sandbox, queue, "--poll-interval", "0.1")
        try:
            post_events(server, "bad", 3)
            wait_for(lambda: "dead_lettered 3" in follower.stderr(), what="the summary line")
            wait_for(lambda: "warning: 3 event(s) dead-lettered" in follower.stderr())
            assert follower.process.poll() is None  # a service does not stop for bad events
            sandbox.set_faults({})
            post_events(server, "good", 2)
            wait_for(lambda: delivered_ids(sandbox, "good") == {"good-0", "good-1"})
            status = follower.stop()
        finally:
            follower.kill()
    err = follower.stderr()
    assert status == 0, err  # stopped as asked; the dead letters were said as they happened
    assert "3 dead letter(s) in the queue: `attentive-router dead-letters list --queue" in err


def test_a_refused_key_pauses_the_follower_which_resumes_once_the_key_is_fixed(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    queue = tmp_path / "q.db"
    key = tmp_path / "key"
    key.write_text("wrong-key\n")
    with ServeProcess(queue=queue) as server:
        command = [sys.executable, "-m", "attentive_router", "deliver", "--follow"]
        command += ["--queue", str(queue), "--base-url", sandbox.url, "--token-file", str(key)]
        command += ["--key-retry-interval", "0.2"]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), text=True
        )
        try:
            post_events(server, "refused", 2)
            _wait(lambda: counts(queue)[State.QUEUED] == 2 and process.poll() is None)
            time.sleep(1.0)  # several re-checks: the key is still refused
            assert process.poll() is None  # still running, waiting for a good key
            assert counts(queue)[State.QUEUED] == 2  # nothing lost
            key.write_text(sandbox.token + "\n")
            process.send_signal(signal.SIGHUP)  # read the key again and check it at once
            _wait(lambda: counts(queue)[State.DELIVERED] == 2)
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert "SENDING PAUSED: Attentive answered 401" in err
    assert "the API key is accepted again" in err


def _wait(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class _FailsOnce(SQLiteQueue):
    """A queue whose first claim fails, as a full disk would make it."""

    failed = False

    def claim(self, now: float, limit: int) -> list[Claim]:
        if not self.failed:
            self.failed = True
            msg = f"queue {self.path}: disk I/O error"
            raise QueueError(msg)
        return super().claim(now, limit)


def test_a_queue_failure_is_said_and_delivery_starts_again(
    sandbox: SandboxProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow_module, "RESTART_AFTER", 0.2)
    queue = _FailsOnce(tmp_path / "q.db")
    queue.put([new_event(custom_event("flaky-0", "flaky-user"), time.time())], time.time())
    out = io.StringIO()

    async def scenario() -> Run:
        stop = asyncio.Event()
        settings = SenderSettings(base_url=sandbox.url, token=TOKEN)
        following = follow(
            queue, settings, changes=queue.data_version, poll_interval=0.05, out=out, stop=stop
        )
        running = asyncio.create_task(following)
        for _ in range(300):
            if await asyncio.to_thread(delivered_ids, sandbox, "flaky"):
                break
            await asyncio.sleep(0.05)
        stop.set()
        return await running

    try:
        run = asyncio.run(scenario())
    finally:
        queue.close()
    assert queue.failed
    assert (
        f"attentive-router deliver: warning: the queue failed: queue {queue.path}: disk I/O "
        "error; starting again in 0.2 s (events in flight are sent again)"
    ) in out.getvalue()
    assert run.stats.outcomes[State.DELIVERED.label] == 1
    assert run.remaining[State.DELIVERED] == 1
    assert run.paused is None
    assert not run.interrupted


def test_a_long_running_follower_prunes_finished_events(
    sandbox: SandboxProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow_module, "PRUNE_EVERY", 0.1)
    queue = SQLiteQueue(tmp_path / "q.db", retention=0.0)  # finished events are kept 0 s
    out = io.StringIO()
    seen: list[dict[State, int]] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        settings = SenderSettings(base_url=sandbox.url, token=TOKEN)
        following = follow(
            queue, settings, changes=queue.data_version, poll_interval=0.05, out=out, stop=stop
        )
        running = asyncio.create_task(following)
        await asyncio.sleep(0.3)  # the start-up prune is behind: this event comes later
        event = new_event(custom_event("pruned-0", "pruned-user"), time.time())
        await asyncio.to_thread(queue.put, [event], time.time())
        for _ in range(300):
            seen.append(await asyncio.to_thread(queue.counts))
            if sum(seen[-1].values()) == 0 and delivered_ids(sandbox, "pruned"):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await running

    try:
        asyncio.run(scenario())
    finally:
        queue.close()
    assert delivered_ids(sandbox, "pruned") == {"pruned-0"}
    assert sum(seen[-1].values()) == 0  # delivered, then forgotten while it ran
    assert "1 event(s) settled (delivered 1)" in out.getvalue()
