"""Argument checks with QEMU's QAPI visitor texts."""

from __future__ import annotations

import pytest

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp import schema, validate

SPEC = schema({"packet-header": "str", "secret": "str", "*gpa": "uint64", "*n": "uint32"})


def test_valid_arguments_pass_and_optional_ones_may_be_absent() -> None:
    assert validate(SPEC, {"packet-header": "h", "secret": "s"}) == {
        "packet-header": "h",
        "secret": "s",
    }


def test_negative_uint64_wraps_as_qemu_does() -> None:
    args = validate(SPEC, {"packet-header": "h", "secret": "s", "gpa": -1})
    assert args["gpa"] == 2**64 - 1


@pytest.mark.parametrize(
    ("arguments", "desc"),
    [
        ({"secret": "s"}, "Parameter 'packet-header' is missing"),
        (
            {"packet-header": 1, "secret": "s"},
            "Invalid parameter type for 'packet-header', expected: string",
        ),
        ({"packet-header": "h", "secret": "s", "x": 1}, "Parameter 'x' is unexpected"),
        ({"packet-header": "h", "secret": "s", "gpa": "0x10"}, "Parameter 'gpa' expects uint64"),
        ({"packet-header": "h", "secret": "s", "gpa": True}, "Parameter 'gpa' expects uint64"),
        ({"packet-header": "h", "secret": "s", "gpa": 2**64}, "Parameter 'gpa' expects uint64"),
        ({"packet-header": "h", "secret": "s", "n": 2**32}, "Parameter 'n' expects uint32_t"),
        # a type error in a known member is found before an unexpected member
        (
            {"packet-header": 1, "secret": "s", "x": 1},
            "Invalid parameter type for 'packet-header', expected: string",
        ),
    ],
)
def test_refusals(arguments: dict[str, object], desc: str) -> None:
    with pytest.raises(QmpCommandError) as info:
        validate(SPEC, arguments)
    assert (info.value.error_class, info.value.desc) == ("GenericError", desc)


@pytest.mark.parametrize(
    ("type_", "good", "bad", "name"),
    [
        ("int", -5, 1.0, "integer"),
        ("bool", False, 0, "boolean"),
        ("number", 1.5, "1", "number"),
        ("object", {}, [], "object"),
        ("array", [], {}, "array"),
    ],
)
def test_each_type(type_: str, good: object, bad: object, name: str) -> None:
    spec = schema({"v": type_})
    assert validate(spec, {"v": good}) == {"v": good}
    with pytest.raises(QmpCommandError, match=f"expected: {name}$"):
        validate(spec, {"v": bad})


def test_unknown_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not one of"):
        schema({"v": "uint128"})
