"""The SECRETS page round-trips, exposes the VMPCKs and Linux's counters, and refuses bytes
in its reserved tail."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import SecretsPage
from tests.snp_strategies import secrets_pages
from tests.strategies import mutated, parse_or_error


@given(secrets_pages, st.data())
@settings(max_examples=100, deadline=None)
def test_round_trip_and_mutations(page: SecretsPage, data: st.DataObject) -> None:
    raw = page.to_bytes()
    assert len(raw) == 4096
    assert SecretsPage.from_bytes(raw) == page
    bent = data.draw(mutated(raw))
    parsed = parse_or_error(lambda: SecretsPage.from_bytes(bent))
    assert isinstance(parsed, FormatError) or parsed.to_bytes() == bent


def test_fields() -> None:
    keys = [bytes([i]) * 32 for i in range(4)]
    os_area = (5).to_bytes(4, "little") + (7).to_bytes(4, "little") + bytes(88)
    page = SecretsPage(
        0xA00F11, keys[0], keys[1], keys[2], keys[3], os_area=os_area, gosvw=b"w" * 16
    )
    raw = page.to_bytes()
    assert raw[0x20:0x40] == keys[0]
    assert raw[0x80:0xA0] == keys[3]
    assert raw[0x10:0x20] == b"w" * 16
    assert page.vmpck(2) == keys[2]
    assert page.msg_seqno(0) == 5
    assert page.msg_seqno(1) == 7
    with pytest.raises(FormatError):
        page.vmpck(4)
    bad = bytearray(raw)
    bad[0x200] = 1
    with pytest.raises(FormatError, match="reserved"):
        SecretsPage.from_bytes(bytes(bad))
