"""The 64-bit guest policy, PLATFORM_INFO and KEY_INFO keep every bit, name the known ones
and report what makes a policy invalid."""

from __future__ import annotations

import pytest
from hypothesis import given

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import KeyInfo, PlatformInfo, SigningKey, SnpPolicy, SnpPolicyFlags
from tests.strategies import uint


@given(uint(64))
def test_policy_round_trip(value: int) -> None:
    policy = SnpPolicy.from_int(value)
    assert policy.to_int() == value
    assert SnpPolicy.parse(hex(value)) == policy
    assert int.from_bytes(policy.to_bytes(), "little") == value


@given(uint(64))
def test_platform_info_round_trip(value: int) -> None:
    assert PlatformInfo.from_int(value).to_int() == value


@given(uint(32))
def test_key_info_round_trip(value: int) -> None:
    assert KeyInfo.from_int(value).to_int() == value


def test_policy_meaning() -> None:
    policy = SnpPolicy.from_int(0xB0000)
    assert policy.has(SnpPolicyFlags.DEBUG)
    assert policy.has(SnpPolicyFlags.SMT)
    assert policy.problems() == []
    assert SnpPolicy.from_int(0x3001F).abi_minor == 31
    assert SnpPolicy.from_int(0x10000).problems() == ["bit 17 must be one"]
    assert "reserved bits" in SnpPolicy.from_int(0x30000 | 1 << 26).problems()[0]
    assert SnpPolicy().to_int() == 0x30000
    assert SnpPolicy.from_int(0x30000).describe() == "0x30000 (smt,abi>=0.0)"


def test_policy_errors() -> None:
    with pytest.raises(FormatError):
        SnpPolicy.parse("lots")
    with pytest.raises(FormatError):
        SnpPolicy.from_int(1 << 64)
    with pytest.raises(FormatError):
        SnpPolicy(abi_major=256)


def test_platform_info_turin_bit6() -> None:
    info = PlatformInfo.from_int(0x67)
    assert "bit6" in info.describe()
    assert info.unknown == 0


def test_key_info() -> None:
    assert KeyInfo.from_int(0).signer is SigningKey.VCEK
    assert KeyInfo.from_int(4).signer is SigningKey.VLEK
    assert KeyInfo.from_int(0x1C).signer is SigningKey.NONE
    assert KeyInfo.from_int(8).signer is None
    info = KeyInfo.from_int(0x23)
    assert info.author_key_en
    assert info.mask_chip_key
    assert info.reserved == 0x20
