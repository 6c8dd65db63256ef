"""The checks every part of the domain model shares, with libvirt's words."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml.checks import check_choice, check_path, check_text, words


def test_a_choice_names_the_attribute_and_element_as_libvirt_does() -> None:
    with pytest.raises(DomainXMLError) as caught:
        check_choice("disk/target/@bus", "floppybus", ("virtio", "sata"))
    assert str(caught.value) == (
        "XML error: Invalid value for attribute 'bus' in element 'target': 'floppybus'. "
        "Expected one of: virtio, sata"
    )
    assert (caught.value.field, caught.value.value) == ("disk/target/@bus", "floppybus")
    check_choice("disk/target/@bus", None, ("virtio",))


def test_paths_are_absolute_and_text_is_what_xml_carries() -> None:
    check_path("os/kernel", "/boot/vmlinuz")
    for bad in ("vmlinuz", "./vmlinuz", ""):
        with pytest.raises(DomainXMLError, match="must be an absolute path"):
            check_path("os/kernel", bad)
    with pytest.raises(DomainXMLError, match="a character XML cannot carry"):
        check_text("os/cmdline", "a\x01b")
    assert words(" a  b\nc ") == ("a", "b", "c")
