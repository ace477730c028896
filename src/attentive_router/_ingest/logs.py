"""Structured logs for the server: one JSON object per line, with contact details redacted.

Every string that reaches a log line (the message and each field) passes through ``redact``,
which blanks out email addresses and phone numbers: rejection messages quote the values a
client sent, and logs travel further than the queue file does.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

LOGGER = "attentive_router"

# No "/" on either side: a path such as node_modules/@segment/analytics-next is not an address.
_EMAIL = re.compile(r"[^\s@'\"<>(),;:/]+@[^\s@'\"<>(),;:/]+")
# A run of 7 to 15 digits, optionally with a leading + and short separators between digits;
# not part of a longer word, so ids, UUIDs and ISO timestamps are left alone.
_PHONE = re.compile(r"(?<![\w+-])\+?\d(?:[ ()./-]{0,3}\d){6,14}(?![\w-])")


def redact(text: str) -> str:
    """``text`` with email addresses and phone numbers replaced by ``[email]`` and ``[phone]``."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    return _PHONE.sub("[phone]", text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


class JSONFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields}`` per record, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(_clean(entry), default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level message key=value ...`` per record, redacted (for a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        """One line."""
        parts = [_utc(record.created), record.levelname.lower(), record.getMessage()]
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            parts.extend(f"{key}={_text_value(value)}" for key, value in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


_BARE = re.compile(r"[^\s\"'=\\]+")
"""A string printed as it is in a text log line; any other is quoted, as JSON quotes it."""


def _text_value(value: Any) -> str:
    """A field's value as a text log line shows it: the value itself, never a Python repr.

    Plain words stay bare; strings with spaces or quotes, ``null``, ``true``, lists and
    objects are written as JSON, so that ``key=value`` pairs stay unambiguous.
    """
    if isinstance(value, str) and _BARE.fullmatch(value):
        return value
    return orjson.dumps(value, default=str).decode()


def _utc(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


def configure(level: str = "info", form: str = "json", stream: IO[str] | None = None) -> None:
    """Send this package's and uvicorn's log records to ``stream`` (stderr) in ``form``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if form == "json" else TextFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def log(level: int, message: str, *, exc_info: bool = False, **fields: Any) -> None:
    """Log ``message`` with ``fields`` on the package's logger."""
    logger = logging.getLogger(LOGGER)
    if logger.isEnabledFor(level):
        logger.log(level, message, exc_info=exc_info, extra={"fields": fields})
