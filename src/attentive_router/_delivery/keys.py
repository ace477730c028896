"""Where the API key comes from, reading it again, and asking Attentive whether it is valid.

A key given with ``--token`` or in the environment cannot change while a process runs; a key in
a file (``--token-file``) can, and ``serve`` reads it again on SIGHUP.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import httpx
from attrs import field, frozen

from attentive_router._delivery.sender import USER_AGENT, scrub

PROBE_PATH = "/v1/me"
"""What ``check`` and a paused ``serve`` ask to learn whether the key is valid."""


class KeySourceError(ValueError):
    """The key could not be read from its source."""


@frozen
class KeySource:
    """Where the API key came from.

    Attributes:
        kind: ``option`` (``--token``), ``environment`` (a variable) or ``file``.
        name: The option, the variable's name, or the file's path.
        token: The key as read when the process started (never shown).
    """

    kind: Literal["option", "environment", "file"]
    name: str
    token: str = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> KeySource:
        """Read the key from ``path`` (its first line, stripped)."""
        return cls("file", str(path), _read_file(path))

    @property
    def changeable(self) -> bool:
        """Whether reading the source again can give another key."""
        return self.kind == "file"

    def describe(self) -> str:
        """The source, for a message."""
        if self.kind == "option":
            return f"{self.name} on the command line"
        if self.kind == "environment":
            return f"${self.name}"
        return f"the file {self.name}"

    def read(self) -> KeySource:
        """The source read again (a file is read anew; the other sources cannot change)."""
        if self.kind == "file":
            return KeySource.from_file(Path(self.name))
        if self.kind == "environment":
            return KeySource(self.kind, self.name, os.environ.get(self.name, self.token).strip())
        return self


def _read_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        msg = f"cannot read the API key from {path}: {reason}"
        raise KeySourceError(msg) from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        msg = f"{path} holds no API key"
        raise KeySourceError(msg)
    return token


async def probe_key(client: httpx.AsyncClient, base_url: str, token: str) -> tuple[int | None, str]:
    """``GET /v1/me`` with ``token``: (the status, or None without an answer; what it said)."""
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    try:
        response = await client.get(base_url.rstrip("/") + PROBE_PATH, headers=headers)
    except Exception as error:  # noqa: BLE001 - any failure to get an answer is reported
        cause = error.__cause__ or error
        return None, scrub(f"{type(cause).__name__}: {cause or error}", token)
    return response.status_code, scrub(response.text[:200], token)
