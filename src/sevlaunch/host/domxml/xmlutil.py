"""Reading untrusted XML safely, and libvirt's readers of attributes, numbers, UUIDs and
scaled sizes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml.checks import HEX, MAX_DOCUMENT, MAX_MEMORY_BYTES, U32, U64, xml_error

# virScaleInteger's suffixes: bare or "iB" is binary, "B" decimal, "b"/"bytes" plain bytes.
_UNIT_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_document(
    data: str | bytes | bytearray,
    root_tag: str,
    *,
    error: Callable[[str], Exception] = xml_error,
) -> etree._Element:
    """Parse untrusted XML safely (no DTDs, entities or network) and check the root element.

    ``error(detail)`` builds the exception to raise (a domain ``XML error`` by default).
    """
    make = error
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_DOCUMENT:
        raise make(f"document of {len(raw)} bytes exceeds the {MAX_DOCUMENT} byte limit")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise make(f"({root_tag}_definition):{exc.lineno}: {exc.msg}") from exc
    if root is None or not isinstance(root.tag, str):
        raise make(f"({root_tag}_definition): no root element")
    if root.tag != root_tag:
        raise make(f"unexpected root element <{root.tag}>, expecting <{root_tag}>")
    if any(True for _ in root.iter(etree.Entity, etree.ProcessingInstruction)):
        raise make(f"({root_tag}_definition): entities and processing instructions are refused")
    return root


def text_of(el: etree._Element | None) -> str | None:
    """libvirt's ``string(./x)``: all descendant text, or None when the element is absent."""
    if el is None:
        return None
    return "".join(el.itertext())


def child(el: etree._Element | None, tag: str) -> etree._Element | None:
    return None if el is None else el.find(tag)


def prop_choice(
    el: etree._Element, name: str, allowed: Sequence[str], *, required: bool = False
) -> str | None:
    value = el.get(name)
    if value is None:
        if required:
            raise xml_error(
                f"Missing required attribute '{name}' in element '{el.tag}': expected one "
                f"of {', '.join(allowed)}",
                field=f"{el.tag}/@{name}",
            )
        return None
    if value not in allowed:
        raise xml_error(
            f"Invalid value for attribute '{name}' in element '{el.tag}': '{value}'. "
            f"Expected one of: {', '.join(allowed)}",
            field=f"{el.tag}/@{name}",
            value=value,
        )
    return str(value)


def prop_yesno(el: etree._Element | None, name: str) -> bool | None:
    if el is None:
        return None
    value = prop_choice(el, name, ("yes", "no"))
    return None if value is None else value == "yes"


def prop_onoff(el: etree._Element | None, name: str) -> bool | None:
    """libvirt's virTristateSwitch attributes (``append='on'``)."""
    if el is None:
        return None
    value = prop_choice(el, name, ("on", "off"))
    return None if value is None else value == "on"


def parse_uint(text: str, *, base: int = 10, limit: int = U32) -> int | None:
    text = text.strip()
    if base == 16:
        match = HEX.fullmatch(text)
        digits = match.group(1) if match else None
    else:
        digits = text if text.isdigit() and text.isascii() else None
    if digits is None:
        return None
    value = int(digits, base)
    return value if value <= limit else None


def parse_uuid(text: str, where: str, error: type[DomainXMLError] = DomainXMLError) -> uuid.UUID:
    compact = text.strip().replace("-", "")
    if not re.fullmatch(r"[0-9a-fA-F]{32}", compact):
        raise error(
            "internal error",
            f"malformed uuid element: expected 32 hex digits such as "
            f"'c7a5fdbd-edaf-9455-926a-d65c16db1809', got '{text}'",
            field=where,
            value=text,
        )
    return uuid.UUID(compact)


def scale_to_bytes(value: str, unit: str | None, *, where: str, default_scale: int = 1024) -> int:
    """libvirt's virScaleInteger: ``value`` in ``unit`` (KiB when absent) as bytes."""
    number = parse_uint(value, limit=U64)
    if number is None:
        raise xml_error(
            f"could not parse element {where}: expected a non-negative integer, got '{value}'",
            field=where,
            value=value,
        )
    scale = _unit_scale(unit, default_scale)
    total = number * scale
    if total > MAX_MEMORY_BYTES:
        raise DomainXMLError(
            "numerical overflow",
            f"value too large: {value} {unit or 'KiB'} in {where}",
            field=where,
            value=value,
        )
    return total


def _unit_scale(unit: str | None, default_scale: int) -> int:
    if not unit:
        return default_scale
    low = unit.lower()
    if low in ("b", "byte", "bytes"):
        return 1
    power = _UNIT_POWERS.get(low[0])
    rest = low[1:]
    if power is not None and rest in ("", "ib"):
        return int(1024**power)
    if power is not None and rest == "b":
        return int(1000**power)
    raise DomainXMLError(
        "invalid argument",
        f"unknown suffix '{unit}': use b, KiB, MiB, GiB, TiB (or KB, MB, GB for powers of 1000)",
        field="@unit",
        value=unit,
    )
