"""Types of the numeric command-line options: a value out of range is a usage error.

Each is an argparse ``type=``: a bad value ends the command with exit status 2 and a message
naming the option and the valid range, e.g. ``argument --rate: expected a number > 0, got 0``.
"""

from __future__ import annotations

import argparse
import math

MAX_PORT = 65535


def _bad(expected: str, text: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"expected {expected}, got {text.strip() or repr(text)}")


def _float(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(expected, text) from None
    if not math.isfinite(value):
        raise _bad(expected, text)
    return value


def _int(text: str, expected: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad(expected, text) from None


def positive(text: str) -> float:
    """A number > 0: rates and timeouts (0 would stall or fail every request)."""
    expected = "a number > 0"
    value = _float(text, expected)
    if value <= 0:
        raise _bad(expected, text)
    return value


def non_negative(text: str) -> float:
    """A number >= 0: windows and waits, where 0 means none."""
    expected = "a number >= 0"
    value = _float(text, expected)
    if value < 0:
        raise _bad(expected, text)
    return value


def at_least_one(text: str) -> int:
    """A whole number >= 1: counts such as --concurrency, --max-attempts, --limit."""
    expected = "a whole number >= 1"
    value = _int(text, expected)
    if value < 1:
        raise _bad(expected, text)
    return value


def port(text: str) -> int:
    """A TCP port, 0 for any free one."""
    expected = f"a port number from 0 to {MAX_PORT}"
    value = _int(text, expected)
    if not 0 <= value <= MAX_PORT:
        raise _bad(expected, text)
    return value
