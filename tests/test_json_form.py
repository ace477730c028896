"""``to_json`` writes each body out directly: the same dicts, key order included, as the
converter's unstructure hooks, for every model and every combination of absent fields."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from attentive_router import converter, to_json
from attentive_router._transform import models
from attentive_router._transform.json_form import _BODY_FORMS

texts = st.text(max_size=5)
optional_texts = st.none() | texts
integers = st.integers(-(2**63), 2**63 - 1)  # what the transform makes (and orjson writes)
numbers = integers | st.floats(allow_nan=False, allow_infinity=False)
properties = st.dictionaries(texts, st.none() | st.booleans() | numbers | texts, max_size=3)

custom_identifiers = st.builds(models.CustomIdentifier, texts, texts)
optional_identifiers = st.none() | st.tuples() | st.lists(custom_identifiers, max_size=2).map(tuple)
users = st.builds(
    models.EventUser,
    optional_texts,
    optional_texts,
    st.none() | st.builds(models.ExternalIdentifiers, optional_texts, optional_identifiers),
)
prices = st.lists(st.builds(models.Price, numbers, optional_texts), max_size=2).map(tuple)
products = st.builds(
    models.Product,
    texts,
    texts,
    prices,
    optional_texts,
    optional_texts,
    optional_texts,
    st.none() | integers,
)
items = st.lists(products, max_size=2).map(tuple)
bodies = st.one_of(
    st.builds(models.ProductViewRequest, items, users, optional_texts),
    st.builds(models.AddToCartRequest, items, users, optional_texts),
    st.builds(
        models.PurchaseRequest,
        items,
        users,
        optional_texts,
        st.none() | st.builds(models.SalesChannel, optional_texts),
        optional_texts,
    ),
    st.builds(
        models.CustomEventsRequest,
        texts,
        users,
        st.none() | properties,
        optional_texts,
        optional_texts,
    ),
    st.builds(
        models.IdentifyRequest,
        optional_texts,
        optional_texts,
        optional_texts,
        optional_texts,
        optional_texts,
        optional_identifiers,
    ),
    st.builds(models.CustomAttributesRequest, properties, users),
)


def test_every_body_class_has_a_direct_form() -> None:
    assert set(_BODY_FORMS) == set(models.BODY_TYPES)


@given(body=bodies)
def test_direct_forms_equal_the_converters_to_the_byte(body: Any) -> None:
    expected = converter.unstructure(body)
    assert to_json(body) == expected
    assert orjson.dumps(to_json(body)) == orjson.dumps(expected)
