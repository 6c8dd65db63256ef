"""QEMU's option syntax (QemuOpts and the JSON form of ``-object``/``-device``/``-blockdev``).

``key=value`` pairs separated by commas, ``,,`` for a literal comma, an implied first key for
some options (``-machine q35``), a bare ``key`` meaning ``key=on`` and ``nokey`` meaning
``key=off`` (legacy ``server,nowait``). Booleans take on/off/yes/no/true/false/y/n. Integers
take C prefixes (0x.., leading 0 for octal) as ``qemu_strtou64`` does. Messages are QEMU's
(qapi/qobject-input-visitor.c, util/cutils.c). Every parser raises ``ValueError`` with QEMU's
text; :func:`~sevlaunch.vmm.cmdline.parse_cmdline` adds the option, as QEMU's error location.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")
_SIZE_SUFFIX = {"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([bkmgtpe]?)", re.IGNORECASE)

Props = dict[str, object]


def split_opts(text: str, implied: str | None = None) -> list[tuple[str, str]]:
    """``a,b=c,,d,noe`` → [(implied, a), (b, "c,d"), (e, "off")]; ``,,`` is a comma."""
    out: list[tuple[str, str]] = []
    for i, part in enumerate(_split_commas(text)):
        if "=" in part:
            key, value = part.split("=", 1)
            out.append((key, value))
        elif i == 0 and implied is not None:
            out.append((implied, part))
        elif part.startswith("no") and len(part) > 2:
            out.append((part[2:], "off"))
        else:
            out.append((part, "on"))
    return out


def _split_commas(text: str) -> Iterator[str]:
    part: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == ",":
            if text.startswith(",,", i):
                part.append(",")
                i += 2
                continue
            yield "".join(part)
            part = []
        else:
            part.append(text[i])
        i += 1
    yield "".join(part)


def parse_props(text: str, implied: str | None) -> tuple[Props, bool]:
    """An option in either syntax: ``({"key": value}, typed)``; JSON values keep their JSON
    types (``typed``), key=value ones are strings still to be parsed."""
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"JSON parse error, {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError("Invalid parameter type for '<anonymous>', expected: object")
        return raw, True
    return dict(split_opts(text, implied)), False


def take_str(props: Props, name: str) -> str:
    """Remove and return a mandatory string property."""
    if name not in props:
        raise ValueError(f"Parameter '{name}' is missing")
    value = props.pop(name)
    if not isinstance(value, str):
        raise ValueError(f"Invalid parameter type for '{name}', expected: string")
    return value


def opt_str(props: Props, name: str) -> str | None:
    """An optional string property (left in ``props``)."""
    value = props.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"Invalid parameter type for '{name}', expected: string")
    return value


def opt_bool(props: Props, name: str, typed: bool, default: bool = False) -> bool:
    """An optional boolean: a JSON bool, or on/off text."""
    value = props.get(name)
    if value is None:
        return default
    if typed:
        if not isinstance(value, bool):
            raise ValueError(f"Invalid parameter type for '{name}', expected: boolean")
        return value
    return parse_bool(name, str(value))


def opt_uint(props: Props, name: str, typed: bool, bits: int = 64) -> int | None:
    """An optional unsigned integer: a JSON number, or text with C prefixes."""
    value = props.get(name)
    if value is None:
        return None
    if typed:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
            raise ValueError(f"Parameter '{name}' expects uint{bits}_t")
        return value
    return parse_uint(name, str(value), bits)


def parse_bool(name: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"Parameter '{name}' expects 'on' or 'off'")


def parse_uint(name: str, value: str, bits: int = 64) -> int:
    """qemu_strtou64 with base 0, then QAPI's range check for uintN."""
    text = value.strip()
    neg = text.startswith("-")
    digits = text[1:] if neg else text
    try:
        if digits[:2].lower() == "0x":
            number = int(digits[2:], 16)
        elif digits.startswith("0") and len(digits) > 1:
            number = int(digits[1:], 8)
        else:
            number = int(digits, 10) if digits.isdigit() else int("x")
    except ValueError:
        raise ValueError(f"Parameter '{name}' expects integer") from None  # QEMU's words only
    if number >= 1 << 64:
        raise ValueError(f"Parameter '{name}' expects integer")
    number = (-number) & ((1 << 64) - 1) if neg else number
    if number >> bits:
        raise ValueError(f"Parameter '{name}' expects uint{bits}_t")
    return number


def parse_size(name: str, value: str, default_shift: int = 0) -> int:
    """qemu_strtosz: a number with an optional k/M/G/T/P/E suffix (binary units)."""
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        raise ValueError(
            f"Parameter '{name}' expects a non-negative number below 2^64\n"
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            "and exabytes, respectively."
        )
    shift = _SIZE_SUFFIX[m.group(2).lower()] if m.group(2) else default_shift
    whole = m.group(1)
    number = int(float(whole) * (1 << shift)) if "." in whole else int(whole) << shift
    if number >= 1 << 64:
        raise ValueError(f"Parameter '{name}' expects a non-negative number below 2^64")
    return number
