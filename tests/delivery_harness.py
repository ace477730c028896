"""Helpers for the delivery fault tests: events, an observing transport, virtual time.

The sender under test is the real ``Sender`` talking HTTP to a real sandbox process. Two
things are added around it, neither of which changes what goes over the wire:

- ``ObservedTransport`` wraps the transport of the sender's own client (``make_client``) and
  writes down each request as it leaves (clock time, path, body) and how it ended (status
  or transport error);
- ``VirtualTime`` is a clock and a sleep for schedule tests: time stands still while
  anything real is going on (a request on the wire, a queue operation, a verdict waiting to
  be written) and jumps to the next sleeper's deadline when everything waits on the clock,
  so that a 600-second ``Retry-After`` takes milliseconds and every recorded time is exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson
from attrs import define, field, frozen

from attentive_router import Config, Context, Mapped, route, to_json
from attentive_router._delivery.sender import Sender, SenderSettings, make_client
from attentive_router._queue.intake import new_event
from attentive_router._queue.interface import Enqueued, NewEvent, Queue

T = TypeVar("T")

START = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where virtual clocks start (a whole second, so HTTP dates are exact)."""

CUSTOM_PATH = "/v1/events/custom"
ADD_TO_CART_PATH = "/v1/events/ecommerce/add-to-cart"


def custom_event(message_id: str, user: str, n: int = 0) -> dict[str, Any]:
    """A track event no mapping table names: a custom event whose externalEventId is its id."""
    return {
        "type": "track",
        "event": "Gift Card Redeemed",
        "messageId": message_id,
        "userId": user,
        "properties": {"amount": 25, "n": n},
        "context": {"traits": {"email": f"{user}@example.com"}},
    }


def product_added(message_id: str, user: str) -> dict[str, Any]:
    """A ``Product Added`` event: one add-to-cart request."""
    return {
        "type": "track",
        "event": "Product Added",
        "messageId": message_id,
        "userId": user,
        "properties": {"product_id": "p-1", "sku": "sku-1", "price": 12.5, "quantity": 1},
        "context": {"traits": {"email": f"{user}@example.com"}},
    }


def expected_requests(event: dict[str, Any], received_at: float) -> list[dict[str, Any]]:
    """The requests ``route`` makes of ``event`` received at ``received_at``, as JSON."""
    outcome = route(event, Context(datetime.fromtimestamp(received_at, UTC), Config()))
    assert isinstance(outcome, Mapped), outcome
    return [{"method": r.method, "path": r.path, "body": to_json(r.body)} for r in outcome.requests]


def enqueue(queue: Queue, events: Iterable[dict[str, Any]], received_at: float) -> Enqueued:
    """Queue ``events`` in one batch, in order."""
    batch: list[NewEvent] = [new_event(event, received_at) for event in events]
    return queue.put(batch, received_at)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class NoJitter(random.Random):
    """Random numbers whose ``uniform`` is always the upper bound: backoff at its ceiling."""

    def uniform(self, a: float, b: float) -> float:  # noqa: ARG002 - the bound is the answer
        return b


@frozen
class Sent:
    """One request as the sender's client sent it.

    Attributes:
        at: Clock time (the sender's clock) when it left.
        path: Its path.
        body: Its JSON body.
        status: The answer's status, or None when the transport failed.
        error: The transport error, when it failed.
    """

    at: float
    path: str
    body: dict[str, Any]
    status: int | None
    error: type[httpx.HTTPError] | None = None

    @property
    def transport_failed(self) -> bool:
        """No answer came: refused, reset, cut off or timed out."""
        return self.error is not None and issubclass(self.error, httpx.TransportError)

    @property
    def timed_out(self) -> bool:
        """It failed for want of an answer in time."""
        return self.error is not None and issubclass(self.error, httpx.TimeoutException)

    @property
    def cut_off(self) -> bool:
        """It failed on the transport (refused, reset, cut off), not for want of time."""
        return self.transport_failed and not self.timed_out

    @property
    def event_id(self) -> str | None:
        """The body's ``externalEventId``."""
        value = self.body.get("externalEventId")
        return value if isinstance(value, str) else None


class ObservedTransport(httpx.AsyncBaseTransport):
    """The sender's transport, with a note of every request and how it ended.

    The response body is read here, so a response cut off mid-body fails inside the
    transport and is noted as a transport error, as the sender sees it.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._clock = clock
        self.sent: list[Sent] = []
        self.active = 0
        self.on_sent: Callable[[], None] = lambda: None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = self._clock()
        body = orjson.loads(request.content)
        self.active += 1
        try:
            try:
                response = await self._inner.handle_async_request(request)
                try:
                    content = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
            finally:
                self.active -= 1
        except httpx.HTTPError as error:
            self.sent.append(Sent(at, request.url.path, body, None, type(error)))
            self.on_sent()
            raise
        self.sent.append(Sent(at, request.url.path, body, response.status_code))
        self.on_sent()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class ObservedSender(Sender):
    """The real sender; it only counts the queue operations under way (for ``VirtualTime``)."""

    queue_calls = 0

    async def call(self, action: Callable[..., T], *args: Any) -> T:
        self.queue_calls += 1
        try:
            return await super().call(action, *args)
        finally:
            self.queue_calls -= 1

    @property
    def busy(self) -> bool:
        """A queue operation is under way, or verdicts wait to be written."""
        return self.queue_calls > 0 or bool(self._pending)


@define
class VirtualTime:
    """A clock that moves only when every task waits on it (see the module docstring)."""

    now: float = START
    poll: float = 0.001
    _sleepers: list[tuple[float, int, asyncio.Future[None]]] = field(factory=list)
    _order: itertools.count[int] = field(factory=itertools.count)

    def clock(self) -> float:
        """The current virtual time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` on."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        deadline = self.now + seconds
        if deadline <= self.now:  # too small to move a clock this far from zero
            deadline = math.nextafter(self.now, math.inf)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), future))
        await future

    async def run(self, busy: Callable[[], bool]) -> None:
        """Move the clock to the next deadline whenever nothing real has happened for a while."""
        quiet = 0
        while True:
            await asyncio.sleep(self.poll)
            if busy():
                quiet = 0
                continue
            quiet += 1
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if quiet < 3 or not self._sleepers:
                continue
            self.now = max(self.now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            quiet = 0


@define
class Delivery:
    """What one run of the sender did."""

    sender: ObservedSender
    sent: list[Sent]

    def sent_for(self, event_id: str) -> list[Sent]:
        """The requests carrying ``externalEventId`` ``event_id``, in order."""
        return [s for s in self.sent if s.event_id == event_id]


def run_sender(
    queue: Queue,
    settings: SenderSettings,
    *,
    virtual: VirtualTime | None = None,
    rng: random.Random | None = None,
    stop_when: Callable[[Sequence[Sent]], bool] | None = None,
    limit: float = 20.0,
) -> Delivery:
    """Run a sender over ``queue`` until it returns (drained, paused, or ``stop_when``).

    Real time unless ``virtual`` is given. The run fails after ``limit`` real seconds.
    """
    return asyncio.run(
        _run_sender(queue, settings, virtual=virtual, rng=rng, stop_when=stop_when, limit=limit)
    )


async def _run_sender(
    queue: Queue,
    settings: SenderSettings,
    *,
    virtual: VirtualTime | None,
    rng: random.Random | None,
    stop_when: Callable[[Sequence[Sent]], bool] | None,
    limit: float,
) -> Delivery:
    clock = virtual.clock if virtual is not None else time.time
    sleep = virtual.sleep if virtual is not None else asyncio.sleep
    # The sender's own client (timeouts, connection limits), its transport observed.
    client = make_client(settings)
    transport = ObservedTransport(client._transport, clock)
    client._transport = transport
    sender = ObservedSender(queue, client, settings, clock=clock, sleep=sleep, rng=rng)
    stop = asyncio.Event()
    if stop_when is not None:
        condition = stop_when

        def check() -> None:
            if condition(transport.sent):
                stop.set()

        transport.on_sent = check
    ticker = None
    if virtual is not None:
        ticker = asyncio.create_task(virtual.run(lambda: transport.active > 0 or sender.busy))
    try:
        async with client:
            await asyncio.wait_for(sender.run(stop=stop), limit)
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    return Delivery(sender, transport.sent)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
