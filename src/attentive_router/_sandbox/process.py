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
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from attentive_router._sandbox.child import ChildServer, ChildServerError

_ANNOUNCEMENT = re.compile(
    r"^attentive sandbox listening on (?P<url>http://\S+) \(tokens?: (?P<tokens>\S+(?:, \S+)*)\)$",
    re.MULTILINE,
)


class SandboxError(ChildServerError):
    """The sandbox did not start, or its admin API refused a request."""


class SandboxProcess(ChildServer):
    """A sandbox server in a subprocess, with a small client of its admin API."""

    name = "the sandbox"
    announcement = _ANNOUNCEMENT
    error = SandboxError

    def __init__(  # noqa: PLR0913 - one keyword per sandbox option
        self,
        *,
        token: str | None = None,
        more_tokens: Sequence[str] = (),
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
            more_tokens: Further tokens accepted, each an account with its own rate limits.
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
        elif more_tokens:
            raise SandboxError("more_tokens needs token: the first token to accept")
        for more in more_tokens:
            command += ["--token", more]
        if faults is not None:
            command += ["--faults", _dumps(faults)]
        for path, limit in (rate_limits or {}).items():
            command += ["--rate-limit", f"{path}={limit}"]
        if no_rate_limits:
            command.append("--no-rate-limits")
        if record is not None:
            command += ["--record", os.fspath(record)]
        super().__init__([*command, *args], startup_timeout, stop_timeout)
        self._tokens: list[str] = []

    def _announced(self, match: re.Match[str]) -> None:
        self._tokens = match["tokens"].split(", ")

    @property
    def token(self) -> str:
        """The (first) bearer token the sandbox accepts, as it announced it."""
        return self.tokens[0]

    @property
    def tokens(self) -> list[str]:
        """Every bearer token the sandbox accepts, as it announced them."""
        if not self._tokens:
            raise SandboxError("the sandbox is not running")
        return list(self._tokens)

    @property
    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header of an authenticated request."""
        return {"Authorization": f"Bearer {self.token}"}

    def _admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._client is None:
            raise SandboxError("the sandbox is not running")
        response = self._client.request(method, f"/_sandbox/{path}", **kwargs)
        if response.status_code != 200:
            raise SandboxError(f"{method} /_sandbox/{path}: {response.status_code} {response.text}")
        return response

    def requests(self, path: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
        """The accepted requests, to ``path`` and with ``token`` when given.

        Each has ``seq``, ``path``, ``body``, ``received_at``, ``fault`` and ``token``.
        """
        params = {} if path is None else {"path": path}
        if token is not None:
            params["token"] = token
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
        """Counts of the answers: ``received`` and ``keys`` (path, token -> status -> count)..."""
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
