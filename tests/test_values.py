"""Promises the generated code relies on, held against the value normalisers themselves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from attentive_router import Context, TransformWarning
from attentive_router._transform import values

CTX = Context(datetime(2026, 1, 8, 14, tzinfo=UTC))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def test_the_shortcut_markers_name_existing_normalisers() -> None:
    markers = (values.KEEPS_NONBLANK_STRINGS, values.PASSES_THROUGH, values.ABSENT_FOR_NONE)
    for name in frozenset().union(*markers):
        assert callable(getattr(values, name))


def test_absent_for_none_normalisers_keep_none_absent_without_a_warning() -> None:
    assert values.ABSENT_FOR_NONE
    for name in sorted(values.ABSENT_FOR_NONE):
        warnings: list[TransformWarning] = []
        assert getattr(values, name)(None, "field", CTX, warnings) is None, name
        assert warnings == [], name


@given(text=st.text().filter(lambda s: bool(s.strip())))
def test_marked_normalisers_return_nonblank_strings_unchanged(text: str) -> None:
    for name in sorted(values.KEEPS_NONBLANK_STRINGS):
        warnings: list[TransformWarning] = []
        assert getattr(values, name)(text, "field", CTX, warnings) is text
        assert warnings == []


def test_marked_normalisers_keep_none_absent_without_a_warning() -> None:
    for name in sorted(values.KEEPS_NONBLANK_STRINGS):
        warnings: list[TransformWarning] = []
        assert getattr(values, name)(None, "field", CTX, warnings) is None
        assert warnings == []


@given(value=json_values)
def test_pass_through_normalisers_return_their_argument(value: Any) -> None:
    for name in sorted(values.PASSES_THROUGH):
        warnings: list[TransformWarning] = []
        assert getattr(values, name)(value, "field", CTX, warnings) is value
        assert warnings == []


@given(text=st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003\u3000", max_size=5))
def test_blank_strings_are_absent_for_the_marked_normalisers(text: str) -> None:
    for name in sorted(values.KEEPS_NONBLANK_STRINGS):
        assert getattr(values, name)(text, "field", CTX, []) is None
