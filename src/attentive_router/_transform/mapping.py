"""The description of one mapping: which Segment call it takes and which Attentive call it makes.

The generated module lists one ``Mapping`` per row of ``spec/events.csv``; the router dispatches
on ``call`` and ``event``.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import frozen

from attentive_router._transform.models import Body
from attentive_router._transform.options import Context
from attentive_router._transform.outcome import Rejected, Skipped, TransformWarning
from attentive_router._transform.source import Source

Transform = Callable[[Source, Context, list[TransformWarning]], Body | Rejected | Skipped]
"""A mapping function: resolved event, context, warnings accumulator → body or outcome."""

ANY_EVENT = "*"
"""``event`` of the mapping that takes track events no other mapping names."""


@frozen
class Mapping:
    """One row of ``spec/events.csv`` with its transform function.

    Attributes:
        name: Identifier of the mapping (``order_completed``).
        doc_table: Number of the integration doc's table it transcribes, if any.
        call: Segment call type (``identify``, ``track``, ``page``).
        event: Track event name, ``*`` for unnamed track events, ``None`` otherwise.
        method: HTTP method.
        path: Attentive endpoint path.
        transform: The function that builds the body.
    """

    name: str
    doc_table: int | None
    call: str
    event: str | None
    method: str
    path: str
    transform: Transform


def missing(output_key: str, inputs: str, warnings: list[TransformWarning]) -> Rejected:
    """The outcome when a field Attentive requires came out empty.

    Args:
        output_key: The body field (``user``, ``orderId``).
        inputs: The input paths it is read from, for the message.
        warnings: Warnings so far; those about these inputs explain why they were unusable.
    """
    sources = tuple(dict.fromkeys(_shown_input(part) for part in inputs.split(",")))
    # A warning repeats when several mappings of one event read the same input (identify).
    why = dict.fromkeys(w.message for w in warnings if w.message.startswith(sources))
    reason = "no_usable_identifier" if output_key == "user" else "missing_required_field"
    message = f"{output_key} is required, and nothing usable was found in {', '.join(sources)}"
    return Rejected(reason, message + (f" ({'; '.join(why)})" if why else ""))


EXPRESSION_INPUTS = {"custom_identifiers": "traits.username"}
"""The input paths that an expression of the rules table reads, as messages name them."""


def _shown_input(part: str) -> str:
    """An input of a rules-table row as people know it: a path, never a function's name."""
    name = part.strip()
    if not name.endswith("()"):
        return name
    function = name.removesuffix("()")
    return EXPRESSION_INPUTS.get(function, function.replace("_", " "))
