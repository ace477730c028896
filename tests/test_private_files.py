"""The queue's files hold shoppers' emails and phone numbers: they are owner-only (0600).

The commands run as users run them (subprocesses, against a sandbox on 127.0.0.1) under the
usual umask (022) and under one that takes nothing away (000): the queue, its ``-wal``,
``-shm`` and ``.lock`` files are 0600 either way. A queue in a folder every user may write to,
or an existing queue file others may read, gets a warning; a private one gets none.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.delivery_harness import custom_event

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._queue.files import exposure, tighten_side_files
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

TOKEN = "private-files-token-9e2a"
SUFFIXES = ("", "-wal", "-shm", ".lock")
UMASKS = pytest.mark.parametrize("mask", ["022", "000"])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(sandbox: SandboxProcess) -> None:
    sandbox.reset()


def under_umask(mask: str, command: Sequence[str]) -> list[str]:
    """``command`` run with the umask ``mask`` (the shell sets it, then becomes the command)."""
    return ["/bin/sh", "-c", 'umask "$0" && exec "$@"', mask, *command]


def cli(mask: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ATTENTIVE_API_TOKEN"}
    command = under_umask(mask, [sys.executable, "-m", "attentive_router", *args])
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env, cwd=cwd, check=False
    )


def events_file(path: Path, count: int, prefix: str) -> Path:
    lines = [custom_event(f"{prefix}-{i}", f"{prefix}-user-{i}", i) for i in range(count)]
    path.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in lines))
    return path


def modes(queue: Path) -> dict[str, int]:
    """The permission bits of the queue's files that exist, by suffix."""
    found = {}
    for suffix in SUFFIXES:
        path = queue.with_name(queue.name + suffix)
        if path.exists():
            found[suffix] = stat.S_IMODE(path.stat().st_mode)
    return found


def delivering(queue: Path, sandbox: SandboxProcess) -> tuple[str, ...]:
    """The arguments of ``deliver`` from ``queue`` to the sandbox."""
    return ("deliver", "--queue", str(queue), "--base-url", sandbox.url, "--token", TOKEN)


def wait_for(check: Any, timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.02)


def private_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    return folder


def shared_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)  # like /tmp without the sticky bit; mkdir's mode is cut by the umask
    return folder


# --- Files are created owner-only, whatever the umask --------------------------------------------


@UMASKS
def test_send_creates_the_queue_and_its_files_owner_only(
    sandbox: SandboxProcess, tmp_path: Path, mask: str
) -> None:
    sandbox.set_faults(latency_ms=150)  # slow enough to look at the files while it sends
    folder = private_folder(tmp_path)
    source = events_file(tmp_path / "in.ndjson", 8, f"send{mask}")
    env = {k: v for k, v in os.environ.items() if k != "ATTENTIVE_API_TOKEN"}
    command = [sys.executable, "-m", "attentive_router", "send", str(source), "--queue", "q.db"]
    command += ["--base-url", sandbox.url, "--token", TOKEN, "--concurrency", "1"]
    process = subprocess.Popen(
        under_umask(mask, command),
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = wait_for(
            lambda: (found := modes(folder / "q.db")).keys() == set(SUFFIXES) and found,
            what="the queue's four files while send runs",
        )
    finally:
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert running == dict.fromkeys(SUFFIXES, 0o600)
    after = modes(folder / "q.db")
    assert after.keys() >= {"", ".lock"}
    assert set(after.values()) == {0o600}
    assert "warning" not in err


@UMASKS
def test_serve_and_deliver_create_the_queue_files_owner_only(
    sandbox: SandboxProcess, tmp_path: Path, mask: str
) -> None:
    folder = private_folder(tmp_path)
    queue = folder / "q.db"
    server = ServeProcess(queue=queue)  # --no-deliver: it creates the queue, not the lock
    server.command = under_umask(mask, server.command)
    with server:
        batch = [custom_event(f"serve{mask}-{i}", f"u{i}") for i in range(3)]
        answer = server.post("/v1/batch", json={"batch": batch}, auth=(server.write_key, ""))
        assert answer.status_code == 200, answer.text
        assert modes(queue) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    assert "writable" not in server.stderr()
    # deliver then creates the lock file (and the -wal and -shm again: serve removed them)
    done = cli(mask, *delivering(queue, sandbox), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert modes(queue) == {"": 0o600, ".lock": 0o600}
    assert "warning" not in done.stderr
    server = ServeProcess(queue=folder / "d.db", sandbox=sandbox)
    server.command = under_umask(mask, server.command)
    with server:
        assert modes(folder / "d.db") == dict.fromkeys(SUFFIXES, 0o600)


@UMASKS
def test_deliver_follow_creates_its_files_owner_only(
    sandbox: SandboxProcess, tmp_path: Path, mask: str
) -> None:
    folder = private_folder(tmp_path)
    queue = folder / "q.db"
    SQLiteQueue(queue).close()  # a queue serve made: no -wal, -shm or lock file left
    assert modes(queue) == {"": 0o600}
    command = [sys.executable, "-m", "attentive_router", "deliver", "--follow", "--queue"]
    command += [str(queue), "--base-url", sandbox.url, "--token", TOKEN]
    log = tmp_path / "follow.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            under_umask(mask, command), stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        running = wait_for(
            lambda: (found := modes(queue)).keys() == set(SUFFIXES) and found,
            what="the queue's four files while deliver --follow runs",
        )
        wait_for(lambda: "following" in log.read_text(), what="its first line")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    err = log.read_text()
    assert process.returncode == 0, err
    assert running == dict.fromkeys(SUFFIXES, 0o600)
    assert "warning" not in err


def test_under_umask_000_a_queue_made_the_usual_way_would_be_world_writable(
    tmp_path: Path,
) -> None:
    """The premise of the tests above: without the router's care, the files are not private."""
    script = "import sqlite3; sqlite3.connect('plain.db').execute('create table t(x)')"
    subprocess.run(under_umask("000", [sys.executable, "-c", script]), cwd=tmp_path, check=True)
    assert stat.S_IMODE((tmp_path / "plain.db").stat().st_mode) & 0o044


# --- Warnings about who else can get at the queue ---------------------------------------------


def test_send_warns_about_a_world_writable_folder_and_not_a_private_one(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    source = events_file(tmp_path / "in.ndjson", 2, "folder")
    args = ("--base-url", sandbox.url, "--token", TOKEN)
    shared_folder(tmp_path)
    shared = cli("022", "send", str(source), "--queue", "shared/q.db", *args, cwd=tmp_path)
    assert shared.returncode == 0, shared.stderr
    assert (
        f"attentive-router: warning: the queue's folder {tmp_path / 'shared'} is writable by "
        "every user (mode 0777)" in shared.stderr
    )
    assert modes(tmp_path / "shared" / "q.db")[""] == 0o600  # the file itself is still private
    private_folder(tmp_path)
    private = cli("022", "send", str(source), "--queue", "private/q.db", *args, cwd=tmp_path)
    assert private.returncode == 0, private.stderr
    assert "warning" not in private.stderr


def test_an_existing_queue_readable_by_others_is_warned_about_until_it_is_made_private(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    folder = private_folder(tmp_path)
    SQLiteQueue(folder / "q.db").close()
    (folder / "q.db").chmod(0o644)  # as an earlier version left it
    args = ("--queue", "private/q.db", "--base-url", sandbox.url, "--token", TOKEN)
    loose = cli("022", "deliver", *args, cwd=tmp_path)
    assert loose.returncode == 0, loose.stderr
    assert (
        "attentive-router: warning: the queue private/q.db is readable by every user (mode "
        "0644), and it holds email addresses and phone numbers: `chmod 600 private/q.db*`"
    ) in loose.stderr
    assert stat.S_IMODE((folder / "q.db").stat().st_mode) == 0o644  # not changed behind one's back
    (folder / "q.db").chmod(0o600)
    tight = cli("022", "deliver", *args, cwd=tmp_path)
    assert tight.returncode == 0, tight.stderr
    assert "warning" not in tight.stderr


def test_serve_logs_the_warning_for_a_world_writable_folder_only(tmp_path: Path) -> None:
    shared = shared_folder(tmp_path)
    with ServeProcess(queue=shared / "q.db") as server:
        pass
    lines = [orjson.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
    [warning] = [line for line in lines if "writable by every user" in line["message"]]
    assert warning["level"] == "warning"
    assert warning["queue"] == str(shared / "q.db")
    with ServeProcess(queue=private_folder(tmp_path) / "q.db") as server:
        pass
    assert "writable" not in server.stderr()
    assert "readable" not in server.stderr()


def test_exposure_names_group_and_world_readers(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    assert exposure(queue) == []  # no file yet, private folder
    queue.write_bytes(b"")
    queue.chmod(0o640)
    [group] = exposure(queue)
    assert "readable by its group (mode 0640)" in group
    queue.chmod(0o604)
    [world] = exposure(queue)
    assert "readable by every user (mode 0604)" in world
    queue.chmod(0o600)
    assert exposure(queue) == []
    queue.chmod(0o200)  # write-only for the owner: nobody else reads it
    assert exposure(queue) == []


def test_side_files_left_loose_are_tightened_only_when_the_queue_is_private(
    tmp_path: Path,
) -> None:
    queue = tmp_path / "q.db"
    wal = tmp_path / "q.db-wal"
    queue.write_bytes(b"")
    wal.write_bytes(b"x")
    queue.chmod(0o644)
    wal.chmod(0o644)
    tighten_side_files(queue)
    assert stat.S_IMODE(wal.stat().st_mode) == 0o644  # the owner chose a shared queue
    queue.chmod(0o600)
    tighten_side_files(queue)
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600
