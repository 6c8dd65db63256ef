"""Editing a parsed document in place: elements set, inserted where libvirt's formatter would
write them, or dropped; lists of like elements kept in step with the model's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from lxml import etree  # type: ignore[import-untyped]

Item = TypeVar("Item")


def local(tag: object) -> str | None:
    return tag if isinstance(tag, str) and not tag.startswith("{") else None


def insert(parent: etree._Element, child: etree._Element, order: Sequence[str]) -> None:
    """Insert ``child`` after the last sibling that libvirt writes before it."""
    tag = child.tag
    before = set(order[: order.index(tag)]) if tag in order else set(order)
    position = 0
    for index, sibling in enumerate(parent):
        if local(sibling.tag) in before or sibling.tag == tag:
            position = index + 1
    parent.insert(position, child)


def ensure(parent: etree._Element, tag: str, order: Sequence[str]) -> etree._Element:
    el = parent.find(tag)
    if el is None:
        el = etree.Element(tag)
        insert(parent, el, order)
    return el


def set_text(
    parent: etree._Element, tag: str, text: str | None, order: Sequence[str]
) -> etree._Element | None:
    if text is None:
        for el in parent.findall(tag):
            parent.remove(el)
        return None
    el = ensure(parent, tag, order)
    for sub in list(el):
        el.remove(sub)
    el.text = text
    return el


def set_attr(el: etree._Element, name: str, value: str | bool | None) -> None:
    if value is None:
        el.attrib.pop(name, None)
    elif isinstance(value, bool):
        el.set(name, "yes" if value else "no")
    else:
        el.set(name, value)


def sync_list(
    devices: etree._Element,
    tag: str,
    items: Sequence[Item],
    write: Callable[[etree._Element, Item], None],
    order: Sequence[str],
) -> None:
    """Write item i into the i-th ``<tag>``; add or drop elements at the end of the run."""
    existing = devices.findall(tag)
    for index, item in enumerate(items):
        if index < len(existing):
            el = existing[index]
        else:
            el = etree.Element(tag)
            insert(devices, el, order)
        write(el, item)
    for el in existing[len(items) :]:
        devices.remove(el)
