"""Guest policy: every u32 round-trips, flag names parse, reserved bits are refused loudly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import Policy, PolicyFlags
from tests.strategies import parse_or_error, policies


@given(policies())
@settings(max_examples=300, deadline=None)
def test_round_trip_from_value(policy: Policy) -> None:
    data = policy.to_bytes()
    assert Policy.from_bytes(data, allow_reserved=True) == policy
    assert Policy.from_int(policy.to_int(), allow_reserved=True) == policy
    if not policy.reserved:
        assert Policy.parse(hex(policy.to_int())) == policy
        assert Policy.parse(str(policy.to_int())) == policy
        names = [f.name.lower() for f in PolicyFlags if f in policy.flags and f.name]
        text = ",".join([*names, f"api={policy.api_major}.{policy.api_minor}"])
        assert Policy.parse(text) == policy


@given(st.binary(min_size=4, max_size=4))
@settings(max_examples=300, deadline=None)
def test_round_trip_from_bytes(data: bytes) -> None:
    assert Policy.from_bytes(data, allow_reserved=True).to_bytes() == data


@given(st.binary(max_size=8))
@settings(max_examples=300, deadline=None)
def test_fuzz_only_format_errors(data: bytes) -> None:
    policy = parse_or_error(lambda: Policy.from_bytes(data))
    if isinstance(policy, FormatError):
        assert policy.structure == "guest policy"
        assert policy.field in ("length", "reserved")
    else:
        assert policy.to_bytes() == data


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("3", 3),
        ("0x5", 5),
        ("nodbg", 0x1),
        ("nodbg,noks", 0x3),
        ("NODBG|NOKS|ES", 0x7),
        (" nosend, domain ,sev ", 0x38),
        ("nodbg,api=1.40", 0x1 | 1 << 16 | 40 << 24),
        ("", 0),
    ],
)
def test_parse(text: str, value: int) -> None:
    assert Policy.parse(text).to_int() == value


def test_flags_and_properties() -> None:
    policy = Policy.parse("noks,es")
    assert policy.requires_es
    assert policy.allows_debug
    assert not policy.allows_key_sharing
    assert policy.describe() == "0x0006 (noks,es)"
    assert Policy().describe() == "0x0000 (none)"
    assert Policy(PolicyFlags.NODBG, 1, 40).describe() == "0x28010001 (nodbg,api>=1.40)"


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("0x40", "reserved", "bits 6-15 must be zero"),  # a number, not an unknown flag
        ("0x8000", "reserved", "bits 6-15 must be zero"),
        ("-1", "policy", "32-bit"),
        ("0x100000000", "policy", "32-bit"),
        ("nodbg,turbo", "flags", "unknown flag 'turbo'"),
        ("api=1", "api", "MAJOR.MINOR"),
        ("api=1.300", "api_minor", "0..0xff"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, field: str, needle: str) -> None:
    with pytest.raises(FormatError) as err:
        Policy.parse(text)
    assert err.value.field == field
    assert needle in str(err.value)


def test_reserved_bits_are_refused_unless_allowed() -> None:
    with pytest.raises(FormatError) as err:
        Policy.from_int(0x40)
    assert err.value.value == 0x40
    assert Policy.from_int(0x40, allow_reserved=True).reserved == 0x40
    with pytest.raises(FormatError):
        Policy(reserved=0x1)
    with pytest.raises(FormatError):
        Policy(api_major=256)
