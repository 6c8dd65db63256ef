"""Reading the wire dicts: one typed error for a missing key, a wrong type or bad base64."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from sevlaunch.errors import FormatError


def integer(structure: str, wire: Mapping[str, object], key: str) -> int:
    value = wire.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(structure, key, "expected an integer", value=value)
    return value


def optional_integer(structure: str, wire: Mapping[str, object], key: str) -> int | None:
    return None if wire.get(key) is None else integer(structure, wire, key)


def text(structure: str, wire: Mapping[str, object], key: str) -> str:
    value = wire.get(key)
    if not isinstance(value, str):
        raise FormatError(structure, key, "expected a string", value=value)
    return value


def optional_number(structure: str, wire: Mapping[str, object], key: str) -> float | None:
    return None if wire.get(key) is None else number(structure, wire, key)


def number(structure: str, wire: Mapping[str, object], key: str) -> float:
    value = wire.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(structure, key, "expected a number", value=value)
    return float(value)


def b64(structure: str, wire: Mapping[str, object], key: str) -> bytes:
    value = text(structure, wire, key)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(structure, key, f"not base64: {exc}", value=value[:80]) from exc


def optional_b64(structure: str, wire: Mapping[str, object], key: str) -> bytes | None:
    return None if wire.get(key) in (None, "") else b64(structure, wire, key)


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode()
