"""Run ``attentive-router serve`` in a subprocess, for tests, the benchmark and the demo.

Example::

    with SandboxProcess() as sandbox, ServeProcess(queue=tmp / "q.db", sandbox=sandbox) as serve:
        httpx.post(f"{serve.url}/v1/batch", json={"batch": [...]}, auth=(serve.write_key, ""))
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from attentive_router._sandbox.child import ChildServer, ChildServerError
from attentive_router._sandbox.process import SandboxProcess

_ANNOUNCEMENT = re.compile(
    r"^attentive-router serving on (?P<url>http://\S+) \((?P<mode>[^)\n]*)\)$", re.MULTILINE
)


class ServeError(ChildServerError):
    """The server did not start, or did not answer as expected."""


class ServeProcess(ChildServer):
    """``attentive-router serve --port 0`` in a subprocess, delivering to a sandbox or not."""

    name = "attentive-router serve"
    announcement = _ANNOUNCEMENT
    error = ServeError

    def __init__(  # noqa: PLR0913 - one keyword per option
        self,
        *,
        queue: str | os.PathLike[str] | None,
        sandbox: SandboxProcess | None = None,
        deliver: bool = False,
        write_keys: Sequence[str] = ("test-write-key",),
        args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        stop_timeout: float = 15.0,
    ) -> None:
        """Describe the server to start; ``start()`` (or ``with``) starts it.

        Args:
            queue: The queue file (None: the configuration file's, given in ``args``).
            sandbox: Deliver to this running sandbox; None runs ingest only (``--no-deliver``)
                unless ``deliver``.
            deliver: Deliver as the configuration file in ``args`` says (keys, URLs).
            write_keys: ``--write-key`` values (``KEY`` or ``NAME=KEY``); the first one's key is
                ``write_key``.
            args: More command-line arguments for ``attentive-router serve``.
            startup_timeout: Seconds to wait for the server to announce its URL.
            stop_timeout: Seconds to wait after SIGTERM before killing the process.
        """
        command = [sys.executable, "-m", "attentive_router", "serve", "--port", "0"]
        if queue is not None:
            command += ["--queue", os.fspath(queue)]
        command += ["--log-level", "warning"]
        for key in write_keys:
            command += ["--write-key", key]
        if sandbox is None:
            if not deliver:
                command.append("--no-deliver")
        else:
            command += ["--base-url", sandbox.url, "--token", sandbox.token]
        super().__init__([*command, *args], startup_timeout, stop_timeout)
        self.write_key = write_keys[0].partition("=")[2] or write_keys[0] if write_keys else ""

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST to the server (``kwargs`` as for ``httpx.Client.request``)."""
        if self._client is None:
            raise ServeError("the server is not running")
        return self._client.post(path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        """GET from the server (``/healthz``, ``/metrics``)."""
        if self._client is None:
            raise ServeError("the server is not running")
        return self._client.get(path)
