"""Run the local Attentive sandbox in a subprocess and talk to its admin API.

``SandboxProcess`` starts ``python -m attentive_router sandbox --port 0`` with the current
interpreter, waits for the line announcing its URL, and stops it again (SIGTERM, then a kill
after a timeout), whatever happens in between. Tests, the benchmark and the demo use it to get
a real Attentive-compatible server on 127.0.0.1.

Example::

    with SandboxProcess(faults={"scripts": {"evt-1": [503, 200]}}) as sandbox:
        httpx.post(f"{sandbox.url}/v1/events/custom", json=body, headers=sandbox.auth_headers)
        assert sandbox.requests("/v1/events/custom")[0]["body"] == body
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

_ANNOUNCEMENT = re.compile(
    r"^attentive sandbox listening on (?P<url>http://\S+) \(token: (?P<token>\S+)\)$", re.MULTILINE
)


class SandboxError(RuntimeError):
    """The sandbox did not start, or its admin API refused a request."""


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class SandboxProcess:
    """A sandbox server in a subprocess, with a small client of its admin API."""

    def __init__(  # noqa: PLR0913 - one keyword per sandbox option
        self,
        *,
        token: str | None = None,
        faults: Mapping[str, Any] | None = None,
        rate_limits: Mapping[str, int] | None = None,
        no_rate_limits: bool = False,
        record: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
    ) -> None:
        """Describe the sandbox to start; ``start()`` (or ``with``) starts it.

        Args:
            token: The bearer token the sandbox accepts (default: its own default,
                ``sandbox-token``, or ``$ATTENTIVE_SANDBOX_TOKEN``).
            faults: Faults in effect from the start (see ``attentive-router sandbox --help``).
            rate_limits: Requests per second for some endpoints, by path.
            no_rate_limits: Turn rate limiting off (for throughput measurements).
            record: File every accepted request is appended to, as NDJSON.
            args: More command-line arguments for ``attentive-router sandbox``.
            startup_timeout: Seconds to wait for the sandbox to announce its URL.
            stop_timeout: Seconds to wait after SIGTERM before killing the process.
        """
        command = [sys.executable, "-m", "attentive_router", "sandbox", "--port", "0"]
        if token is not None:
            command += ["--token", token]
        if faults is not None:
            command += ["--faults", _dumps(faults)]
        for path, limit in (rate_limits or {}).items():
            command += ["--rate-limit", f"{path}={limit}"]
        if no_rate_limits:
            command.append("--no-rate-limits")
        if record is not None:
            command += ["--record", os.fspath(record)]
        self.command = [*command, *args]
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._stderr = ""
        self._client: httpx.Client | None = None
        self._url = ""
        self._token = ""
        self.returncode: int | None = None

    def start(self) -> Self:
        """Start the sandbox and wait until it accepts connections.

        Raises:
            SandboxError: It exited or did not announce its URL in time; the message holds
                what it wrote to stderr.
        """
        if self._process is not None:
            raise SandboxError("this sandbox was already started")
        self._directory = Path(tempfile.mkdtemp(prefix="attentive-sandbox-"))
        with (
            (self._directory / "stdout").open("wb") as stdout,
            (self._directory / "stderr").open("wb") as stderr,
        ):
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
            )
        weakref.finalize(self, _terminate, self._process, self.stop_timeout)
        try:
            match = self._wait_for_announcement()
        except BaseException:
            self.stop()
            raise
        self._url, self._token = match["url"], match["token"]
        self._client = httpx.Client(base_url=self._url, timeout=10.0, trust_env=False)
        return self

    def _wait_for_announcement(self) -> re.Match[str]:
        assert self._process is not None
        assert self._directory is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            text = (self._directory / "stdout").read_text(errors="replace")
            match = _ANNOUNCEMENT.search(text)
            if match is not None:
                return match
            status = self._process.poll()
            if status is not None:
                problem = f"exited with status {status} before announcing its URL"
                raise SandboxError(self._failure(problem))
            if time.monotonic() > deadline:
                problem = f"did not announce its URL within {self.startup_timeout:g} s"
                raise SandboxError(self._failure(problem))
            time.sleep(0.02)

    def _failure(self, problem: str) -> str:
        return f"the sandbox ({' '.join(self.command)}) {problem}; stderr:\n{self.stderr()}"

    def stderr(self) -> str:
        """What the sandbox has written to stderr so far (all of it, once stopped)."""
        if self._directory is None:
            return self._stderr
        return (self._directory / "stderr").read_text(errors="replace")

    def stop(self) -> int | None:
        """Stop the sandbox (SIGTERM, then kill) and clean up; return its exit status."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._url = ""
        if self._process is not None and self.returncode is None:
            self.returncode = _terminate(self._process, self.stop_timeout)
        if self._directory is not None:
            self._stderr = self.stderr()
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        return self.returncode

    def __enter__(self) -> Self:
        """Start the sandbox."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the sandbox."""
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        if not self._url:
            raise SandboxError("the sandbox is not running")
        return self._url

    @property
    def token(self) -> str:
        """The bearer token the sandbox accepts, as it announced it."""
        if not self._token:
            raise SandboxError("the sandbox is not running")
        return self._token

    @property
    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header of an authenticated request."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def pid(self) -> int | None:
        """The process id of the sandbox, once started."""
        return None if self._process is None else self._process.pid

    def _admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._client is None:
            raise SandboxError("the sandbox is not running")
        response = self._client.request(method, f"/_sandbox/{path}", **kwargs)
        if response.status_code != 200:
            raise SandboxError(f"{method} /_sandbox/{path}: {response.status_code} {response.text}")
        return response

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """The accepted requests (``seq``, ``path``, ``body``, ``received_at``, ``fault``)."""
        params = {} if path is None else {"path": path}
        result: list[dict[str, Any]] = self._admin("GET", "requests", params=params).json()
        return result

    def wait_for_requests(
        self, count: int, path: str | None = None, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` requests (to ``path``) are accepted; return them all.

        Raises:
            SandboxError: Fewer arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(path)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise SandboxError(f"{len(found)} of {count} requests accepted after {timeout} s")
            time.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        """Counts of the answers: ``received`` (path to status to count), ``accepted``, ..."""
        result: dict[str, Any] = self._admin("GET", "stats").json()
        return result

    def faults(self) -> dict[str, Any]:
        """The faults in effect."""
        result: dict[str, Any] = self._admin("GET", "faults").json()
        return result

    def set_faults(self, faults: Mapping[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
        """Replace the faults (and restart the scripts); return the faults now in effect.

        Raises:
            SandboxError: The sandbox refused them; the message says why.
        """
        document = {**(faults or {}), **more}
        result: dict[str, Any] = self._admin("PUT", "faults", content=_dumps(document)).json()
        return result

    def reset(self) -> None:
        """Clear records, counts and rate buckets; restore the faults the sandbox started with."""
        self._admin("POST", "reset")


def _dumps(document: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(document)).decode()
