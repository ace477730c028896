"""Delivery: claim queued events, transform them, send their requests, settle the outcome.

The sender talks to the world only through what it is given: a ``Queue``, an
``httpx.AsyncClient``, a clock and a sleep function. Queue calls run on one worker thread so
that disk writes never stall the event loop; verdicts are written in groups (one transaction
per group) as they arrive.

Every claimed event ends in exactly one settlement: delivered, skipped, rejected,
dead-lettered (with the request, the last answer and the reason), or queued again for a
retry. When Attentive refuses the API key (401/403), sending stops and the events stay queued.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson
from attrs import define, evolve, field, frozen
from httpx_aiohttp import AiohttpTransport

from attentive_router._delivery.defaults import DEFAULT_CONCURRENCY
from attentive_router._delivery.health import Health, status_cause, transport_cause
from attentive_router._delivery.observe import Observer
from attentive_router._delivery.ratelimit import DEFAULT_RATE, DEFAULT_RATES, RateLimiter, Share
from attentive_router._delivery.retry import RetryPolicy, Verdict, classify, parse_retry_after
from attentive_router._queue.interface import (
    FINAL_STATES,
    Claim,
    Queue,
    QueueError,
    Settlement,
    State,
)
from attentive_router._transform.json_form import to_json
from attentive_router._transform.options import Config, Context
from attentive_router._transform.outcome import Mapped, Request, Skipped
from attentive_router._transform.router import route

RESPONSE_LIMIT = 4096
"""Characters of a response body kept with an event."""
USER_AGENT = "attentive-router/0.1"

T = TypeVar("T")


@frozen
class SenderSettings:
    """How to deliver.

    Attributes:
        base_url: Attentive's API root (the sandbox's URL in tests and demos).
        token: The API key, sent as a Bearer token and never written anywhere.
        concurrency: Requests on the wire at once (twice as many events may be claimed and
            waiting for their endpoint's rate limit). 128 sustains the sum of Attentive's limits
            (5 endpoints at 150/s plus Identity at 10/s) up to 160 ms of latency.
        rate: Requests per second per endpoint (Attentive's limit, 150).
        rates: Per-path rate overrides (Identity: 10/s).
        policy: Retry and give-up rules.
        config: Transform configuration.
        claim_batch: Events claimed from the queue per call.
        grace: Seconds in-flight requests may finish after a stop before they are abandoned.
        timeout: Seconds before a request without an answer counts as failed (and is retried).
        idle_wait: With nothing due (and more to come: ``run(forever=True)`` or input still
            being read), seconds before the sender looks at the queue again; None waits for
            ``notify`` (a watcher of the queue file then calls it).
        share: The fraction of the rates this process may use, when it is one of several
            workers sharing an API key (None: all of them).
    """

    base_url: str
    token: str
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float = DEFAULT_RATE
    rates: dict[str, float] = field(factory=lambda: dict(DEFAULT_RATES))
    policy: RetryPolicy = field(factory=RetryPolicy)
    config: Config = field(factory=Config)
    claim_batch: int = 200
    grace: float = 5.0
    timeout: float = 10.0
    idle_wait: float | None = 1.0
    share: Share | None = field(default=None, eq=False)


@define
class Stats:
    """What a run did, counted as verdicts are written to the queue."""

    outcomes: Counter[str] = field(factory=Counter)
    reasons: Counter[tuple[str, str]] = field(factory=Counter)
    endpoints: Counter[tuple[str, str]] = field(factory=Counter)
    causes: Counter[tuple[str, str]] = field(factory=Counter)
    """Requests that got no answer, by endpoint and cause (``connection refused``, ...)."""
    warnings: Counter[str] = field(factory=Counter)
    requests: int = 0
    retries: int = 0
    throttled: int = 0

    @property
    def settled(self) -> int:
        """Events that reached a final state in this run."""
        return sum(self.outcomes[state.label] for state in FINAL_STATES)


@frozen
class Paused:
    """Attentive refused the API key; nothing more is sent with it."""

    status: int
    path: str
    response: str

    def explain(self, remedy: str = "") -> str:
        """A message for the operator; ``remedy`` says what to do (default: fix, then deliver)."""
        remedy = remedy or (
            "Fix the key (ATTENTIVE_API_TOKEN or --token), then run `attentive-router deliver`"
        )
        return (
            f"Attentive answered {self.status} to POST {self.path}: the API key is not valid "
            "or lacks the permission for this endpoint. Sending stopped; the events stay "
            f"queued. {remedy}. Response: {self.response[:200]}"
        )


def make_client(settings: SenderSettings) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` sized for ``settings.concurrency``.

    Its transport is aiohttp's connection pool, which keeps its throughput with many
    connections open (httpx's own pool slows down as connections grow).
    """
    limits = httpx.Limits(
        max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 5.0)),
    )


def scrub(text: str, token: str) -> str:
    """``text`` with the API key blanked out."""
    return text.replace(token, "[api-key]") if token else text


class Sender:
    """Delivers events from a queue until it is drained, stopped, or paused.

    Args:
        queue: Where events come from and where verdicts go.
        client: The HTTP client (tests may give one with another transport).
        settings: What to send where, and how.
        clock: Seconds since the epoch (default ``time.time``).
        sleep: Awaitable sleep (default ``asyncio.sleep``).
        rng: Random numbers for backoff jitter.
    """

    def __init__(  # noqa: PLR0913 - the collaborators are injected one by one, as documented
        self,
        queue: Queue,
        client: httpx.AsyncClient,
        settings: SenderSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self.client = client
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.limiter = RateLimiter(clock, sleep, rate=settings.rate, rates=settings.rates)
        if settings.share is not None:
            settings.share.follow(self.limiter)
        self.stats = Stats()
        self.health = Health(settings.base_url)
        self.paused: Paused | None = None
        self.observer: Observer | None = None
        """Told about every answer and verdict (the console's journal), when set."""
        self.in_flight = 0
        # Workers wait for their endpoint's rate limit without holding a connection: only
        # requests actually on the wire count against the concurrency.
        self._wire = asyncio.Semaphore(settings.concurrency)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="queue")
        self._pending: list[Settlement] = []
        self._has_pending = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._running: set[int] = set()
        self._failure: QueueError | None = None
        self._flush_lock = asyncio.Lock()
        self._dead_keys: dict[int, str] = {}
        self._headers = {
            "Authorization": f"Bearer {settings.token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    def use_token(self, token: str) -> None:
        """Send with ``token`` from now on (requests already on the wire keep the old one)."""
        self.settings = evolve(self.settings, token=token)
        self._headers = {**self._headers, "Authorization": f"Bearer {token}"}

    async def call(self, action: Callable[..., T], *args: Any) -> T:
        """Run a queue operation on the queue's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, action, *args)

    def notify(self) -> None:
        """New events were queued: look for work now."""
        self._wake.set()

    async def run(
        self,
        *,
        input_done: asyncio.Event | None = None,
        stop: asyncio.Event | None = None,
        forever: bool = False,
    ) -> Stats:
        """Deliver until nothing is left (or ``stop`` is set, or sending is paused).

        Args:
            input_done: While unset, more events may still be queued: keep waiting for them.
            stop: Set it to stop: requests in flight get ``settings.grace`` seconds to end;
                the rest are put back in the queue unchanged.
            forever: Keep waiting for new events even when the queue is empty.
        """
        stop = stop or asyncio.Event()
        inbox: asyncio.Queue[Claim] = asyncio.Queue()
        workers = [
            asyncio.create_task(self._worker(inbox)) for _ in range(2 * self.settings.concurrency)
        ]
        flusher = asyncio.create_task(self._flusher())
        try:
            await self._feed(inbox, input_done, stop, forever)
        finally:
            self._stopping = True
            await self._finish(inbox, workers)
            await self._drain_pending()
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        if self._failure is not None:
            # What could not be written stays in flight in the queue and is sent again
            # after ``recover`` (at least once, never lost).
            raise self._failure
        return self.stats

    async def _feed(
        self,
        inbox: asyncio.Queue[Claim],
        input_done: asyncio.Event | None,
        stop: asyncio.Event,
        forever: bool,
    ) -> None:
        room = 2 * self.settings.concurrency
        # Claim in groups: every claim is a durable transaction, so topping up one event at a
        # time would spend the queue's time on commits.
        enough = max(1, room // 8)
        while not stop.is_set() and self.paused is None and self._failure is None:
            self._wake.clear()
            space = room - self.in_flight
            if space < enough and self.in_flight > 0:
                space = 0
            claims: list[Claim] = []
            if space > 0:
                claims = await self.call(
                    self.queue.claim, self.clock(), min(space, self.settings.claim_batch)
                )
            for claim in claims:
                self.in_flight += 1
                inbox.put_nowait(claim)
            if claims:
                await asyncio.sleep(0)
                continue
            waiting_input = input_done is not None and not input_done.is_set()
            wait: float | None = 1.0
            if self.in_flight == 0 and space > 0:
                due = await self.call(self.queue.next_due)
                if due is None and not (waiting_input or forever):
                    return
                if due is not None:
                    wait = min(max(due - self.clock(), 0.0), 1.0)
                else:
                    wait = self.settings.idle_wait
            await self._wait(stop, wait if space > 0 else None)

    async def _wait(self, stop: asyncio.Event, seconds: float | None) -> None:
        """Wait for a settlement, new input, a stop, or ``seconds`` (on the injected clock)."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        if seconds is not None:
            waiters.append(asyncio.ensure_future(self.sleep(seconds)))
        _, others = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _finish(self, inbox: asyncio.Queue[Claim], workers: list[asyncio.Task[None]]) -> None:
        """Stop the workers: unstarted claims go back; running ones get the grace period."""
        unstarted: list[int] = []
        while not inbox.empty():
            unstarted.append(inbox.get_nowait().id)
            inbox.task_done()
        for _ in workers:
            inbox.put_nowait(_STOP)
        _, late = await asyncio.wait(workers, timeout=self.settings.grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        abandoned = sorted(self._running)
        self._running.clear()
        if unstarted or abandoned:
            try:
                await self.call(self.queue.release, unstarted + abandoned)
            except QueueError as error:
                self._failure = self._failure or error
        self.in_flight -= len(unstarted) + len(abandoned)

    async def _worker(self, inbox: asyncio.Queue[Claim]) -> None:
        while True:
            claim = await inbox.get()
            if claim is _STOP:
                return
            self._running.add(claim.id)
            settlement = await self._deliver(claim)
            self._running.discard(claim.id)
            if settlement.state is State.DEAD:
                self._dead_keys[claim.id] = claim.key
            self._pending.append(settlement)
            self._has_pending.set()

    async def _flusher(self) -> None:
        while True:
            await self._has_pending.wait()
            await self._drain_pending()

    async def _drain_pending(self) -> None:
        async with self._flush_lock:
            self._has_pending.clear()
            if not self._pending or self._failure is not None:
                return
            batch, self._pending = self._pending, []
            try:
                await self.call(self.queue.settle, batch)
            except QueueError as error:
                self._failure = error
                self._wake.set()
                return
            self.in_flight -= len(batch)
            for settlement in batch:
                self._count(settlement)
            self._wake.set()

    def _count(self, settlement: Settlement) -> None:
        if self.observer is not None:
            self.observer.settled(settlement)
        label = settlement.state.label
        if settlement.state is State.QUEUED:
            return
        self.stats.outcomes[label] += 1
        if settlement.reason is not None:
            self.stats.reasons[label, settlement.reason] += 1
        if settlement.state is State.DEAD:
            self.health.dead(
                settlement.endpoint,
                settlement.reason or "dead",
                settlement.message or "",
                self._dead_keys.pop(settlement.id, None),
            )

    async def _deliver(self, claim: Claim) -> Settlement:
        """Transform and send one event."""
        try:
            received = datetime.fromtimestamp(claim.received_at, UTC)
            outcome = route(orjson.loads(claim.event), Context(received, self.settings.config))
        except Exception as error:  # noqa: BLE001 - any transform failure dead-letters the event
            return Settlement(
                id=claim.id,
                state=State.DEAD,
                attempts=claim.attempts,
                done=claim.done,
                last_attempt_at=self.clock(),
                reason="transform_error",
                message=f"the transform failed: {type(error).__name__}: {error}",
            )
        if not isinstance(outcome, Mapped):
            state = State.SKIPPED if isinstance(outcome, Skipped) else State.REJECTED
            if isinstance(outcome, Skipped):
                self.stats.warnings.update(warning.code for warning in outcome.warnings)
            return Settlement(
                id=claim.id,
                state=state,
                attempts=0,
                last_attempt_at=self.clock(),
                reason=outcome.reason,
                message=outcome.message,
            )
        settlement = await self._send_all(claim, outcome.requests)
        if settlement.state is not State.QUEUED:  # counted once, when the event is settled
            self.stats.warnings.update(warning.code for warning in outcome.warnings)
        return settlement

    async def _send_all(self, claim: Claim, requests: tuple[Request, ...]) -> Settlement:
        attempts, throttles = claim.attempts, claim.throttles
        first = claim.first_attempt_at
        done = claim.done
        while done < len(requests):
            request = requests[done]
            body = orjson.dumps(to_json(request.body))
            await self.limiter.acquire(request.path)
            async with self._wire:
                if self._stopping or self.paused is not None:
                    return _requeue(claim, attempts, throttles, done, first)
                sent_at = self.clock()
                status, text, retry_after, cause = await self._post(request.path, body)
            now = self.clock()
            if self.observer is not None:
                self.observer.answered(
                    claim.id, request.path, body, status, text, sent_at, now - sent_at
                )
            verdict = classify(status)
            if verdict is not Verdict.AUTH:  # a refused key is not an attempt at all
                first = sent_at if first is None else first
            self.stats.endpoints[request.path, str(status or "error")] += 1
            if status is None:
                self.stats.causes[request.path, cause] += 1
            if verdict is Verdict.DELIVERED:
                self.health.success(request.path)
                done += 1
                continue
            if verdict in (Verdict.RETRY, Verdict.PERMANENT):
                self.health.failure(request.path, cause, text[:200], now)
            failed = Settlement(
                id=claim.id,
                state=State.QUEUED,
                attempts=attempts,
                throttles=throttles,
                done=done,
                first_attempt_at=first,
                last_attempt_at=now,
                next_attempt_at=now,
                status=status,
                response=text,
                endpoint=request.path,
                request=orjson.dumps(
                    {"method": request.method, "path": request.path, "body": orjson.Fragment(body)}
                ),
            )
            return self._after_failure(failed, verdict, retry_after)
        return Settlement(
            id=claim.id,
            state=State.DELIVERED,
            attempts=attempts + 1,
            throttles=throttles,
            done=done,
            first_attempt_at=first,
            last_attempt_at=self.clock(),
        )

    def _after_failure(
        self, failed: Settlement, verdict: Verdict, retry_after: float | None
    ) -> Settlement:
        """What becomes of an event whose request was not accepted (``failed`` is a retry now)."""
        policy = self.settings.policy
        now = failed.last_attempt_at or self.clock()
        first = now if failed.first_attempt_at is None else failed.first_attempt_at
        status = failed.status
        if verdict is Verdict.AUTH:
            self.paused = self.paused or Paused(
                status or 0, failed.endpoint or "", failed.response or ""
            )
            return failed
        if verdict is Verdict.PERMANENT:
            return evolve(
                failed,
                state=State.DEAD,
                attempts=failed.attempts + 1,
                reason="permanent_error",
                message=f"Attentive answered {status}; retrying cannot help",
            )
        if verdict is Verdict.THROTTLED:
            self.stats.throttled += 1
            throttles = failed.throttles + 1
            if retry_after is None:
                wait = policy.backoff(throttles, self.rng)
            else:
                wait = policy.wait_for(retry_after)
                self.limiter.pause(failed.endpoint or "", now + wait)
            return evolve(failed, throttles=throttles, next_attempt_at=now + wait)
        attempts = failed.attempts + 1
        if policy.exhausted(attempts, first, now):
            return evolve(
                failed,
                state=State.DEAD,
                attempts=attempts,
                reason="retries_exhausted",
                message=f"gave up after {attempts} attempts over {now - first:,.0f} s; "
                f"last answer: {status or failed.response}",
            )
        self.stats.retries += 1
        return evolve(
            failed, attempts=attempts, next_attempt_at=now + policy.backoff(attempts, self.rng)
        )

    async def _post(self, path: str, body: bytes) -> tuple[int | None, str, float | None, str]:
        """Send one request.

        Returns:
            The status (None for a transport error), the response text, Retry-After, and the
            cause of a failure as ``health`` names it.
        """
        self.stats.requests += 1
        try:
            response = await self.client.post(
                self.settings.base_url.rstrip("/") + path, content=body, headers=self._headers
            )
        except Exception as error:  # noqa: BLE001 - any failure to get an answer is retried
            # Name the underlying failure (the transport may map it to a broader httpx class).
            cause = error.__cause__ or error
            text = f"{type(cause).__name__}: {cause or error}"
            return None, scrub(text, self.settings.token), None, transport_cause(error)
        text = scrub(response.text[:RESPONSE_LIMIT], self.settings.token)
        retry_after = parse_retry_after(response.headers.get("retry-after"), self.clock())
        return response.status_code, text, retry_after, status_cause(response.status_code)


def _requeue(
    claim: Claim, attempts: int, throttles: int, done: int, first: float | None
) -> Settlement:
    """Back to the queue with the progress made so far (nothing counted against it)."""
    return Settlement(
        id=claim.id,
        state=State.QUEUED,
        attempts=attempts,
        throttles=throttles,
        done=done,
        first_attempt_at=first,
    )


_STOP: Any = object()
