"""What a command imports before it works: ``transform`` and ``--help`` stay off the heavy stacks.

How long the command line takes to start is measured by the benchmark (``python -m bench
--only startup``), never here; which modules a command loads is a fact that needs no clock. Each
case runs the command's ``main`` in a fresh interpreter, then reads ``sys.modules``: a
module-level import of the HTTP clients, the servers, SQLite, cattrs or libphonenumber on the
way to ``transform`` fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

PROBE = """\
import sys

record, argv = sys.argv[1], sys.argv[2:]
from attentive_router._cli.main import main

try:
    status = main(argv)
except SystemExit as stop:  # --help
    status = stop.code
with open(record, "w", encoding="utf-8") as out:
    out.write("\\n".join(sorted(sys.modules)))
sys.exit(status)
"""
"""Runs ``main(argv)`` as the console script does, then writes the names of the loaded modules."""

HEAVY = (
    "aiohttp",
    "asyncio",
    "cattrs",
    "concurrent.futures",
    "email",
    "httpcore",
    "httptools",
    "httpx",
    "httpx_aiohttp",
    "jsonschema",
    "phonenumbers",
    "prometheus_client",
    "socket",
    "sqlite3",
    "ssl",
    "starlette",
    "uvicorn",
    "uvloop",
    "attentive_router._delivery.job",
    "attentive_router._delivery.sender",
    "attentive_router._ingest",
    "attentive_router._queue.sqlite",
    "attentive_router._sandbox",
)
"""Packages (with their submodules) that neither ``transform`` nor ``--help`` may import."""

TRANSFORM = (
    "attentive_router._transform.generated.transforms",
    "attentive_router._transform.json_form",
    "attentive_router._transform.router",
)
"""The mappings and the JSON converter: loaded with the first event, not before."""

TRACK = {"type": "track", "event": "Signed Up", "userId": "u-1", "messageId": "m-1"}


def loaded(argv: Sequence[str], tmp_path: Path) -> list[str]:
    """The modules loaded by ``attentive-router ARGV`` in a fresh interpreter (exit 0 checked)."""
    record = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(record), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    modules = record.read_text(encoding="utf-8").split("\n")
    # The probe saw the command line itself; an empty or broken record would pass vacuously.
    assert "attentive_router._cli.main" in modules
    return modules


def among(modules: list[str], packages: Sequence[str]) -> list[str]:
    """The modules that are one of ``packages`` or inside one of them."""
    return [m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages)]


def test_transform_of_an_empty_file_imports_no_heavy_module(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    modules = loaded(["transform", str(empty)], tmp_path)
    assert among(modules, HEAVY) == []
    assert among(modules, TRANSFORM) == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["transform", "--help"], ["send", "--help"], ["serve", "--help"]],
    ids=" ".join,
)
def test_help_imports_no_heavy_module(argv: list[str], tmp_path: Path) -> None:
    modules = loaded(argv, tmp_path)
    assert among(modules, HEAVY) == []
    assert among(modules, TRANSFORM) == []


def test_transform_loads_the_mappings_with_the_first_event(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps(TRACK) + "\n", encoding="utf-8")
    modules = loaded(["transform", str(events)], tmp_path)
    assert among(modules, TRANSFORM) == sorted(TRANSFORM)
    # Records are written without the cattrs converter; without a phone number to normalise,
    # libphonenumber's metadata stays unloaded too.
    assert among(modules, HEAVY) == []


def test_libphonenumber_loads_with_the_first_phone_number(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    event = {**TRACK, "traits": {"phone": "(415) 555-0100"}}
    events.write_text(json.dumps(event) + "\n", encoding="utf-8")
    modules = loaded(["transform", str(events)], tmp_path)
    assert "phonenumbers" in modules
    assert among(modules, HEAVY) == among(modules, ["phonenumbers"])
