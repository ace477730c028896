"""Whether a Kafka queue's brokers answer, as ``serve`` and the delivery workers last saw it.

Both ask for the cluster's metadata every ``PING_EVERY`` seconds; ``serve`` also notes each
write the brokers do not acknowledge. ``/healthz`` and ``/metrics`` report what is seen here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from attrs import define

PING_EVERY = 5.0
"""Seconds between two checks that the brokers answer."""


@define
class Reach:
    """The brokers' last answer (or its absence).

    Attributes:
        reachable: Whether they answered the last check or write.
        problem: Why they did not, or None.
        checked_at: When that was seen (seconds since the epoch), or None before.
    """

    reachable: bool = False
    problem: str | None = None
    checked_at: float | None = None

    def answered(self) -> bool:
        """The brokers answered; return True when they had not before."""
        again = not self.reachable
        self.reachable, self.problem, self.checked_at = True, None, time.time()
        return again

    def unanswered(self, problem: str) -> bool:
        """The brokers did not answer (``problem`` says how); return True when they had."""
        lost = self.reachable
        self.reachable, self.problem, self.checked_at = False, problem, time.time()
        return lost

    async def ping(self, producer: Any) -> bool:
        """Ask for the cluster's metadata through ``producer``.

        Returns:
            True when the answer (or its absence) changed whether the brokers are reachable.
        """
        from aiokafka.errors import KafkaError  # noqa: PLC0415 - Kafka only

        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), PING_EVERY / 2)
        except (KafkaError, TimeoutError, OSError) as error:
            return self.unanswered(f"no broker answered: {error or type(error).__name__}")
        return self.answered()
