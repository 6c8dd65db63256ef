"""Editing in place: new elements where libvirt's formatter writes them, lists kept in step."""

from __future__ import annotations

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.host.domxml.xmledit import ensure, insert, set_attr, set_text, sync_list

ORDER = ("name", "uuid", "memory", "os")


def tags(el: etree._Element) -> list[str]:
    return [str(c.tag) for c in el]


def test_elements_go_after_what_libvirt_writes_before_them() -> None:
    root = etree.fromstring("<domain><name>a</name><os/></domain>")
    insert(root, etree.Element("memory"), ORDER)
    ensure(root, "uuid", ORDER)
    assert tags(root) == ["name", "uuid", "memory", "os"]
    assert ensure(root, "uuid", ORDER) is root.find("uuid")


def test_text_and_attributes_set_or_dropped() -> None:
    root = etree.fromstring("<domain><name>a<b/></name></domain>")
    set_text(root, "name", "b", ORDER)
    assert etree.tostring(root) == b"<domain><name>b</name></domain>"
    set_text(root, "name", None, ORDER)
    assert len(root) == 0
    set_attr(root, "flag", True)
    set_attr(root, "type", "kvm")
    assert (root.get("flag"), root.get("type")) == ("yes", "kvm")
    set_attr(root, "type", None)
    assert root.get("type") is None


def test_lists_are_kept_in_step_in_place() -> None:
    root = etree.fromstring("<devices><disk n='0'/><serial/><disk n='1'/><disk n='2'/></devices>")
    sync_list(root, "disk", ["a", "b"], lambda el, v: el.set("n", v), ("disk", "serial"))
    assert [d.get("n") for d in root.findall("disk")] == ["a", "b"]
    sync_list(root, "disk", ["a", "b", "c"], lambda el, v: el.set("n", v), ("disk", "serial"))
    assert tags(root) == ["disk", "serial", "disk", "disk"]  # a new one after the last of its kind
