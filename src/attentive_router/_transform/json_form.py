"""JSON form of the models: request bodies and outcome records, and the project's JSON Schemas.

Keys are Attentive's camelCase names; absent (``None``) fields are omitted, never sent as
``null``. Properties objects are passed through as they are, without copying. The cattrs
converter, which also reads JSON back into the models, lives in ``converter``: writing JSON does
not load cattrs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from attentive_router._transform import models as _models
from attentive_router._transform.models import JSONObject
from attentive_router._transform.outcome import OUTCOME_NAMES, Mapped, Outcome, Skipped

# -- direct JSON forms ---------------------------------------------------------------------------
# One function per model, written out: the same dicts as the converter's unstructure hooks (keys
# in attribute order, absent fields left out), without a hook dispatch per field or item.
# tests/test_json_form.py checks them against the converter for every model.


def _custom_identifiers(values: tuple[_models.CustomIdentifier, ...]) -> list[JSONObject]:
    return [{"name": value.name, "value": value.value} for value in values]


def _external_identifiers(value: _models.ExternalIdentifiers) -> JSONObject:
    result: JSONObject = {}
    if value.client_user_id is not None:
        result["clientUserId"] = value.client_user_id
    if value.custom_identifiers is not None:
        result["customIdentifiers"] = _custom_identifiers(value.custom_identifiers)
    return result


def _user(value: _models.EventUser) -> JSONObject:
    result: JSONObject = {}
    if value.phone is not None:
        result["phone"] = value.phone
    if value.email is not None:
        result["email"] = value.email
    if value.external_identifiers is not None:
        result["externalIdentifiers"] = _external_identifiers(value.external_identifiers)
    return result


def _price(value: _models.Price) -> JSONObject:
    if value.currency is None:
        return {"value": value.value}
    return {"value": value.value, "currency": value.currency}


def _product(value: _models.Product) -> JSONObject:
    result: JSONObject = {
        "productId": value.product_id,
        "productVariantId": value.product_variant_id,
        "price": [_price(price) for price in value.price],
    }
    if value.product_image is not None:
        result["productImage"] = value.product_image
    if value.product_url is not None:
        result["productUrl"] = value.product_url
    if value.name is not None:
        result["name"] = value.name
    if value.quantity is not None:
        result["quantity"] = value.quantity
    return result


def _items_body(body: _models.ProductViewRequest | _models.AddToCartRequest) -> JSONObject:
    result: JSONObject = {
        "items": [_product(item) for item in body.items],
        "user": _user(body.user),
    }
    if body.occurred_at is not None:
        result["occurredAt"] = body.occurred_at
    return result


def _purchase(body: _models.PurchaseRequest) -> JSONObject:
    result: JSONObject = {
        "items": [_product(item) for item in body.items],
        "user": _user(body.user),
    }
    if body.order_id is not None:
        result["orderId"] = body.order_id
    if body.sales_channel is not None:
        channel = body.sales_channel.channel_type
        result["salesChannel"] = {} if channel is None else {"channelType": channel}
    if body.occurred_at is not None:
        result["occurredAt"] = body.occurred_at
    return result


def _custom_event(body: _models.CustomEventsRequest) -> JSONObject:
    result: JSONObject = {"type": body.type, "user": _user(body.user)}
    if body.properties is not None:
        result["properties"] = body.properties
    if body.external_event_id is not None:
        result["externalEventId"] = body.external_event_id
    if body.occurred_at is not None:
        result["occurredAt"] = body.occurred_at
    return result


def _identify(body: _models.IdentifyRequest) -> JSONObject:
    result: JSONObject = {}
    if body.phone is not None:
        result["phone"] = body.phone
    if body.email is not None:
        result["email"] = body.email
    if body.shopify_id is not None:
        result["shopifyId"] = body.shopify_id
    if body.klaviyo_id is not None:
        result["klaviyoId"] = body.klaviyo_id
    if body.client_user_id is not None:
        result["clientUserId"] = body.client_user_id
    if body.custom_identifiers is not None:
        result["customIdentifiers"] = _custom_identifiers(body.custom_identifiers)
    return result


def _custom_attributes(body: _models.CustomAttributesRequest) -> JSONObject:
    return {"properties": body.properties, "user": _user(body.user)}


_BODY_FORMS: dict[type[Any], Callable[[Any], JSONObject]] = {
    _models.ProductViewRequest: _items_body,
    _models.AddToCartRequest: _items_body,
    _models.PurchaseRequest: _purchase,
    _models.CustomEventsRequest: _custom_event,
    _models.IdentifyRequest: _identify,
    _models.CustomAttributesRequest: _custom_attributes,
}
"""Each body class's direct JSON form."""


def to_json(body: _models.Body) -> JSONObject:
    """Return the JSON object (dict) Attentive receives for ``body``."""
    form = _BODY_FORMS.get(type(body))
    if form is None:  # not one of the models (never made by the transform)
        from attentive_router._transform.converter import converter  # noqa: PLC0415

        result: JSONObject = converter.unstructure(body)
        return result
    return form(body)


@cache
def schema_document() -> JSONObject:
    """Return the project's JSON Schema document of Attentive's request bodies."""
    text = (
        resources.files("attentive_router._transform")
        .joinpath("schemas/attentive-v1.json")
        .read_text()
    )
    document: JSONObject = json.loads(text)
    return document


def body_schema(title: str) -> JSONObject:
    """Return a JSON Schema for the body model named ``title`` (e.g. ``PurchaseRequest``)."""
    document = schema_document()
    if title not in document["$defs"]:
        msg = f"no schema definition titled {title!r}"
        raise KeyError(msg)
    return {"$ref": f"#/$defs/{title}", "$defs": document["$defs"]}


def _message_id(event: Any) -> str | int | None:
    if isinstance(event, dict):
        value = event.get("messageId")
        if type(value) is str:
            return value
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
    return None


def to_record(outcome: Outcome, event: Any) -> JSONObject:
    """The JSON record of one event's outcome, as ``attentive-router transform`` prints it."""
    message_id = event.get("messageId") if type(event) is dict else None
    if type(message_id) is not str:  # the common case is a string, kept without a call
        message_id = _message_id(event)
    record: JSONObject = {"messageId": message_id, "outcome": OUTCOME_NAMES[type(outcome)]}
    if isinstance(outcome, Mapped):
        record["requests"] = [
            {"method": request.method, "path": request.path, "body": to_json(request.body)}
            for request in outcome.requests
        ]
        record["warnings"] = [{"code": w.code, "message": w.message} for w in outcome.warnings]
    else:
        record["reason"] = outcome.reason
        record["message"] = outcome.message
        if isinstance(outcome, Skipped) and outcome.warnings:
            record["warnings"] = [{"code": w.code, "message": w.message} for w in outcome.warnings]
    return record
