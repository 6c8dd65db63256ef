"""Reading untrusted XML safely, and libvirt's readers of numbers, UUIDs and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import MAX_DOCUMENT, parse_document, scale_to_bytes
from sevlaunch.host.domxml.xmlutil import parse_uint, parse_uuid, prop_choice, prop_onoff, text_of


def test_entities_dtds_and_huge_documents_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOP SECRET")
    xxe = f'<!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]><domain>&x;</domain>'
    with pytest.raises(DomainXMLError, match="entities and processing instructions are refused"):
        parse_document(xxe, "domain")
    with pytest.raises(DomainXMLError, match="byte limit"):
        parse_document(b"<domain>" + b" " * MAX_DOCUMENT + b"</domain>", "domain")
    with pytest.raises(
        DomainXMLError, match="unexpected root element <secret>, expecting <domain>"
    ):
        parse_document("<secret/>", "domain")
    with pytest.raises(DomainXMLError, match=r"\(domain_definition\):1:"):
        parse_document("<domain", "domain")


def test_numbers_uuids_and_sizes() -> None:
    assert (
        parse_uint("0x1f", base=16),
        parse_uint("31"),
        parse_uint("x"),
        parse_uint(str(1 << 33)),
    ) == (31, 31, None, None)
    assert (
        str(parse_uuid("C7A5FDBDEDAF9455926AD65C16DB1809", "uuid"))
        == "c7a5fdbd-edaf-9455-926a-d65c16db1809"
    )
    with pytest.raises(DomainXMLError, match="malformed uuid element"):
        parse_uuid("c7a5", "uuid")
    assert scale_to_bytes("64", "MiB", where="memory") == 64 << 20
    assert scale_to_bytes("1", "GB", where="memory") == 10**9
    assert scale_to_bytes("2", None, where="memory") == 2048
    with pytest.raises(DomainXMLError, match="unknown suffix 'parsecs'"):
        scale_to_bytes("1", "parsecs", where="memory")


def test_attribute_readers() -> None:
    el = parse_document("<log file='/x' append='on'><a>t<b>u</b></a></log>", "log")
    assert prop_onoff(el, "append") is True
    assert prop_choice(el, "file", ("/x",)) == "/x"
    assert text_of(el.find("a")) == "tu"
    assert text_of(None) is None
    with pytest.raises(DomainXMLError, match="Missing required attribute 'mode' in element 'log'"):
        prop_choice(el, "mode", ("a",), required=True)
