"""The wire helpers' one typed error: a missing key, a wrong type (a bool is not a number) or
bad base64 is a FormatError naming the structure and the key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.protocol import _wire as w


@given(st.binary(max_size=64))
def test_base64_round_trips(data: bytes) -> None:
    assert w.b64("thing", {"k": w.encode(data)}, "k") == data


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (w.integer, True),
        (w.integer, 1.0),
        (w.integer, None),
        (w.number, False),
        (w.number, "1"),
        (w.text, 1),
        (w.b64, "not base64!"),
        (w.b64, None),
    ],
)
def test_a_wrong_value_names_the_key(reader: object, value: object) -> None:
    with pytest.raises(FormatError) as caught:
        reader("thing", {"k": value}, "k")  # type: ignore[operator]
    assert (caught.value.structure, caught.value.field) == ("thing", "k")


def test_optional_values_may_be_absent_or_null() -> None:
    for wire in ({}, {"k": None}):
        assert w.optional_integer("thing", wire, "k") is None
        assert w.optional_number("thing", wire, "k") is None
        assert w.optional_b64("thing", wire, "k") is None
    assert w.optional_b64("thing", {"k": ""}, "k") is None
    assert w.optional_number("thing", {"k": 2}, "k") == 2.0
    assert w.optional_integer("thing", {"k": 2}, "k") == 2
