"""The console's pages and actions, mounted by ``serve`` under ``/console``.

Pages are rendered on the server (Jinja2, escaped); one small script refreshes the live events
list. Every path needs the console token (``security``); without one configured, none exists.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from attrs import define, field, frozen
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from attentive_router._console.chart import COLOURS, LABELS, bar_chart
from attentive_router._console.journal import KINDS, Answer, Journal
from attentive_router._console.samples import SAMPLES
from attentive_router._console.security import COOKIE, Guard, cross_site, own_origin
from attentive_router._queue.interface import QueueError, Record, State
from attentive_router._queue.sqlite import Search, SQLiteQueue
from attentive_router._transform.json_form import to_record
from attentive_router._transform.options import Config, Context
from attentive_router._transform.router import route

if TYPE_CHECKING:  # imported by serve only for a Kafka queue
    from attentive_router._queue.kafka.dead_letters import KafkaDeadLetters
    from attentive_router._queue.kafka.view import KafkaView, TailEvent

CONSOLE_PATH = "/console"
"""Where ``serve`` mounts the console."""

LIVE_ROWS = 100
"""Events the live list shows."""

DEAD_ROWS = 500
"""Dead letters the list shows (replaying all that match a filter takes every one)."""

SIGN_IN_DELAY = 1.0
"""Seconds a wrong token waits before its answer (slows guessing down)."""

OUTCOMES = ("queued", "in_flight", "delivered", "skipped", "rejected", "dead_lettered")
"""The outcomes a search may ask for (the queue's states, as people read them)."""

_STATES = {state.label: state for state in State}

logger = logging.getLogger("attentive_router.console")


@define
class Destination:
    """One destination as the console sees it.

    Attributes:
        name: Its name.
        config: Its mapping options (the mapping tester and the event pages use them).
        queue: Its queue file; None on Kafka.
        kafka: Its Kafka queue; None with a queue file.
        journal: What its sender told the console (answers, counts per minute).
        state: Its delivery state (``running``, ``paused``, ``restarting``, ``off``).
        paused: Why Attentive's refusal of its key paused it, or None.
        wake: Tell its sender that replayed events are waiting.
    """

    name: str
    config: Config
    queue: SQLiteQueue | None = None
    kafka: KafkaView | None = None
    journal: Journal = field(factory=Journal)
    state: Callable[[], str] = lambda: "off"
    paused: Callable[[], str | None] = lambda: None
    wake: Callable[[], None] = lambda: None


_FILTERS = ("destination", "source", "outcome", "reason", "name", "q")
"""The filters' names, in the forms and the query string."""


@frozen
class Filters:
    """A search of events or dead letters, as the forms and the query string give it."""

    destination: str = ""
    source: str = ""
    outcome: str = ""
    reason: str = ""
    name: str = ""
    q: str = ""

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Filters:
        """From a query string or form (unknown keys ignored, text trimmed)."""
        picked = {key: str(values.get(key, "")).strip()[:200] for key in _FILTERS}
        return cls(**picked)

    def search(self, state: State | None = None) -> Search:
        """The queue file's search."""
        chosen = state if state is not None else _STATES.get(self.outcome)
        return Search(
            source=self.source or None,
            state=chosen,
            reason=self.reason or None,
            name=self.name or None,
            text=self.q or None,
        )

    def query(self) -> str:
        """As a query string (to keep the filters across a redirect)."""
        return urlencode({key: getattr(self, key) for key in _FILTERS if getattr(self, key)})


def _iso(moment: float | None) -> str:
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _user(user: str) -> str:
    return user.removeprefix("user:") if user.startswith("user:") else ""


def _event_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _pretty_text(text: str | bytes | None) -> str:
    """JSON text indented when it is JSON, else as it is."""
    if text is None:
        return ""
    try:
        return _pretty(orjson.loads(text))
    except orjson.JSONDecodeError:
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _names(event: Any) -> tuple[str, str]:
    """The call and the event's name (track's ``event``, page's ``name``)."""
    if not isinstance(event, dict):
        return "", ""
    call = event.get("type")
    name = event.get("event") if call == "track" else event.get("name")
    return (call if isinstance(call, str) else ""), (name if isinstance(name, str) else "")


def _row(destination: str, record: Record) -> dict[str, Any]:
    event = _event_json(record.event)
    call, name = _names(event)
    return {
        "id": record.id,
        "destination": destination,
        "time": _iso(record.received_at),
        "received_at": record.received_at,
        "source": record.source,
        "call": call,
        "name": name,
        "user": _user(record.user),
        "key": record.key,
        "outcome": record.state.label,
        "reason": record.reason or "",
        "message": record.message or "",
        "href": f"/console/events/{destination}/{record.id}",
    }


def _tail_row(destination: str, item: TailEvent) -> dict[str, Any]:
    event = _event_json(item.event)
    call, name = _names(event)
    rejected = item.rejected
    return {
        "id": f"{item.partition}-{item.offset}",
        "destination": destination,
        "time": _iso(item.received_at),
        "received_at": item.received_at,
        "source": item.source,
        "call": call,
        "name": name,
        "user": _user(item.user),
        "key": item.key,
        "outcome": "rejected" if rejected else "in_kafka",
        "reason": rejected[0] if rejected else "",
        "message": rejected[1] if rejected else "",
        "href": f"/console/events/{destination}/{item.partition}-{item.offset}",
    }


def _matches(row: Mapping[str, Any], filters: Filters) -> bool:
    """A Kafka record's row against the filters (a queue file searches in SQL)."""
    checks = (
        (filters.source, row["source"] == filters.source),
        (filters.outcome, row["outcome"] == filters.outcome),
        (filters.reason, row["reason"] == filters.reason),
        (filters.name, filters.name in (row["call"], row["name"])),
        (filters.q, filters.q in (row["user"], row["key"])),
    )
    return all(ok for wanted, ok in checks if wanted)


class Console:
    """The console's handlers, over the destinations of one ``serve``.

    Args:
        destinations: Every destination, in the configuration's order.
        sources: The write keys' names (the source filter's choices).
        guard: The token check.
        origin_of: Where browsers reach this server, as an origin (``https://host``): behind
            a proxy, its public address. The session cookie is ``Secure`` on ``https``.
        clock: Seconds since the epoch.
    """

    def __init__(
        self,
        destinations: Sequence[Destination],
        sources: Iterable[str],
        guard: Guard,
        origin_of: Callable[[Request], str] = own_origin,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.destinations = {d.name: d for d in destinations}
        self.sources = sorted(set(sources))
        self.guard = guard
        self.origin_of = origin_of
        self.clock = clock
        folder = resources.files("attentive_router._console")
        self.templates = Environment(
            loader=FileSystemLoader(str(folder / "templates")),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._files = {name: (folder / "static" / name).read_bytes() for name in _STATIC}

    # -- plumbing ------------------------------------------------------------------------

    @property
    def entry(self) -> Callable[[Request], Any]:
        """``/console`` itself (the routes are mounted under it)."""
        return self._guarded(self.home)

    def close(self) -> None:
        """Let go of the Kafka clients."""
        for destination in self.destinations.values():
            if destination.kafka is not None:
                destination.kafka.close()

    def routes(self) -> list[BaseRoute]:
        """The console's routes (mount them under ``/console``)."""
        guarded = self._guarded
        return [
            Route("/", guarded(self.home), methods=["GET"]),
            Route("/sign-in", self.sign_in, methods=["GET", "POST"]),
            Route("/sign-out", guarded(self.sign_out), methods=["POST"]),
            Route("/events", guarded(self.events), methods=["GET"]),
            Route("/api/events", guarded(self.events_json), methods=["GET"]),
            Route("/events/{destination}/{id}", guarded(self.event), methods=["GET"]),
            Route("/overview", guarded(self.overview), methods=["GET"]),
            Route("/dead-letters", guarded(self.dead_letters), methods=["GET"]),
            Route("/dead-letters/replay", guarded(self.replay), methods=["POST"]),
            Route("/mapping", guarded(self.mapping), methods=["GET", "POST"]),
            Route("/static/{name}", guarded(self.static_file), methods=["GET"]),
        ]

    async def static_file(self, request: Request) -> Response:
        """The console's stylesheet and script (behind the token like everything else)."""
        name = request.path_params["name"]
        kind = _STATIC.get(name)
        if kind is None:
            return Response("not found\n", 404, media_type="text/plain")
        return Response(self._files[name], media_type=kind)

    def _guarded(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def checked(request: Request) -> Response:
            if not self.guard.signed_in(request):
                return self._sign_in_page(request, status=401)
            if request.method == "POST":
                problem = await self._post_problem(request)
                if problem is not None:
                    _log(logging.WARNING, "console: a POST refused", request, problem=problem)
                    return Response(f"refused: {problem}\n", 403, media_type="text/plain")
            response: Response = await handler(request)
            response.headers["Cache-Control"] = "no-store"  # every answer, pages or not
            return response

        return checked

    async def _post_problem(self, request: Request) -> str | None:
        problem = cross_site(request, self.origin_of)
        if problem is not None:
            return f"a cross-site request ({problem})"
        form = await _form(request)
        if not self.guard.form_ok(form.get("form_token")):
            return "the form token is missing or wrong (reload the page)"
        return None

    def _page(self, name: str, request: Request, status: int = 200, **values: Any) -> Response:
        template = self.templates.get_template(name)
        body = template.render(
            destinations=list(self.destinations),
            sources=self.sources,
            form_token=self.guard.form_token,
            path=request.url.path,
            signed_in=True,
            **values,
        )
        return HTMLResponse(body, status, headers=_SECURITY_HEADERS)

    def _sign_in_page(
        self, request: Request, status: int, problem: str = "", wanted: str = ""
    ) -> Response:
        wanted = wanted or (request.url.path if request.method == "GET" else "/console/events")
        template = self.templates.get_template("sign_in.html")
        nonce = secrets.token_urlsafe(16)
        body = template.render(
            next=_local(wanted),
            problem=problem,
            signed_in=False,
            nonce=nonce,
            inline_css=Markup(self._files["console.css"].decode()),  # noqa: S704 - our own file
        )
        policy = _SECURITY_HEADERS["Content-Security-Policy"].replace(
            "style-src 'self'", f"style-src 'nonce-{nonce}'"
        )
        headers = {**_SECURITY_HEADERS, "Content-Security-Policy": policy}
        return HTMLResponse(body, status, headers=headers)

    async def _call(self, action: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(action, *args)

    def _chosen(self, filters: Filters) -> list[Destination]:
        if filters.destination:
            found = self.destinations.get(filters.destination)
            return [found] if found is not None else []
        return list(self.destinations.values())

    # -- signing in and out --------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        """The sign-in form (401 until signed in) and its POST."""
        if request.method == "GET":
            if self.guard.signed_in(request):
                return RedirectResponse("/console/events", 303)
            return self._sign_in_page(request, status=401)
        problem = cross_site(request, self.origin_of)
        if problem is not None:
            _log(logging.WARNING, "console: a sign-in refused", request, problem=problem)
            return Response(f"refused: a cross-site request ({problem})\n", 403)
        form = await _form(request)
        token = form.get("token")
        if not isinstance(token, str) or not self.guard.opens(token):
            _log(logging.WARNING, "console: a wrong token", request)
            await asyncio.sleep(SIGN_IN_DELAY)
            wanted = str(form.get("next") or "")  # where the person was going, still
            return self._sign_in_page(request, 401, "That is not the console token.", wanted)
        target = _local(str(form.get("next") or "/console/events"))
        response = RedirectResponse(target, 303)
        response.set_cookie(
            COOKIE,
            self.guard.session,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=self.origin_of(request).startswith("https:"),
        )
        return response

    async def sign_out(self, _request: Request) -> Response:
        """Forget the session cookie."""
        response = RedirectResponse("/console/sign-in", 303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    async def home(self, _request: Request) -> Response:
        """The console's first page is the live events."""
        return RedirectResponse("/console/events", 303)

    # -- live events ---------------------------------------------------------------------

    async def _rows(
        self, filters: Filters, limit: int = LIVE_ROWS
    ) -> tuple[list[dict[str, Any]], list[str]]:
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for destination in self._chosen(filters):
            try:
                if destination.queue is not None:
                    found = await self._call(destination.queue.search, filters.search(), limit)
                    rows += [_row(destination.name, record) for record in found]
                elif destination.kafka is not None:
                    tail = await self._call(destination.kafka.tail, max(limit, 200))
                    shown = [_tail_row(destination.name, item) for item in tail]
                    rows += [row for row in shown if _matches(row, filters)][:limit]
            except QueueError as error:
                problems.append(f"{destination.name}: {error}")
        rows.sort(key=lambda row: row["received_at"], reverse=True)
        return rows[:limit], problems

    async def _reasons(self) -> list[str]:
        found: set[str] = set()
        for destination in self.destinations.values():
            if destination.queue is not None:
                try:
                    found.update(await self._call(destination.queue.reasons))
                except QueueError:
                    continue
        return sorted(found)

    async def events(self, request: Request) -> Response:
        """Live events: the newest events, refreshed by the page's script."""
        filters = Filters.of(request.query_params)
        rows, problems = await self._rows(filters)
        return self._page(
            "events.html",
            request,
            rows=rows,
            problems=problems,
            filters=filters,
            outcomes=OUTCOMES,
            reasons=await self._reasons(),
            kafka=any(d.kafka is not None for d in self.destinations.values()),
        )

    async def events_json(self, request: Request) -> Response:
        """The live list's rows as JSON (what the page's script polls)."""
        filters = Filters.of(request.query_params)
        rows, problems = await self._rows(filters)
        return JSONResponse({"rows": rows, "problems": problems})

    async def event(self, request: Request) -> Response:
        """One event: as received, its outcome and why, the requests and Attentive's answers."""
        destination = self.destinations.get(request.path_params["destination"])
        ident = request.path_params["id"]
        if destination is None:
            return self._missing(request, "There is no such destination.")
        try:
            if destination.kafka is not None:
                return await self._kafka_event(request, destination, ident)
            if destination.queue is None or not ident.isdigit():
                return self._missing(request, "There is no such event.")
            record = await self._call(destination.queue.record, int(ident))
        except QueueError as error:
            return self._missing(request, f"The queue could not be read: {error}", 503)
        if record is None:
            return self._missing(request, "There is no such event (it may have been pruned).")
        event = _event_json(record.event)
        at_ingest = record.state is State.REJECTED and record.last_attempt_at is None
        transform = self._transform(destination, event, record.received_at, at_ingest)
        answers = destination.journal.answers(record.id)
        return self._page(
            "event.html",
            request,
            destination=destination.name,
            row=_row(destination.name, record),
            record=record,
            times={
                "received": _iso(record.received_at),
                "first": _iso(record.first_attempt_at),
                "last": _iso(record.last_attempt_at),
                "next": _iso(record.next_attempt_at) if record.state is State.QUEUED else "",
            },
            event_text=_pretty(event) if event is not None else _pretty_text(record.event),
            transform=transform,
            answers=[_answer(answer) for answer in answers],
            last_request=_pretty_text(record.request),
            last_response=_pretty_text(record.response),
        )

    async def _kafka_event(
        self, request: Request, destination: Destination, ident: str
    ) -> Response:
        kafka = destination.kafka
        assert kafka is not None
        tail = await self._call(kafka.tail, 1000)
        item = next((i for i in tail if f"{i.partition}-{i.offset}" == ident), None)
        if item is None:
            return self._missing(request, "That record is not among the newest 1,000 of the topic.")
        event = _event_json(item.event)
        row = _tail_row(destination.name, item)
        transform = self._transform(destination, event, item.received_at, item.rejected)
        return self._page(
            "event.html",
            request,
            destination=destination.name,
            row=row,
            record=None,
            times={"received": row["time"], "first": "", "last": "", "next": ""},
            event_text=_pretty(event) if event is not None else _pretty_text(item.event),
            transform=transform,
            answers=[],
            last_request="",
            last_response="",
            kafka_place=f"partition {item.partition}, offset {item.offset}",
        )

    def _transform(
        self, destination: Destination, event: Any, received_at: float, rejected: Any
    ) -> dict[str, Any] | None:
        """What the transform makes of the event now (None for an input that was no event)."""
        if event is None or rejected:
            return None
        received = datetime.fromtimestamp(received_at, UTC)
        record = to_record(route(event, Context(received, destination.config)), event)
        return _shown_record(record)

    def _missing(self, request: Request, message: str, status: int = 404) -> Response:
        return self._page("message.html", request, status=status, message=message)

    # -- overview ------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        """Per destination: its state, queue, and the last hour per endpoint."""
        now = self.clock()
        shown = [
            await self._destination_overview(destination, now)
            for destination in self.destinations.values()
        ]
        return self._page(
            "overview.html",
            request,
            shown=shown,
            colours=COLOURS,
            labels=LABELS,
            kinds=KINDS,
        )

    async def _destination_overview(self, destination: Destination, now: float) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": destination.name,
            "state": destination.state(),
            "paused": destination.paused(),
            "problem": None,
        }
        if destination.queue is not None:
            try:
                counts = await self._call(destination.queue.counts)
                oldest = await self._call(destination.queue.oldest_queued)
            except QueueError as error:
                item["problem"] = str(error)
            else:
                item["counts"] = {state.label: counts[state] for state in State}
                item["depth"] = counts[State.QUEUED] + counts[State.IN_FLIGHT]
                item["oldest_age"] = None if oldest is None else max(0.0, now - oldest)
            totals = destination.journal.totals(now)
            item["endpoints"] = [
                {
                    "path": path,
                    "svg": bar_chart(rows, f"{destination.name} {path}, the last hour"),
                    "totals": totals[path],
                }
                for path, rows in destination.journal.series(now).items()
            ]
            item["since"] = _iso(destination.journal.started)
        elif destination.kafka is not None:
            try:
                lag = await self._call(destination.kafka.lag)
                letters = await self._call(destination.kafka.dead_letters.counts)
            except QueueError as error:
                item["problem"] = str(error)
            else:
                item["lag"] = lag
                item["total_lag"] = sum(p.lag for p in lag)
                item["dead_letters"] = letters.get(State.DEAD, 0)
        return item

    # -- dead letters --------------------------------------------------------------------

    async def _letters(
        self, filters: Filters, limit: int
    ) -> tuple[list[dict[str, Any]], list[str]]:
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for destination in self._chosen(filters):
            try:
                if destination.queue is not None:
                    search = filters.search(State.DEAD)
                    found = await self._call(destination.queue.search, search, limit)
                    rows += [_letter_row(destination.name, record) for record in found]
                elif destination.kafka is not None:
                    letters = destination.kafka.dead_letters
                    found = await self._call(letters.records, State.DEAD, limit)
                    shown = [_letter_row(destination.name, record) for record in found]
                    rows += [row for row in shown if _matches(row, _without_outcome(filters))]
            except QueueError as error:
                problems.append(f"{destination.name}: {error}")
        rows.sort(key=lambda row: row["received_at"], reverse=True)
        return rows, problems

    async def dead_letters(self, request: Request) -> Response:
        """The dead letters, newest first, with their reasons."""
        filters = Filters.of(request.query_params)
        rows, problems = await self._letters(filters, DEAD_ROWS)
        replayed = request.query_params.get("replayed")
        return self._page(
            "dead_letters.html",
            request,
            rows=rows,
            problems=problems,
            filters=filters,
            reasons=sorted(
                {row["reason"] for row in rows if row["reason"]} | set(await self._reasons())
            ),
            replayed=int(replayed) if replayed and replayed.isdigit() else None,
            limit=DEAD_ROWS,
        )

    async def replay(self, request: Request) -> Response:
        """Replay the chosen dead letters, or every one matching the filters."""
        form = await _form(request)
        filters = Filters.of(form)
        if form.get("all") == "1":
            rows, _ = await self._letters(filters, 10**9)
            chosen = [(row["destination"], row["id"]) for row in rows]
        else:
            chosen = _picked(form)
        done = 0
        for name, ids in _by_destination(chosen).items():
            destination = self.destinations.get(name)
            if destination is None:
                continue
            store: SQLiteQueue | KafkaDeadLetters | None = destination.queue
            if store is None and destination.kafka is not None:
                store = destination.kafka.dead_letters
            if store is None:
                continue
            try:
                done += await self._call(store.replay, ids, self.clock())
            except QueueError as error:
                return self._missing(request, f"Nothing was replayed for {name}: {error}", 503)
            destination.wake()
        _log(logging.INFO, "console: dead letters replayed", request, count=done)
        back = filters.query()
        target = f"/console/dead-letters?replayed={done}" + (f"&{back}" if back else "")
        return RedirectResponse(target, 303)

    # -- mapping tester ------------------------------------------------------------------

    async def mapping(self, request: Request) -> Response:
        """Paste an event (or pick a sample): the outcome for a destination's options."""
        form: FormData | Mapping[str, str] = (
            await _form(request) if request.method == "POST" else request.query_params
        )
        sample = str(form.get("sample") or "")
        chosen = str(form.get("destination") or next(iter(self.destinations), ""))
        text = str(form.get("event") or "")
        if request.method == "GET" or form.get("load") == "1":
            picked = SAMPLES.get(sample) or next(iter(SAMPLES.values()))
            text = _pretty(picked)
        results: list[dict[str, Any]] = []
        problem = ""
        destination = self.destinations.get(chosen)
        if request.method == "POST" and form.get("load") != "1":
            if destination is None:
                problem = f"There is no destination {chosen!r}."
            else:
                results, problem = _try_mapping(text, destination.config, self.clock())
        return self._page(
            "mapping.html",
            request,
            samples=list(SAMPLES),
            sample=sample,
            chosen=chosen,
            text=text,
            results=results,
            problem=problem,
        )


FORM_LIMIT = 1_000_000
"""Bytes a console form may carry (the mapping tester's pasted events)."""


async def _form(request: Request) -> FormData:
    """The POSTed form (``application/x-www-form-urlencoded``, as the pages send it).

    Read once and kept on the request: the guard reads the form token, then the handler reads
    the rest.
    """
    kept = request.scope.get("console.form")
    if isinstance(kept, FormData):
        return kept
    body = b""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                body = b""
                break
    pairs: list[tuple[str, str | UploadFile]] = list(
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    )
    form = FormData(pairs)
    request.scope["console.form"] = form
    return form


def _log(level: int, message: str, request: Request, **fields: Any) -> None:
    """A log line about the console, with the client's address (``serve`` redacts the rest)."""
    client = request.client.host if request.client else None
    logger.log(level, message, extra={"fields": {"client": client, **fields}})


def _without_outcome(filters: Filters) -> Filters:
    """Dead letters have one outcome: the outcome filter does not apply to them."""
    return Filters(filters.destination, filters.source, "", filters.reason, filters.name, filters.q)


def _letter_row(destination: str, record: Record) -> dict[str, Any]:
    row = _row(destination, record)
    row.update(
        endpoint=record.endpoint or "",
        status=record.status,
        response=record.response or "",
        attempts=record.attempts,
        last=_iso(record.last_attempt_at),
    )
    return row


def _picked(form: FormData) -> list[tuple[str, int]]:
    chosen = []
    for value in form.getlist("pick"):
        name, _, ident = str(value).rpartition("/")
        if name and ident.isdigit():
            chosen.append((name, int(ident)))
    return chosen


def _by_destination(chosen: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for name, ident in chosen:
        grouped.setdefault(name, []).append(ident)
    return grouped


def _try_mapping(text: str, config: Config, now: float) -> tuple[list[dict[str, Any]], str]:
    """The transform's records for the pasted text (an event or an array of them)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return [], f"That is not JSON: {error}"
    events = value if isinstance(value, list) else [value]
    received = datetime.fromtimestamp(now, UTC)
    results = []
    for event in events[:50]:
        record = to_record(route(event, Context(received, config)), event)
        results.append(_shown_record(record))
    return results, ""


def _shown_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The transform's record, with each request body indented for reading."""
    shown = dict(record)
    shown["requests"] = [
        {"method": r["method"], "path": r["path"], "body": _pretty(r["body"])}
        for r in record.get("requests", ())
    ]
    shown["warnings"] = list(record.get("warnings", ()))
    return shown


def _answer(answer: Answer) -> dict[str, Any]:
    return {
        "path": answer.path,
        "status": answer.status if answer.status is not None else "no answer",
        "ok": answer.status is not None and 200 <= answer.status < 300,
        "sent": _iso(answer.sent_at),
        "elapsed_ms": f"{answer.elapsed * 1000:,.0f}",
        "body": _pretty_text(answer.body),
        "text": _pretty_text(answer.text),
    }


def _local(target: str) -> str:
    """Only the console's own paths are followed after signing in (no open redirect)."""
    if not target.startswith("/console/") or target.startswith("/console//") or "\\" in target:
        return "/console/events"
    if target in ("/console/sign-in", "/console/sign-out"):
        return "/console/events"
    return target


_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
"""The console's static files and their types."""

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on the pages' own POSTs, which
    # the cross-site check refuses. same-origin keeps every URL from other sites all the same.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
