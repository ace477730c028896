"""attentive-router: Segment-spec analytics events in, Attentive REST API requests out.

The public surface is small: build a ``Context`` (receipt time and ``Config``), call
``route(event, ctx)`` and get one outcome (``Mapped``, ``Skipped`` or ``Rejected``); turn a
request body into JSON with ``to_json``, or a whole outcome into its record with ``to_record``.
"""

from attentive_router._transform.json_form import (
    body_schema,
    converter,
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
