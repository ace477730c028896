"""Operating it: delivery failures are visible, and every printed hint works as printed.

``send`` and ``serve`` run as users run them (subprocesses) against a real sandbox on
127.0.0.1, or against a closed port there. Each hint a test meets in an output is parsed out of
it and run exactly as printed.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from attentive_router._cli.serve_process import ServeProcess
from attentive_router._delivery.health import (
    CONNECTION_REFUSED,
    CONNECTION_RESET,
    TIMEOUT,
    UNKNOWN_HOST,
    Health,
    transport_cause,
)
from attentive_router._sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the helpers live beside the tests, not in the package
    sys.path.insert(0, str(ROOT))

from tests.delivery_harness import custom_event  # noqa: E402

TOKEN = "operating-token-4c1d"
CUSTOM = "/v1/events/custom"
HINT = re.compile(r"`((?:attentive-router|kill) [^`]+)`")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with SandboxProcess(token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(sandbox: SandboxProcess) -> None:
    sandbox.reset()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def events_file(path: Path, count: int, prefix: str) -> Path:
    lines = [custom_event(f"{prefix}-{i}", f"{prefix}-user-{i}", i) for i in range(count)]
    path.write_bytes(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in lines))
    return path


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    base = {k: v for k, v in os.environ.items() if k != "ATTENTIVE_API_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
    )


def delivered_ids(sandbox: SandboxProcess, prefix: str) -> set[str]:
    """The externalEventIds starting with ``prefix`` the sandbox accepted (a request an earlier
    test left hanging may arrive late, so counts are per test)."""
    ids = (r["body"].get("externalEventId", "") for r in sandbox.requests(CUSTOM))
    return {i for i in ids if i.startswith(prefix)}


def hints(text: str) -> list[str]:
    """The commands an output suggests, as printed (between backticks)."""
    return HINT.findall(text)


def run_hint(hint: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    """Run a printed hint as a user would paste it (``attentive-router`` is this package)."""
    words = shlex.split(hint)
    if words[0] == "attentive-router":
        return cli(*words[1:], cwd=cwd, env=env)
    return subprocess.run(words, capture_output=True, text=True, timeout=30, check=False)


def log_lines(stderr: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.05)


# --- The health tracker, on a made-up clock ------------------------------------------------------


def test_health_reports_a_failing_endpoint_once_then_a_summary_a_minute_then_its_recovery() -> None:
    health = Health("http://127.0.0.1:9", every=60.0)
    health.failure(CUSTOM, CONNECTION_REFUSED, "refused", 0.0)
    health.failure(CUSTOM, CONNECTION_REFUSED, "refused", 0.1)
    assert health.failing() == []  # two failures in a row are not yet a pattern
    assert health.reports(0.2) == []
    health.failure(CUSTOM, CONNECTION_REFUSED, "refused", 0.3)
    [problem] = health.failing()
    assert (problem.cause, problem.failures, problem.target) == (
        CONNECTION_REFUSED,
        3,
        "http://127.0.0.1:9/v1/events/custom",
    )
    [first] = health.reports(0.4)
    assert (first.kind, first.count) == ("failing", 3)
    assert "is --base-url right?" in first.text()
    for i in range(500):
        health.failure(CUSTOM, CONNECTION_REFUSED, "refused", 1.0 + i / 10)
    assert health.reports(59.0) == []  # rate-limited: no line per request
    [summary] = health.reports(61.0)
    assert summary.count == 500
    assert health.reports(200.0) == []  # nothing new, nothing said
    health.success(CUSTOM)
    [recovered] = health.reports(201.0)
    assert (recovered.kind, recovered.count) == ("recovered", 503)
    assert health.failing() == []


def test_health_stays_quiet_for_an_isolated_failure_and_reports_dead_letters() -> None:
    health = Health("http://127.0.0.1:9")
    health.failure(CUSTOM, "HTTP 503", "busy", 0.0)
    health.success(CUSTOM)
    assert health.reports(1.0) == []
    assert health.failing() == []
    health.dead(CUSTOM, "permanent_error", "Attentive answered 422", "evt-1")
    health.dead(CUSTOM, "permanent_error", "Attentive answered 422", "evt-2")
    [dead] = health.reports(2.0)
    assert (dead.kind, dead.cause, dead.count, dead.example) == (
        "dead",
        "permanent_error",
        2,
        "evt-1",
    )
    health.dead(CUSTOM, "permanent_error", "Attentive answered 422", "evt-3")
    assert health.reports(3.0) == []
    assert [r.count for r in health.reports(63.0)] == [1]


def test_transport_causes_are_read_through_the_chain_of_errors() -> None:
    refused = ConnectionRefusedError(111, "Connect call failed")
    wrapped = TimeoutError("connect")  # the transport's broader class
    wrapped.__cause__ = refused
    assert transport_cause(wrapped) == CONNECTION_REFUSED
    assert transport_cause(TimeoutError()) == TIMEOUT
    assert transport_cause(ConnectionResetError()) == CONNECTION_RESET
    assert transport_cause(socket.gaierror(-2, "Name or service not known")) == UNKNOWN_HOST
    assert transport_cause(RuntimeError("other")) == "connection error"


# --- Finding 2: send against a wrong URL names the cause ------------------------------------------


def test_send_to_a_closed_port_names_the_cause_while_running_and_in_the_summary(
    tmp_path: Path,
) -> None:
    port = closed_port()
    source = events_file(tmp_path / "in.ndjson", 10, "closed")
    url = f"http://127.0.0.1:{port}"
    args = ["--queue", "q2.db", "--base-url", url, "--token", TOKEN]
    result = cli(
        "send",
        str(source),
        *args,
        "--max-attempts",
        "3",
        "--retry-window",
        "0",
        "--progress",
        "always",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    err = result.stderr
    warning = f"attentive-router send: warning: POST {url}{CUSTOM}: connection refused"
    # One line when the endpoint started failing, not one per request (30 were refused).
    assert err.count(warning) == 1, err
    assert "(is --base-url right?)" in err
    assert f"FAILING: connection refused at {url}{CUSTOM}" in err  # the progress line
    assert re.search(rf"{CUSTOM}\s+error\s+30\n\s+connection refused\s+30\n", err), err
    assert re.search(r"retries_exhausted\s+10", err)
    # The hint names the queue; without it, the command would look at another queue.
    [listing] = [hint for hint in hints(err) if "dead-letters" in hint]
    assert listing == "attentive-router dead-letters list --queue q2.db"
    listed = run_hint(listing, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert all(f"closed-{i}" in listed.stdout for i in range(10))
    assert "retries_exhausted" in listed.stdout


@pytest.mark.parametrize(
    ("faults", "cause"),
    [
        ({"timeout_rate": 1.0, "hang_seconds": 3}, "timeout"),
        ({"reset_rate": 1.0}, "connection reset"),
    ],
)
def test_the_summary_breaks_errors_down_by_cause(
    sandbox: SandboxProcess, tmp_path: Path, faults: dict[str, Any], cause: str
) -> None:
    sandbox.set_faults(faults)
    source = events_file(tmp_path / "in.ndjson", 4, "cause")
    result = cli(
        "send",
        str(source),
        *("--queue", "q.db", "--base-url", sandbox.url, "--token", TOKEN),
        *("--max-attempts", "2", "--retry-window", "0", "--timeout", "0.5"),
        *("--concurrency", "8", "--progress", "never"),
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert re.search(rf"{CUSTOM}\s+error\s+8\n\s+{cause}\s+8\n", result.stderr), result.stderr
    assert f"warning: POST {sandbox.url}{CUSTOM}: {cause}:" in result.stderr


def test_a_healthy_send_warns_about_nothing(sandbox: SandboxProcess, tmp_path: Path) -> None:
    source = events_file(tmp_path / "in.ndjson", 10, "healthy")
    result = cli(
        "send",
        str(source),
        *("--queue", "q.db", "--base-url", sandbox.url, "--token", TOKEN, "--progress", "always"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert "FAILING" not in result.stderr
    assert " error " not in result.stderr
    assert hints(result.stderr) == []


# --- Finding 3: the hints of send and deliver carry their options ---------------------------------


def test_after_a_refused_key_the_printed_deliver_command_sends_the_rest(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    source = events_file(tmp_path / "in.ndjson", 6, "key")
    result = cli(
        "send",
        str(source),
        *("--queue", "q2.db", "--base-url", sandbox.url, "--default-region", "GB"),
        *("--progress", "never"),
        cwd=tmp_path,
        env={"ATTENTIVE_API_TOKEN": "wrong-key"},
    )
    assert result.returncode == 3, result.stderr
    [deliver] = hints(result.stderr)
    assert deliver == (
        f"attentive-router deliver --queue q2.db --base-url {sandbox.url} --default-region GB"
    )
    fixed = run_hint(deliver, tmp_path, env={"ATTENTIVE_API_TOKEN": TOKEN})
    assert fixed.returncode == 0, fixed.stderr
    assert re.search(r"delivered\s+6\n", fixed.stderr)
    assert delivered_ids(sandbox, "key-") == {f"key-{i}" for i in range(6)}


def test_after_an_interruption_the_printed_deliver_command_sends_the_rest(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.set_faults(status_for_all=503)
    token_file = tmp_path / "key"
    token_file.write_text(TOKEN + "\n")
    source = events_file(tmp_path / "in.ndjson", 5, "stop")
    base = {k: v for k, v in os.environ.items() if k != "ATTENTIVE_API_TOKEN"}
    command = [sys.executable, "-m", "attentive_router", "send", str(source)]
    command += ["--queue", "sub dir.db", "--base-url", sandbox.url, "--token-file", "key"]
    process = subprocess.Popen(
        [*command, "--progress", "never"],
        cwd=tmp_path,
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: sandbox.stats()["total"] >= 5, what="the first attempts")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "warning: POST" in err  # the 503s were said while they happened
    [deliver] = hints(err)
    assert deliver == (
        f"attentive-router deliver --queue 'sub dir.db' --base-url {sandbox.url} --token-file key"
    )
    sandbox.set_faults({})
    again = run_hint(deliver, tmp_path)
    assert again.returncode == 0, again.stderr
    assert re.search(r"delivered\s+5\n", again.stderr)


# --- Findings 1 and 3: serve says what fails, and takes a fixed key up by itself -----------------


def serve_warnings(server: ServeProcess) -> list[dict[str, Any]]:
    return [line for line in log_lines(server.stderr()) if line["level"] != "info"]


def post_events(server: ServeProcess, prefix: str, count: int) -> None:
    batch = [custom_event(f"{prefix}-{i}", f"{prefix}-user-{i}", i) for i in range(count)]
    answer = server.post("/v1/batch", json={"batch": batch}, auth=(server.write_key, ""))
    assert answer.status_code == 200, answer.text


HEALTHY = {
    "status": "ok",
    "delivery": "running",
    "destinations": {"default": {"status": "ok", "delivery": "running"}},
}


def test_serve_logs_a_closed_port_and_healthz_says_degraded(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with ServeProcess(queue=tmp_path / "q.db", sandbox=sandbox, args=["--base-url", url]) as server:
        assert server.get("/healthz").json() == HEALTHY
        post_events(server, "down", 10)
        health = wait_for(
            lambda: (body := server.get("/healthz").json())["status"] == "degraded" and body,
            what="healthz degraded",
        )
        [problem] = health["problems"]
        assert problem["cause"] == "connection refused"
        assert problem["target"] == url + CUSTOM
        assert problem["failures"] >= 3
        assert "Connect call failed" in problem["last_error"]
        time.sleep(2.5)  # more refused retries: still one line
        failing = [w for w in serve_warnings(server) if w["message"].startswith("delivery failing")]
        assert len(failing) == 1, failing
        assert failing[0]["level"] == "warning"
        assert failing[0]["cause"] == "connection refused"
        assert failing[0]["target"] == url + CUSTOM
        refused = server.get("/metrics").text
        errors = (
            'attentive_request_errors_total{cause="connection refused",destination="default",'
            f'endpoint="{CUSTOM}"}}'
        )
        assert re.search(re.escape(errors) + " [1-9]", refused), refused
        assert server.get("/healthz").json()["status"] == "degraded"


def test_serve_logs_dead_letters_and_5xx_and_their_recovery(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    queue = tmp_path / "q.db"
    with ServeProcess(queue=queue, sandbox=sandbox) as server:
        sandbox.set_faults(status_for_all=422)
        post_events(server, "bad", 4)
        dead = wait_for(
            lambda: [w for w in serve_warnings(server) if w["message"] == "events dead-lettered"],
            what="the dead letters logged",
        )
        assert dead[0]["reason"] == "permanent_error"
        assert dead[0]["endpoint"] == CUSTOM
        assert dead[0]["last"] == "Attentive answered 422; retrying cannot help"
        assert dead[0]["messageId"].startswith("bad-")
        listed = run_hint(dead[0]["see"], tmp_path / "..")  # works from anywhere
        assert listed.returncode == 0, listed.stderr
        assert dead[0]["messageId"] in listed.stdout
        sandbox.set_faults(status_for_all=503)
        post_events(server, "busy", 4)
        failing = wait_for(
            lambda: [w for w in serve_warnings(server) if w.get("cause") == "HTTP 503"],
            what="the 503s logged",
        )
        assert failing[0]["message"].startswith("delivery failing")
        degraded = server.get("/healthz").json()
        assert degraded["status"] == "degraded"
        assert degraded["problems"][0]["cause"] == "HTTP 503"
        sandbox.set_faults({})
        wait_for(lambda: server.get("/healthz").json()["status"] == "ok", what="healthz ok")
        recovered = wait_for(
            lambda: [w for w in serve_warnings(server) if "recovered" in w["message"]],
            what="the recovery logged",
        )
        assert recovered[0]["endpoint"] == CUSTOM


def test_a_healthy_serve_logs_no_warning_and_stays_ok(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    with ServeProcess(queue=tmp_path / "q.db", sandbox=sandbox) as server:
        post_events(server, "fine", 10)
        wait_for(lambda: len(delivered_ids(sandbox, "fine-")) == 10, what="the events delivered")
        time.sleep(1.5)  # a report round has passed
        assert server.get("/healthz").json() == HEALTHY
        assert serve_warnings(server) == []


def test_serve_pauses_on_a_refused_key_and_resumes_by_itself_once_it_is_accepted(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    sandbox.set_faults(status_for_all=401)
    args = ["--key-retry-interval", "0.5", "--log-level", "info"]
    with ServeProcess(queue=tmp_path / "q.db", sandbox=sandbox, args=args) as server:
        post_events(server, "paused", 5)
        paused = wait_for(
            lambda: (body := server.get("/healthz").json())["delivery"] == "paused" and body,
            what="paused",
        )
        assert paused["status"] == "degraded"
        assert "checks the key again every 0.5 s" in paused["problem"]
        assert "--token on the command line, which cannot change" in paused["problem"]
        assert "next_key_check" in paused
        assert "attentive-router deliver" not in server.stderr()  # serve holds the queue
        wait_for(lambda: "the API key is still refused" in server.stderr(), what="a check")
        sandbox.set_faults({})
        wait_for(lambda: len(delivered_ids(sandbox, "paused-")) == 5, what="the events delivered")
        assert server.get("/healthz").json() == HEALTHY
        # SIGHUP with a key from the command line: said to be impossible to re-read.
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: "which cannot change while serve runs" in server.stderr(), what="HUP")
        assert server.get("/healthz").json()["status"] == "ok"  # SIGHUP did not stop it
    messages = [line["message"] for line in log_lines(server.stderr())]
    assert any(m.startswith("SENDING PAUSED") for m in messages)
    assert any(m.startswith("the API key is accepted again") for m in messages)


def test_a_fixed_key_file_is_taken_up_on_the_printed_sighup(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_text("an-old-key\n")
    args = ["--token-file", str(key), "--token", ""]  # the file, not the sandbox's key
    with ServeProcess(queue=tmp_path / "q.db", sandbox=sandbox, args=args) as server:
        post_events(server, "rotated", 3)
        paused = wait_for(
            lambda: (body := server.get("/healthz").json())["delivery"] == "paused" and body,
            what="paused",
        )
        [hup] = hints(paused["problem"])
        assert re.fullmatch(r"kill -HUP \d+", hup)
        assert f"Fix the key in the file {key}" in paused["problem"]
        key.write_text(TOKEN + "\n")
        assert run_hint(hup, tmp_path).returncode == 0
        wait_for(lambda: len(delivered_ids(sandbox, "rotated-")) == 3, what="the events delivered")
        assert server.get("/healthz").json() == HEALTHY
