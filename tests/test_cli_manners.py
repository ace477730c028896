"""Operating the command line: numeric options checked, no quiet no-ops, Unix manners.

Option checks run the real parser in-process (``main``); the rest run the CLI as a subprocess
against a real sandbox on 127.0.0.1, through real pipes.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router._cli.main import build_parser, main
from attentive_router._queue.interface import NewEvent, Settlement, State
from attentive_router._queue.sqlite import SQLiteQueue
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.delivery_harness import custom_event  # noqa: E402

SAMPLES = ROOT / "src/attentive_router/_cli/samples/sample-events.ndjson"
TOKEN = "manners-test-token-51c2"
UNNAMED_TRACK = {"type": "track", "messageId": "no-name", "userId": "u-9"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN) as server:
        yield server


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def target(sandbox: SandboxProcess, queue: Path) -> list[str]:
    return ["--queue", str(queue), "--base-url", sandbox.url, "--token", TOKEN]


def events_file(path: Path, *events: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
    return path


# Finding 4: every numeric option is checked when the command line is read.

POSITIVE = "expected a number > 0"
NON_NEGATIVE = "expected a number >= 0"
COUNT = "expected a whole number >= 1"
PORT = "expected a port number from 0 to 65535"

OUT_OF_RANGE = [
    (["send", "f", "--rate", "0"], "--rate", POSITIVE, "0"),
    (["deliver", "--rate", "-1"], "--rate", POSITIVE, "-1"),
    (["serve", "--rate", "inf"], "--rate", POSITIVE, "inf"),
    (["deliver", "--identity-rate", "0"], "--identity-rate", POSITIVE, "0"),
    (["send", "f", "--timeout", "-1"], "--timeout", POSITIVE, "-1"),
    (["check", "--timeout", "0"], "--timeout", POSITIVE, "0"),
    (["serve", "--timeout", "nan"], "--timeout", POSITIVE, "nan"),
    (["deliver", "--concurrency", "0"], "--concurrency", COUNT, "0"),
    (["send", "f", "--concurrency", "-3"], "--concurrency", COUNT, "-3"),
    (["serve", "--concurrency", "2.5"], "--concurrency", COUNT, "2.5"),
    (["deliver", "--max-attempts", "0"], "--max-attempts", COUNT, "0"),
    (["send", "f", "--retry-window", "-1"], "--retry-window", NON_NEGATIVE, "-1"),
    (["send", "f", "--dedupe-window", "-5"], "--dedupe-window", NON_NEGATIVE, "-5"),
    (["serve", "--dedupe-window", "-0.5"], "--dedupe-window", NON_NEGATIVE, "-0.5"),
    (["serve", "--lock-timeout", "-1"], "--lock-timeout", NON_NEGATIVE, "-1"),
    (["serve", "--grace", "-2"], "--grace", NON_NEGATIVE, "-2"),
    (["serve", "--port", "70000"], "--port", PORT, "70000"),
    (["sandbox", "--port", "-1"], "--port", PORT, "-1"),
    (["sandbox", "--port", "http"], "--port", PORT, "http"),
    (["dead-letters", "list", "--limit", "0"], "--limit", COUNT, "0"),
    (["deliver", "--rate", "fast"], "--rate", POSITIVE, "fast"),
]


@pytest.mark.parametrize(("argv", "option", "expected", "value"), OUT_OF_RANGE)
def test_a_numeric_option_out_of_range_is_a_usage_error_naming_the_range(
    argv: list[str], option: str, expected: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert f"error: argument {option}: {expected}, got {value}\n" in capsys.readouterr().err


IN_RANGE = [
    (["send", "f", "--rate", "0.5"], "rate", 0.5),
    (["deliver", "--identity-rate", "1e-3"], "identity_rate", 0.001),
    (["check", "--timeout", "0.25"], "timeout", 0.25),
    (["deliver", "--concurrency", "1"], "concurrency", 1),
    (["deliver", "--max-attempts", "1"], "max_attempts", 1),
    (["send", "f", "--retry-window", "0"], "retry_window", 0.0),
    (["send", "f", "--dedupe-window", "0"], "dedupe_window", 0.0),
    (["serve", "--lock-timeout", "0"], "lock_timeout", 0.0),
    (["serve", "--grace", "0"], "grace", 0.0),
    (["serve", "--port", "0"], "port", 0),
    (["sandbox", "--port", "65535"], "port", 65535),
    (["dead-letters", "list", "--limit", "1"], "limit", 1),
    (["deliver"], "rate", 150.0),  # the defaults pass too
    (["serve"], "grace", 5.0),
]


@pytest.mark.parametrize(("argv", "name", "value"), IN_RANGE)
def test_a_numeric_option_in_range_is_accepted(argv: list[str], name: str, value: object) -> None:
    assert getattr(build_parser().parse_args(argv), name) == value


def _every_action(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _every_action(sub)
        else:
            yield parser.prog, action


def test_no_numeric_option_takes_an_unchecked_int_or_float() -> None:
    actions = list(_every_action(build_parser()))
    unchecked = [(prog, action.dest) for prog, action in actions if action.type in {int, float}]
    assert unchecked == []
    assert len({prog for prog, _ in actions}) >= 9  # every command was walked


def test_rate_zero_fails_at_once_and_valid_values_deliver(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    queue = tmp_path / "q.db"
    source = events_file(tmp_path / "in.ndjson", custom_event("m-1", "u-1"))
    started = time.monotonic()
    stalled = cli("send", str(source), *target(sandbox, queue), "--rate", "0")
    assert stalled.returncode == 2
    assert "argument --rate: expected a number > 0, got 0" in stalled.stderr
    assert time.monotonic() - started < 30
    assert not queue.exists()
    tight = ["--rate", "0.5", "--identity-rate", "0.5", "--concurrency", "1", "--timeout", "5"]
    tight += ["--max-attempts", "1", "--retry-window", "0", "--dedupe-window", "0"]
    sent = cli("send", str(source), *target(sandbox, queue), "--progress", "never", *tight)
    assert sent.returncode == 0, sent.stderr
    assert "delivered                1" in sent.stderr
    refused = cli("serve", "--write-key", "wk", "--no-deliver", "--grace", "-1")
    assert refused.returncode == 2
    assert "argument --grace: expected a number >= 0, got -1" in refused.stderr


# Finding 5: no quiet no-ops.


@pytest.mark.parametrize(
    "argv",
    [
        ["deliver", "--token", TOKEN],
        ["dead-letters", "list"],
        ["dead-letters", "show", "1"],
        ["dead-letters", "replay", "--all"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_missing_queue_is_an_error_naming_it_and_nothing_is_created(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "typo.db"
    assert main([*argv, "--queue", str(typo)]) == 2
    assert f"no queue at {typo} (nothing was created)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_send_still_creates_its_queue(sandbox: SandboxProcess, tmp_path: Path) -> None:
    queue = tmp_path / "new.db"
    source = events_file(tmp_path / "in.ndjson", custom_event("fresh-1", "u-1"))
    sent = cli("send", str(source), *target(sandbox, queue), "--progress", "never")
    assert sent.returncode == 0, sent.stderr
    assert queue.exists()
    delivered = cli("deliver", *target(sandbox, queue), "--progress", "never")
    assert delivered.returncode == 0, delivered.stderr


def test_replay_says_for_each_event_what_it_did_or_why_not(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.reset()
    sandbox.set_faults(scripts={"bad-1": [422], "bad-2": [422]})
    queue = tmp_path / "q.db"
    source = events_file(
        tmp_path / "in.ndjson",
        custom_event("ok-1", "u-1"),
        custom_event("bad-1", "u-2"),
        custom_event("bad-2", "u-3"),
        UNNAMED_TRACK,
    )
    sent = cli("send", str(source), *target(sandbox, queue), "--progress", "never")
    assert sent.returncode == 1, sent.stderr
    ids = {r.key: r.id for r in _records(queue)}

    def replay(*which: str) -> subprocess.CompletedProcess[str]:
        return cli("dead-letters", "replay", *which, "--queue", str(queue))

    listed = cli("dead-letters", "list", "--limit", "1", "--queue", str(queue))
    assert listed.returncode == 0
    assert "bad-1" in listed.stdout
    assert "bad-2" not in listed.stdout
    assert "1 more dead letter(s) not shown: raise --limit" in listed.stderr

    bad = replay("999", "ok-1", str(ids["no-name"]))
    assert bad.returncode == 1
    assert "999: not replayed: no such event in" in bad.stderr
    assert (
        f"ok-1 (id {ids['ok-1']}): not replayed: not a dead letter: it is delivered" in bad.stderr
    )
    assert "not replayed: not a dead letter: it is rejected (missing_event_name)" in bad.stderr
    assert bad.stdout == "0 dead letter(s) queued again\n"

    good = replay("bad-1", str(ids["bad-2"]))  # a messageId, as `show` takes, and an id
    assert good.returncode == 0, good.stderr
    assert f"bad-1 (id {ids['bad-1']}): queued again" in good.stdout
    assert f"{ids['bad-2']}: queued again" in good.stdout
    assert "2 dead letter(s) queued again; run `attentive-router deliver`" in good.stdout

    twice = replay("bad-1")
    assert twice.returncode == 0
    assert "already queued again, waiting for `attentive-router deliver`" in twice.stdout
    assert "0 dead letter(s) queued again" in twice.stdout

    both = replay("bad-1", "--all")
    assert both.returncode == 2
    assert "or pass --all (not both)" in both.stderr

    delivered = cli("deliver", *target(sandbox, queue), "--progress", "never")
    assert delivered.returncode == 0, delivered.stderr
    after = replay("bad-2")
    assert after.returncode == 1
    assert "not a dead letter: it is delivered" in after.stderr
    none = replay("--all")
    assert none.returncode == 0
    assert f"0 dead letter(s) queued again: there are none in {queue}" in none.stdout


def _records(queue: Path) -> list[Any]:
    opened = SQLiteQueue(queue)
    try:
        return opened.records()
    finally:
        opened.close()


# Finding 7: Unix manners.


def _first_line_then_close(argv: list[str]) -> tuple[bytes, int, bytes]:
    """Run the CLI with stdout on a real pipe, read one line, close the pipe, wait."""
    child = subprocess.Popen(
        [sys.executable, "-m", "attentive_router", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    first = child.stdout.readline()
    child.stdout.close()
    errors = child.stderr.read()
    child.stderr.close()
    return first, child.wait(timeout=60), errors


def test_transform_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.ndjson"
    big.write_bytes(SAMPLES.read_bytes() * 100)  # megabytes of output: far beyond a pipe's buffer
    first, status, errors = _first_line_then_close(["transform", str(big)])
    assert orjson.loads(first)["outcome"] in {"mapped", "skipped", "rejected"}
    assert (status, errors) == (0, b"")


def test_dead_letters_list_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    queue = tmp_path / "q.db"
    _dead_letters(queue, 400)
    first, status, errors = _first_line_then_close(
        ["dead-letters", "list", "--json", "--limit", "400", "--queue", str(queue)]
    )
    assert orjson.loads(first)["state"] == "dead_lettered"
    assert (status, errors) == (0, b"")


def _dead_letters(path: Path, count: int) -> None:
    queue = SQLiteQueue(path)
    try:
        body = orjson.dumps(custom_event("x", "u", 0) | {"padding": "p" * 2000})
        now = time.time()
        queue.put([NewEvent(f"d-{i}", f"u-{i}", body, now) for i in range(count)], now)
        claims = queue.claim(now, count)
        dead = [Settlement(c.id, State.DEAD, 1, last_attempt_at=now, reason="x") for c in claims]
        queue.settle(dead)
    finally:
        queue.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_output_that_fails_otherwise_is_still_an_error() -> None:
    with Path("/dev/full").open("wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "attentive_router", "transform", str(SAMPLES)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert "cannot write the output: No space left on device" in result.stderr


@pytest.mark.parametrize(
    ("token", "status", "states"),
    [
        (TOKEN, 1, {"pipe-1": State.DELIVERED, "pipe-2": State.DEAD}),
        ("refused-token", 3, {"pipe-1": State.QUEUED, "pipe-2": State.QUEUED}),
    ],
    ids=["dead letter", "refused key"],
)
def test_send_with_its_report_pipe_closed_still_delivers_and_keeps_its_status(
    sandbox: SandboxProcess, tmp_path: Path, token: str, status: int, states: dict[str, State]
) -> None:
    sandbox.reset()
    sandbox.set_faults(scripts={"pipe-2": [422]})
    queue = tmp_path / "q.db"
    source = events_file(
        tmp_path / "in.ndjson", custom_event("pipe-1", "u-1"), custom_event("pipe-2", "u-2")
    )
    argv = ["send", str(source), "--queue", str(queue), "--base-url", sandbox.url]
    argv += ["--token", token, "--progress", "always"]
    child = subprocess.Popen(
        [sys.executable, "-m", "attentive_router", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    child.stderr.close()  # nobody reads the progress or the summary
    assert child.wait(timeout=60) == status  # as with a reader
    assert {r.key: r.state for r in _records(queue)} == states


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("valid", 0, "the API key is valid"),
        ("refused", 3, "answered 401"),
        ("not found", 1, "answered 404"),
        ("unreachable", 4, "cannot reach http://127.0.0.1:"),
    ],
)
def test_check_exit_status_tells_the_failures_apart(
    sandbox: SandboxProcess, case: str, status: int, message: str
) -> None:
    base, token = sandbox.url, TOKEN
    if case == "refused":
        token = "not-the-token"
    elif case == "not found":
        base = f"{sandbox.url}/nowhere"
    elif case == "unreachable":
        base = f"http://127.0.0.1:{_closed_port()}"
    result = cli("check", "--base-url", base, "--token", token, "--timeout", "5")
    assert result.returncode == status
    assert message in (result.stdout if status == 0 else result.stderr)
    assert "not-the-token" not in result.stdout + result.stderr


def test_send_and_check_agree_on_a_refused_key(sandbox: SandboxProcess, tmp_path: Path) -> None:
    source = events_file(tmp_path / "in.ndjson", custom_event("key-1", "u-1"))
    args = ["--queue", str(tmp_path / "q.db"), "--base-url", sandbox.url, "--token", "wrong"]
    sent = cli("send", str(source), *args, "--progress", "never")
    checked = cli("check", "--base-url", sandbox.url, "--token", "wrong")
    assert sent.returncode == checked.returncode == 3


@pytest.mark.parametrize(
    "command",
    ["transform", "send", "deliver", "dead-letters", "check", "serve", "sandbox", "demo"],
)
def test_help_lists_the_exit_status(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    assert "exit status:" in capsys.readouterr().out
