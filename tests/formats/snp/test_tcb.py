"""TCB_VERSION: both layouts round-trip every u64; the real Milan and Turin examples of
sev-snp.md decode as documented; generations come from CPUID as the three tools map them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import Generation, TcbLayout, TcbVersion
from tests.snp_strategies import tcb_versions
from tests.strategies import uint


@given(tcb_versions())
@settings(max_examples=300, deadline=None)
def test_round_trip(tcb: TcbVersion) -> None:
    assert TcbVersion.from_bytes(tcb.to_bytes(), tcb.layout) == tcb
    assert TcbVersion.from_int(tcb.to_int(), tcb.layout) == tcb


@given(uint(64))
def test_every_u64(value: int) -> None:
    for layout in TcbLayout:
        assert TcbVersion.from_int(value, layout).to_int() == value


def test_real_examples() -> None:
    turin = TcbVersion.from_bytes(bytes.fromhex("0001000200000047"), TcbLayout.TURIN)
    assert turin.components() == {"fmc": 0, "bootloader": 1, "tee": 0, "snp": 2, "microcode": 0x47}
    milan = TcbVersion.from_bytes(bytes.fromhex("0300000000000873"), TcbLayout.MILAN)
    assert milan.components() == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73}
    assert milan.reserved == 0
    assert milan.describe() == "bootloader=3 tee=0 snp=8 ucode=0x73"


def test_ordering_is_component_wise() -> None:
    a = TcbVersion(TcbLayout.MILAN, 3, 0, 8, 0x73)
    b = TcbVersion(TcbLayout.MILAN, 3, 0, 8, 0xCE)
    c = TcbVersion(TcbLayout.MILAN, 4, 0, 7, 0xCE)
    assert a.at_most(b)
    assert not b.at_most(a)
    assert not c.at_most(b)
    assert not b.at_most(c)
    assert c.lower_components(b) == ["snp"]


@pytest.mark.parametrize(
    ("family", "model", "gen"),
    [
        (0x19, 0x01, Generation.MILAN),
        (0x19, 0x0F, Generation.MILAN),
        (0x19, 0x11, Generation.GENOA),
        (0x19, 0xA0, Generation.GENOA),
        (0x19, 0xAF, Generation.GENOA),
        (0x1A, 0x00, Generation.TURIN),
        (0x1A, 0x11, Generation.TURIN),
        (0x19, 0x20, None),
        (0x1A, 0x12, None),
        (0x17, 0x31, None),
    ],
)
def test_generation_from_cpuid(family: int, model: int, gen: Generation | None) -> None:
    assert Generation.from_cpuid(family, model) is gen


def test_bad_values() -> None:
    with pytest.raises(FormatError):
        TcbVersion(TcbLayout.MILAN, 1, 1, 1, 1, fmc=0)
    with pytest.raises(FormatError):
        TcbVersion(TcbLayout.TURIN, 1, 1, 1, 1)
    with pytest.raises(FormatError):
        TcbVersion(TcbLayout.MILAN, 256, 1, 1, 1)
    with pytest.raises(FormatError):
        TcbVersion(TcbLayout.MILAN, 1, 1, 1, 1, reserved=0xFF)
    with pytest.raises(FormatError, match="8 bytes"):
        TcbVersion.from_bytes(b"1234", TcbLayout.MILAN)
    assert Generation.parse("turin") is Generation.TURIN
    with pytest.raises(FormatError):
        Generation.parse("rome")
    assert Generation.TURIN.hwid_size == 8
