"""The real ``attentive-router`` command, run from the tests in an environment of their own.

The command reads several variables (its key, its configuration file, its queue, write keys,
webhook secrets, CORS origins); a test that does not set one must not inherit it from the
shell that runs the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROUTER_VARIABLES = (
    "ATTENTIVE_API_TOKEN",
    "ATTENTIVE_ROUTER_CONFIG",
    "ATTENTIVE_ROUTER_QUEUE",
    "ATTENTIVE_ROUTER_WRITE_KEYS",
    "ATTENTIVE_ROUTER_WEBHOOK_SECRETS",
    "ATTENTIVE_ROUTER_CORS_ORIGINS",
    "ATTENTIVE_ROUTER_CONSOLE_TOKEN",
)
"""The variables the command reads."""


def run_command(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    drop: Iterable[str] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m attentive_router ARGS``: without the router's variables (nor ``drop``),
    with ``env`` added; its output as text, whatever its exit status."""
    dropped = {*ROUTER_VARIABLES, *drop}
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        [sys.executable, "-m", "attentive_router", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environment, **(env or {})},
        cwd=cwd,
        check=False,
    )
