"""Read Segment events from NDJSON, a JSON array, or Segment batch envelopes.

Yields each event with its position, or the problem that prevented reading it, so that every
input event gets an output line. NDJSON is streamed line by line; a JSON array or a single
pretty-printed document is read whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import IO, Any

import orjson
from attrs import define

_BOM = b"\xef\xbb\xbf"


@define
class Item:
    """One input event (``event``), or the reason it could not be read (``error``).

    For an unreadable input, ``raw`` holds the bytes that failed (at most ``RAW_LIMIT``), so
    that a record of it can be kept and the input fixed and sent again. A plain slotted class
    rather than a frozen one (one is made for every input line, and a frozen class pays a call
    per field); nothing changes an item once it is made.
    """

    line: int
    event: Any = None
    error: str | None = None
    raw: bytes = b""
    index: int | None = None
    """Position among the events of a JSON array or batch envelope (from 0), else None."""


RAW_LIMIT = 64 * 1024


def _expand(document: Any, line: int) -> Iterator[Item]:
    """The events of one document, with their ``index`` when it holds several.

    A batch envelope gives its events (with the envelope's context merged in); an array
    gives its items, and the events of the envelopes among them, counted in one sequence.
    """
    if _is_envelope(document) or isinstance(document, list):
        for index, event in enumerate(_events(document)):
            yield Item(line, event, index=index)
    else:
        yield Item(line, document)


def _events(document: Any) -> Iterator[Any]:
    if isinstance(document, Mapping):
        shared = {
            key: document[key]
            for key in ("context", "integrations")
            if isinstance(document.get(key), Mapping)
        }
        for event in document["batch"]:
            yield merge_envelope(event, shared) if isinstance(event, dict) and shared else event
    else:
        for event in document:
            if _is_envelope(event):
                yield from _events(event)
            else:
                yield event


def merge_envelope(event: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``event`` with a batch envelope's ``context`` and ``integrations`` merged in.

    The event's own keys win; an event's non-object ``context`` is kept as it is (and judged
    by the transform).
    """
    merged = dict(event)
    for key, value in shared.items():
        own = event.get(key)
        merged[key] = {**value, **own} if isinstance(own, Mapping) else own or value
    return merged


def _is_envelope(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("batch"), list)


def _problem(error: orjson.JSONDecodeError, data: bytes, whole: str) -> tuple[int, str]:
    """What breaks the JSON of ``data`` and where: (lines after its first, the text).

    orjson counts a break at the very end after the line end, on a line that is not there,
    and puts invalid UTF-8 at the start; this names the column where the text really breaks
    (``whole`` names what ``data`` is: "the line", "the input").
    """
    content = data.rstrip()
    position = min(error.pos, len(content))
    what = error.msg
    if "UTF-8" in what:
        what = "invalid UTF-8"
        try:
            data.decode()
        except UnicodeDecodeError as bad:
            position = bad.start
    before = data[:position]
    offset = before.count(b"\n")
    column = len(before) - (before.rfind(b"\n") + 1) + 1
    if position >= len(content):
        return offset, f"{what} at the end of {whole}, column {column}"
    return offset, f"{what} at column {column}"


def _error(line: int, error: orjson.JSONDecodeError, raw: bytes) -> Item:
    try:  # without its line end: a string cut off there is not "a control character"
        orjson.loads(raw.rstrip(b"\r\n"))
    except orjson.JSONDecodeError as within:
        error = within
    _, problem = _problem(error, raw, "the line")
    return Item(line, error=f"line {line}: not valid JSON ({problem})", raw=raw[:RAW_LIMIT])


def read_events(stream: IO[bytes]) -> Iterator[Item]:
    """Yield every event of ``stream`` in input order.

    Blank lines are ignored; a leading byte-order mark and CRLF line ends are accepted.
    """
    first = stream.readline().removeprefix(_BOM)
    number = 1
    while first and not first.strip():
        first = stream.readline()
        number += 1
    if not first:
        return
    try:
        document = orjson.loads(first)
    except orjson.JSONDecodeError as error:
        rest = stream.read()
        if first.lstrip().startswith(b"["):
            yield from _whole(first + rest, number)
            return
        try:
            whole = orjson.loads(first + rest)
        except orjson.JSONDecodeError:
            yield _error(number, error, first)
            yield from _lines(rest.splitlines(keepends=True), start=number + 1)
            return
        yield from _expand(whole, number)
        return
    yield from _expand(document, number)
    yield from _lines(stream, start=number + 1)


def _whole(data: bytes, number: int) -> Iterator[Item]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        offset, problem = _problem(error, data, "the input")
        line = number + offset
        yield Item(line, error=f"line {line}: not valid JSON ({problem})", raw=data[:RAW_LIMIT])
        return
    yield from _expand(document, number)


def _lines(lines: Iterator[bytes] | list[bytes] | IO[bytes], start: int) -> Iterator[Item]:
    for number, raw in enumerate(lines, start):
        if not raw.strip():
            continue
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            yield _error(number, error, raw)
            continue
        if type(document) is dict and type(document.get("batch")) is not list:
            yield Item(number, document)  # one event per line: the common case, without _expand
        else:
            yield from _expand(document, number)
