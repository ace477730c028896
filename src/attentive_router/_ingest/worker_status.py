"""``/healthz`` and ``/metrics`` of a Kafka delivery worker (``deliver --follow --listen``).

A worker has no ingest endpoints; it answers these two so that the same monitoring that
scrapes ``serve`` sees each worker: its partitions and their lag, the oldest event it holds
unsettled, whether the brokers answer, and the delivery counts ``serve`` reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from attentive_router._delivery.keycheck import KeyCheck
from attentive_router._delivery.sender import Stats
from attentive_router._ingest.metrics import (
    CONTENT_TYPE,
    DestinationCounts,
    KafkaSnapshot,
    Metrics,
    QueueSnapshot,
)
from attentive_router._queue.interface import QueueError
from attentive_router._queue.kafka.work import KafkaWork


class WorkerStatus:
    """What a worker's status endpoints read: its Kafka side, its counts, its key check.

    ``work`` is None until the worker has joined its group.
    """

    def __init__(self, destination: str, stats: Stats, keys: KeyCheck) -> None:
        self.destination = destination
        self.stats = stats
        self.keys = keys
        self.work: KafkaWork | None = None
        self.metrics = Metrics(destinations=[DestinationCounts(destination, stats)])

    async def health(self, _request: Request) -> Response:
        """The worker's state: ``ok`` or ``degraded``, with what is wrong."""
        body: dict[str, Any] = {"status": "ok", "destination": self.destination}
        work = self.work
        if work is None:
            body.update(status="starting", delivery="starting")
            return _json(body, 503)
        lags = await asyncio.to_thread(_lags, work)
        body["delivery"] = "paused" if self.keys.paused is not None else "running"
        body["kafka"] = {
            "queue": work.settings.url,
            "group": work.settings.group,
            "reachable": work.reach.reachable,
            "partitions": [lag.partition for lag in lags],
            "share": round(work.share, 4),
            "lag": sum(lag.lag or 0 for lag in lags),
        }
        if not work.reach.reachable:
            body["status"] = "degraded"
            body["kafka"]["problem"] = work.reach.problem or "no broker answered"
        if self.keys.paused is not None:
            body["status"] = "degraded"
            body["problem"] = self.keys.paused.explain(self.keys.remedy)
        return _json(body, 200)

    async def metrics_text(self, _request: Request) -> Response:
        """Prometheus text format: delivery counts, and the Kafka queue as this worker holds it."""
        work = self.work
        paused = [self.destination] if self.keys.paused is not None else []
        if work is None:
            text = self.metrics.render({}, paused)
            return Response(text, 200, media_type=CONTENT_TYPE)
        try:
            counts, oldest, lags = await asyncio.to_thread(_snapshot, work)
        except QueueError:
            counts, oldest, lags = None, None, []
        age = None if oldest is None else max(0.0, time.time() - oldest)
        kafka = KafkaSnapshot(
            work.reach.reachable,
            tuple(lags),
            oldest_unsettled_age=age,
            duplicates=work.duplicates,
            worker=True,
        )
        text = self.metrics.render(
            {self.destination: QueueSnapshot(counts, age)}, paused, {self.destination: kafka}
        )
        return Response(text, 200, media_type=CONTENT_TYPE)


def _lags(work: KafkaWork) -> list[Any]:
    try:
        return work.lag()
    except QueueError:
        return []


def _snapshot(work: KafkaWork) -> tuple[Any, float | None, list[Any]]:
    return work.counts(), work.oldest_queued(), work.lag()


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


class _Quiet(uvicorn.Server):
    """uvicorn with the signals left to the worker."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def serve_status(
    status: WorkerStatus,
    host: str,
    port: int,
    stop: asyncio.Event,
    announce: Callable[[str], None],
) -> None:
    """Answer ``GET /healthz`` and ``GET /metrics`` on ``host:port`` until ``stop``."""
    app = Starlette(
        routes=[
            Route("/healthz", status.health, methods=["GET"]),
            Route("/metrics", status.metrics_text, methods=["GET"]),
        ]
    )
    config = uvicorn.Config(
        app, host=host, port=port, access_log=False, lifespan="off", log_config=None
    )
    server = _Quiet(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises what kept it from starting
            return
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    announce(f"http://{shown}:{bound[1]}")
    await stop.wait()
    server.should_exit = True
    await task
