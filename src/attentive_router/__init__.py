"""attentive-router: Segment-spec analytics events in, Attentive REST API requests out.

The public surface is small: build a ``Context`` (receipt time and ``Config``), call
``route(event, ctx)`` and get one outcome (``Mapped``, ``Skipped`` or ``Rejected``); turn a
request body into JSON with ``to_json``, or a whole outcome into its record with ``to_record``.

The names are loaded on first use (PEP 562): every ``attentive-router`` command starts by
importing this package, and most need little or none of the transform (cattrs, the generated
mappings, libphonenumber's metadata).
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from attentive_router._transform.converter import converter
    from attentive_router._transform.json_form import (
        body_schema,
        schema_document,
        to_json,
        to_record,
    )
    from attentive_router._transform.mapping import Mapping
    from attentive_router._transform.models import (
        AddToCartRequest,
        Body,
        CustomAttributesRequest,
        CustomEventsRequest,
        CustomIdentifier,
        EventUser,
        ExternalIdentifiers,
        IdentifyRequest,
        Price,
        Product,
        ProductViewRequest,
        PurchaseRequest,
        SalesChannel,
    )
    from attentive_router._transform.options import Config, Context
    from attentive_router._transform.outcome import (
        Mapped,
        Outcome,
        Rejected,
        Request,
        Skipped,
        TransformWarning,
    )
    from attentive_router._transform.router import route

__all__ = [
    "AddToCartRequest",
    "Body",
    "Config",
    "Context",
    "CustomAttributesRequest",
    "CustomEventsRequest",
    "CustomIdentifier",
    "EventUser",
    "ExternalIdentifiers",
    "IdentifyRequest",
    "Mapped",
    "Mapping",
    "Outcome",
    "Price",
    "Product",
    "ProductViewRequest",
    "PurchaseRequest",
    "Rejected",
    "Request",
    "SalesChannel",
    "Skipped",
    "TransformWarning",
    "body_schema",
    "converter",
    "route",
    "schema_document",
    "to_json",
    "to_record",
]

_MODULES = {
    "converter": ("converter",),
    "json_form": ("body_schema", "schema_document", "to_json", "to_record"),
    "mapping": ("Mapping",),
    "models": (
        "AddToCartRequest",
        "Body",
        "CustomAttributesRequest",
        "CustomEventsRequest",
        "CustomIdentifier",
        "EventUser",
        "ExternalIdentifiers",
        "IdentifyRequest",
        "Price",
        "Product",
        "ProductViewRequest",
        "PurchaseRequest",
        "SalesChannel",
    ),
    "options": ("Config", "Context"),
    "outcome": ("Mapped", "Outcome", "Rejected", "Request", "Skipped", "TransformWarning"),
    "router": ("route",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}
"""The ``_transform`` module that defines each public name."""


# Hidden from type checkers, which then see only the names imported above: a misspelt name
# is an error there rather than an ``object``.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Load a public name from its module on first use, then keep it on the package."""
        module = _HOME.get(name)
        if module is None:
            msg = f"module {__name__!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value: object = getattr(
            _importlib.import_module(f"attentive_router._transform.{module}"), name
        )
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, the public ones included before their first use."""
    return sorted({*globals(), *__all__})
