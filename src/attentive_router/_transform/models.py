"""Typed models of the Attentive request bodies the router sends.

Attribute names are the snake_case form of Attentive's camelCase field names (the converter in
``json_form`` renames them); each class is named after the ``title`` of its definition in
``schemas/attentive-v1.json``, which is how the code generator finds it. Absent optional fields
are ``None`` and are omitted from the JSON body, never sent as ``null``.

The classes are plain slotted attrs classes rather than frozen ones: several are built for every
event, and a frozen class pays an extra call per field. They are values all the same: nothing
changes a body once it is built (the body rules make changed copies with ``attrs.evolve``).
"""

from __future__ import annotations

from typing import Any

from attrs import define

JSONObject = dict[str, Any]
"""A JSON object passed through as parsed (custom event and attribute properties)."""


@define
class CustomIdentifier:
    """A namespaced identifier, e.g. ``{"name": "username", "value": "jane_doe_92"}``."""

    name: str
    value: str


@define
class ExternalIdentifiers:
    """Identifiers of the user in the brand's own systems."""

    client_user_id: str | None = None
    custom_identifiers: tuple[CustomIdentifier, ...] | None = None


@define
class EventUser:
    """The user an event is about: at least one of phone, email, external identifiers."""

    phone: str | None = None
    email: str | None = None
    external_identifiers: ExternalIdentifiers | None = None


@define
class Price:
    """One price of a product: a JSON number with its decimals, and an ISO 4217 currency."""

    value: int | float
    currency: str | None = None


@define
class Product:
    """One item of an eCommerce event (Attentive's ``ProductRequest``)."""

    product_id: str
    product_variant_id: str
    price: tuple[Price, ...]
    product_image: str | None = None
    product_url: str | None = None
    name: str | None = None
    quantity: int | None = None


@define
class ProductViewRequest:
    """Body of ``POST /v1/events/ecommerce/product-view``."""

    items: tuple[Product, ...]
    user: EventUser
    occurred_at: str | None = None


@define
class AddToCartRequest:
    """Body of ``POST /v1/events/ecommerce/add-to-cart``."""

    items: tuple[Product, ...]
    user: EventUser
    occurred_at: str | None = None


@define
class SalesChannel:
    """Where a purchase happened."""

    channel_type: str | None = None


@define
class PurchaseRequest:
    """Body of ``POST /v1/events/ecommerce/purchase``."""

    items: tuple[Product, ...]
    user: EventUser
    order_id: str | None = None
    sales_channel: SalesChannel | None = None
    occurred_at: str | None = None


@define
class CustomEventsRequest:
    """Body of ``POST /v1/events/custom``."""

    type: str
    user: EventUser
    properties: JSONObject | None = None
    external_event_id: str | None = None
    occurred_at: str | None = None


@define
class IdentifyRequest:
    """Body of ``POST /v1/identity-resolution/user-identifiers`` (``IdentifyRequestDto``)."""

    phone: str | None = None
    email: str | None = None
    shopify_id: str | None = None
    klaviyo_id: str | None = None
    client_user_id: str | None = None
    custom_identifiers: tuple[CustomIdentifier, ...] | None = None


@define
class CustomAttributesRequest:
    """Body of ``POST /v1/attributes/custom``."""

    properties: JSONObject
    user: EventUser


Body = (
    ProductViewRequest
    | AddToCartRequest
    | PurchaseRequest
    | CustomEventsRequest
    | IdentifyRequest
    | CustomAttributesRequest
)
"""Any request body the router sends."""

BODY_TYPES: tuple[type[Body], ...] = (
    ProductViewRequest,
    AddToCartRequest,
    PurchaseRequest,
    CustomEventsRequest,
    IdentifyRequest,
    CustomAttributesRequest,
)
