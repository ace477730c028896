"""A private event loop on a thread of its own, for the Kafka clients behind a blocking API.

The queue interface is blocking (the sender calls it from a worker thread, the commands from
plain code), while aiokafka's clients live on an asyncio loop. Each Kafka queue object owns one
such loop; every Kafka client and every piece of the queue's state is used on it alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from attentive_router._queue.interface import QueueError

T = TypeVar("T")


class Runner:
    """Runs coroutines on a loop thread and waits for their results."""

    def __init__(self, name: str = "kafka") -> None:
        """Start the loop's thread (a daemon: it never keeps the process alive)."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and return its result (its exception is raised here).

        Raises:
            QueueError: It did not finish within ``timeout`` seconds (it is cancelled).
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as error:
            future.cancel()
            raise QueueError(f"Kafka did not answer within {timeout:g} s") from error

    def call(self, coroutine: Coroutine[Any, Any, T], wait: float, where: str) -> T:
        """``run``, with any failure of the Kafka clients reported as the queue failing.

        Raises:
            QueueError: The coroutine failed (the message starts with ``where``), or did not
                finish within ``wait`` seconds.
        """
        try:
            return self.run(coroutine, wait)
        except QueueError:
            raise
        except Exception as error:
            raise QueueError(f"{where}: {error}") from error

    def stop(self) -> None:
        """Stop the loop and its thread (after the caller has closed its clients)."""
        if self.loop.is_closed():
            return

        async def cancel_rest() -> None:
            current = asyncio.current_task()
            rest = [task for task in asyncio.all_tasks() if task is not current]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_rest(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()
