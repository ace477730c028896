"""Events the mapping tester offers to start from: one of each outcome worth explaining."""

from __future__ import annotations

from typing import Any

SAMPLES: dict[str, dict[str, Any]] = {
    "Order Completed": {
        "type": "track",
        "event": "Order Completed",
        "messageId": "sample-order-1",
        "userId": "user-1",
        "context": {"traits": {"email": "ada@example.com", "phone": "+1 415 555 0100"}},
        "properties": {
            "order_id": "50314b8e9bcf000000000000",
            "total": 27.5,
            "currency": "USD",
            "products": [
                {
                    "product_id": "507f1f77bcf86cd799439011",
                    "sku": "45790-32",
                    "name": "Monopoly",
                    "price": 19.0,
                    "quantity": 1,
                },
                {
                    "product_id": "505bd76785ebb509fc183733",
                    "sku": "46493-32",
                    "name": "Uno",
                    "price": 3.45,
                    "quantity": 2,
                },
            ],
        },
    },
    "Product Viewed": {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "sample-product-1",
        "userId": "user-1",
        "context": {"traits": {"email": "ada@example.com"}},
        "properties": {
            "product_id": "507f1f77bcf86cd799439011",
            "name": "Monopoly",
            "price": 18.99,
        },
    },
    "identify": {
        "type": "identify",
        "messageId": "sample-identify-1",
        "userId": "user-1",
        "traits": {"email": "ada@example.com", "phone": "+14155550100", "plan": "gold"},
    },
    "custom event": {
        "type": "track",
        "event": "Gift Wrapped",
        "messageId": "sample-custom-1",
        "userId": "user-1",
        "context": {"traits": {"email": "ada@example.com"}},
        "properties": {"occasion": "birthday"},
    },
    "skipped: no identifier": {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "sample-skipped-1",
        "anonymousId": "anon-7",
        "properties": {"product_id": "507f1f77bcf86cd799439011", "price": 18.99},
    },
    "rejected: a price that is not a number": {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "sample-rejected-1",
        "userId": "user-1",
        "context": {"traits": {"email": "ada@example.com"}},
        "properties": {"product_id": "507f1f77bcf86cd799439011", "price": "free"},
    },
}
"""Name -> event. The last two show a skipped and a rejected outcome with its reason."""
