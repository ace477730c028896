"""The cattrs converter between the models and JSON-ready dicts.

It renames snake_case attributes to Attentive's camelCase keys and omits absent (``None``)
fields; it also reads JSON back into the models (the rules interpreter of the tests does). The
transform writes JSON with ``json_form``'s direct functions and never loads this module.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from attentive_router._transform import models as _models
from attentive_router._transform.models import JSONObject

_PART_TYPES: tuple[type[Any], ...] = (
    _models.CustomIdentifier,
    _models.ExternalIdentifiers,
    _models.EventUser,
    _models.Price,
    _models.Product,
    _models.SalesChannel,
)


def camel(name: str) -> str:
    """Return the camelCase JSON key of a snake_case attribute name."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_AS_IS = frozenset(
    {JSONObject, JSONObject | None, str | None, int | None, int | float, int | float | None}
)


def _structure_number(value: object, _type: object) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    msg = f"expected a number, got {value!r}"
    raise TypeError(msg)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(unstruct_collection_overrides={tuple: list})
    # JSON-ready values (and optional ones) unstructure as themselves; cattrs inlines the
    # identity hook, so generated functions read the attribute without a call per field.
    converter.register_unstructure_hook_func(lambda t: t in _AS_IS, identity)
    converter.register_structure_hook_func(lambda t: t == JSONObject, lambda value, _t: value)
    converter.register_structure_hook_func(lambda t: t == int | float, _structure_number)
    # Leaves first: a class's generated function binds the hooks of its fields when it is made.
    for cls in (*_PART_TYPES, *_models.BODY_TYPES):
        renames: dict[str, Any] = {
            a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)
        }
        converter.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=True, **renames)
        )
        converter.register_structure_hook(
            cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)
        )
    return converter


converter = _make_converter()
"""The converter between models and JSON-ready dicts."""
