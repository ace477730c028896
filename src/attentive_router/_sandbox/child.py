"""A local server run as a child process: started, announced, stopped whatever happens.

``ChildServer`` starts a command, waits for the line on its stdout that announces its URL,
and stops it again (SIGTERM, then a kill after a timeout). ``SandboxProcess`` and
``ServeProcess`` are the two servers tests, the benchmark and the demo start this way.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import httpx


class ChildServerError(RuntimeError):
    """The server did not start, or did not answer as expected."""


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class ChildServer:
    """A server in a subprocess that prints its URL once it accepts connections.

    Subclasses set ``name``, ``announcement`` (a pattern with a ``url`` group) and ``error``.
    """

    name: ClassVar[str] = "the server"
    announcement: ClassVar[re.Pattern[str]]
    error: ClassVar[type[ChildServerError]] = ChildServerError

    def __init__(self, command: Sequence[str], startup_timeout: float, stop_timeout: float) -> None:
        """Describe the command to run; ``start()`` (or ``with``) runs it."""
        self.command = list(command)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._stderr = ""
        self._client: httpx.Client | None = None
        self._url = ""
        self.returncode: int | None = None

    def start(self) -> Self:
        """Start the server and wait until it accepts connections.

        Raises:
            ChildServerError: It exited or did not announce its URL in time; the message
                holds what it wrote to stderr.
        """
        if self._process is not None:
            raise self.error(f"{self.name} was already started")
        self._directory = Path(tempfile.mkdtemp(prefix="attentive-router-child-"))
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
        self._url = match["url"]
        self._announced(match)
        self._client = httpx.Client(base_url=self._url, timeout=10.0, trust_env=False)
        return self

    def _announced(self, match: re.Match[str]) -> None:
        """Read more from the announcement (a subclass hook)."""

    def _wait_for_announcement(self) -> re.Match[str]:
        assert self._process is not None
        assert self._directory is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            text = (self._directory / "stdout").read_text(errors="replace")
            match = self.announcement.search(text)
            if match is not None:
                return match
            status = self._process.poll()
            if status is not None:
                problem = f"exited with status {status} before announcing its URL"
                raise self.error(self._failure(problem))
            if time.monotonic() > deadline:
                problem = f"did not announce its URL within {self.startup_timeout:g} s"
                raise self.error(self._failure(problem))
            time.sleep(0.02)

    def _failure(self, problem: str) -> str:
        return f"{self.name} ({' '.join(self.command)}) {problem}; stderr:\n{self.stderr()}"

    def stderr(self) -> str:
        """What the server has written to stderr so far (all of it, once stopped)."""
        if self._directory is None:
            return self._stderr
        return (self._directory / "stderr").read_text(errors="replace")

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the server (e.g. ``SIGTERM``, or ``SIGKILL`` for a crash)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def kill(self) -> int:
        """Kill the server with SIGKILL (as a crash would) and return its exit status."""
        assert self._process is not None
        self.send_signal(signal.SIGKILL)
        self.returncode = self._process.wait()
        return self.returncode

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit by itself; return its exit status.

        Raises:
            subprocess.TimeoutExpired: It is still running after ``timeout`` seconds.
        """
        assert self._process is not None
        self.returncode = self._process.wait(timeout)
        return self.returncode

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then kill) and clean up; return its exit status."""
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
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        if not self._url:
            raise self.error(f"{self.name} is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return None if self._process is None else self._process.pid
