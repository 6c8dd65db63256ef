"""Argument schemas for QMP commands, checked as QEMU's QAPI input visitor checks them.

A schema is written as QAPI writes a command's ``data``: ``{"packet-header": "str",
"*gpa": "uint64"}``, a leading ``*`` marking an optional member. Members are visited in
schema order (so a missing or mistyped member is reported before any unexpected one), then
leftover members are refused. Every failure is a GenericError with QEMU's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp._json import JSONValue

_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT_BITS = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
_TYPE_NAMES = {
    "str": "string",
    "int": "integer",
    "bool": "boolean",
    "number": "number",
    "object": "object",
    "array": "array",
}
TYPES = frozenset(_TYPE_NAMES) | frozenset(_UINT_BITS) | {"any"}


@dataclass(frozen=True)
class Arg:
    """One member of a command's arguments."""

    name: str
    type: str
    optional: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(
                f"argument {self.name!r}: type {self.type!r} not one of {sorted(TYPES)}"
            )


Schema = tuple[Arg, ...]


def schema(data: Mapping[str, str] | None = None) -> Schema:
    """A schema from QAPI notation: ``{"name": "str", "*optional": "uint64"}``."""
    return tuple(
        Arg(name.removeprefix("*"), type_, name.startswith("*"))
        for name, type_ in (data or {}).items()
    )


def validate(spec: Schema, arguments: Mapping[str, JSONValue]) -> dict[str, Any]:
    """The arguments, checked against ``spec``; unsigned values wrapped as QEMU wraps them."""
    out: dict[str, Any] = {}
    for arg in spec:
        if arg.name not in arguments:
            if arg.optional:
                continue
            raise QmpCommandError(f"Parameter '{arg.name}' is missing")
        out[arg.name] = check_type(arg.name, arg.type, arguments[arg.name])
    for name in arguments:
        if name not in out:
            raise QmpCommandError(f"Parameter '{name}' is unexpected")
    return out


def check_type(name: str, type_: str, value: JSONValue) -> JSONValue:
    """One value against one QAPI type; ``name`` is the member's full name for messages."""
    if type_ == "any":
        return value
    if type_ in _UINT_BITS:
        return _unsigned(name, type_, value)
    ok = {
        "str": isinstance(value, str),
        "int": _is_int(value) and _INT64[0] <= value <= _INT64[1],
        "bool": isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }[type_]
    if not ok:
        raise QmpCommandError(
            f"Invalid parameter type for '{name}', expected: {_TYPE_NAMES[type_]}"
        )
    return value


def _is_int(value: JSONValue) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unsigned(name: str, type_: str, value: JSONValue) -> int:
    """QEMU accepts negative int64 for uint64 (two's complement), then range-checks."""
    if not _is_int(value) or not _INT64[0] <= value < (1 << 64):
        raise QmpCommandError(f"Parameter '{name}' expects uint64")
    wrapped = int(value) & ((1 << 64) - 1)
    bits = _UINT_BITS[type_]
    if wrapped >> bits:
        raise QmpCommandError(f"Parameter '{name}' expects {type_}_t")
    return wrapped
