"""Output whose reader may go away: a closed pipe (``| head``) is a normal end, not an error.

Commands whose output is the point (``transform``, ``dead-letters``, ``check``, ``demo``) stop
quietly with exit status 0 when their reader closes the pipe. Commands whose output is only a
report on their work (``send``, ``deliver``, ``serve``, ``sandbox``) write through ``guarded``:
the rest of the report is dropped and the work goes on, ending with its usual exit status.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, cast


def silence(stream: IO[Any]) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so later writes and flushes succeed."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


class _Guarded:
    """A text stream that drops what it cannot write once its reader has gone."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            self._stream.write(text)
        except BrokenPipeError:
            silence(self._stream)
        return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            silence(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guarded(stream: IO[str]) -> IO[str]:
    """``stream``, made to drop its output quietly when the pipe it writes to is closed."""
    return cast("IO[str]", _Guarded(stream))
