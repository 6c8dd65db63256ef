"""Expectations are a frozen value a broker can store: they round-trip through JSON exactly,
refuse unknown keys and malformed values, and parse TCB minimums from the command line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import UsageError
from sevlaunch.owner.snp.expectations import SnpExpectations, TcbMinimum
from tests.strategies import fixed

expectations = st.builds(
    SnpExpectations,
    measurements=st.lists(fixed(48), max_size=3).map(tuple),
    report_data=st.none() | st.binary(max_size=64),
    host_data=st.none() | st.binary(max_size=32),
    vmpl=st.none() | st.integers(0, 3),
    allowed_policies=st.lists(st.integers(0, 2**64 - 1), max_size=3).map(tuple),
    min_abi=st.tuples(st.integers(0, 255), st.integers(0, 255)),
    min_reported_tcb=st.builds(TcbMinimum, *[st.integers(0, 255)] * 5),
    vlek_csp_ids=st.lists(st.text(max_size=10), max_size=2).map(tuple),
    trusted_id_keys=st.lists(fixed(48), max_size=2).map(tuple),
    family_id=st.none() | fixed(16),
    allowed_platform_info=st.none() | st.integers(0, 2**64 - 1),
    min_firmware=st.tuples(*[st.integers(0, 255)] * 3),
    require_crl=st.booleans(),
)


@given(expectations)
def test_json_round_trip(exp: SnpExpectations) -> None:
    assert SnpExpectations.from_json(exp.to_json()) == exp
    assert hash(exp) == hash(SnpExpectations.from_json(exp.to_json()))


def test_refusals() -> None:
    with pytest.raises(UsageError, match="unknown SNP expectation"):
        SnpExpectations.from_dict({"measurement": "00"})
    with pytest.raises(UsageError, match="measurements"):
        SnpExpectations.from_dict({"measurements": "00"})
    with pytest.raises(UsageError, match="report_data"):
        SnpExpectations.from_dict({"report_data": "zz"})
    with pytest.raises(UsageError, match="48 bytes"):
        SnpExpectations(measurements=(b"x",))
    with pytest.raises(UsageError, match="not JSON"):
        SnpExpectations.from_json("{")
    with pytest.raises(UsageError, match="object"):
        SnpExpectations.from_json("[]")
    with pytest.raises(UsageError):
        SnpExpectations(vmpl=4)


def test_padding() -> None:
    exp = SnpExpectations(report_data=b"\x01" * 48, host_data=b"\x02")
    assert exp.padded_report_data == b"\x01" * 48 + bytes(16)
    assert exp.padded_host_data == b"\x02" + bytes(31)


def test_tcb_minimum_parse() -> None:
    assert TcbMinimum.parse("bl=3,tee=0,snp=8,ucode=0x73") == TcbMinimum(3, 0, 8, 0x73)
    assert TcbMinimum.parse("fmc=1").fmc == 1
    with pytest.raises(UsageError):
        TcbMinimum.parse("speed=3")
    with pytest.raises(UsageError):
        TcbMinimum.parse("bl=x")
