"""PAGE_INFO round-trips; the worked example of sev-snp.md §3.3 (first OVMF page) is exact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import PageInfo, PageType
from tests.snp_strategies import page_infos
from tests.strategies import parse_or_error


@given(page_infos)
def test_round_trip(info: PageInfo) -> None:
    assert PageInfo.from_bytes(info.to_bytes()) == info


def test_first_ovmf_page(vectors: Path) -> None:
    folder = vectors / "snp" / "sev-snp-measure"
    facts = json.loads((folder / "expected_launch_digests.json").read_text())
    image = (folder / "fixtures" / "ovmf_AmdSev_suffix.bin").read_bytes()
    info = PageInfo(bytes(48), hashlib.sha384(image).digest(), PageType.NORMAL, 0xFFFFF000)
    expected = facts["intermediates_derived"]["page_info_first_ovmf_page_hex"]
    assert info.to_bytes().hex() == expected
    assert hashlib.sha384(info.to_bytes()).hexdigest() == facts["ovmf_only_hash"]["ld"]


def test_refusals() -> None:
    good = PageInfo(bytes(48), bytes(48), PageType.ZERO, 0).to_bytes()
    with pytest.raises(FormatError, match="page_type"):
        PageInfo.from_bytes(good[:0x62] + b"\x09" + good[0x63:])
    with pytest.raises(FormatError, match="length"):
        PageInfo.from_bytes(good[:0x60] + b"\x71" + good[0x61:])
    assert not PageType.ZERO.measures_contents
    assert PageType.VMSA.measures_contents


def test_permission_bytes() -> None:
    """Reserved byte, then VMPL1, VMPL2, VMPL3 (coconut-svsm igvmmeasure, mushroom)."""
    info = PageInfo(
        bytes(48),
        bytes(48),
        PageType.NORMAL,
        0x1000,
        imi_page=1,
        vmpl1_perms=0x11,
        vmpl2_perms=0x22,
        vmpl3_perms=0x33,
    )
    raw = info.to_bytes()
    assert raw[0x62:0x68] == bytes((1, 1, 0, 0x11, 0x22, 0x33))
    assert raw[0x68:] == (0x1000).to_bytes(8, "little")


@given(st.binary(max_size=0x80))
def test_fuzz_only_format_errors(raw: bytes) -> None:
    parsed = parse_or_error(lambda: PageInfo.from_bytes(raw))
    assert isinstance(parsed, FormatError) or parsed.to_bytes() == raw
