"""The owner's launch id in a domain's metadata: written once, read back, kept by the host's
XML round trip, and never taken from a malformed element."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.host.domxml import Domain
from sevlaunch.host.launchref import NS, LaunchRef, launch_ref, with_launch_ref

XML = """<domain type='kvm'><name>vm</name><memory unit='MiB'>256</memory>
<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"""
IDS = st.text("0123456789abcdef", min_size=1, max_size=64)


@given(IDS, IDS)
def test_written_then_read_back_and_replaced(first: str, second: str) -> None:
    once = with_launch_ref(XML, first, "http://127.0.0.1:8470")
    assert launch_ref(once) == LaunchRef(first, "http://127.0.0.1:8470")
    twice = with_launch_ref(once, second)
    assert launch_ref(twice) == LaunchRef(second)
    assert twice.count(NS) == 1  # one element in its namespace, as libvirt's metadata API has it


def test_the_host_keeps_it_through_its_own_round_trip() -> None:
    xml = with_launch_ref(XML, "0123456789abcdef0123456789abcdef")
    kept = Domain.from_xml(xml).to_xml()
    assert launch_ref(kept) == LaunchRef("0123456789abcdef0123456789abcdef")
    assert kept.index("<name>") < kept.index("<metadata>")  # where libvirt puts it


def test_no_reference_and_bad_ones() -> None:
    assert launch_ref(XML) is None
    hostile = XML.replace(
        "</domain>", f"<metadata><x:launch xmlns:x='{NS}' id='a&quot;&lt;b'/></metadata></domain>"
    )
    assert launch_ref(hostile) is None
    with pytest.raises(FormatError) as caught:
        with_launch_ref(XML, "not an id")
    assert caught.value.value == "not an id"
    for page in ("javascript:alert(1)", 'http://x/"><b>', "ftp://x"):
        with pytest.raises(FormatError):
            with_launch_ref(XML, "abc", page)
    tricked = XML.replace(
        "</domain>",
        f"<metadata><x:launch xmlns:x='{NS}' id='abc' broker='javascript:x'/></metadata></domain>",
    )
    assert launch_ref(tricked) == LaunchRef("abc")  # the id, never a script address
