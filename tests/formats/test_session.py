"""LAUNCH_START's session blob and LAUNCH_MEASURE's output: fixed layouts, exact round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import Measurement, Session
from tests.strategies import measurements, parse_or_error, sessions


@given(sessions)
@settings(max_examples=200, deadline=None)
def test_session_round_trip(session: Session) -> None:
    data = session.to_bytes()
    assert len(data) == 128
    assert Session.from_bytes(data) == session
    assert data[0x30:0x40] == session.wrap_iv
    assert data[0x60:] == session.policy_mac


@given(measurements)
@settings(max_examples=200, deadline=None)
def test_measurement_round_trip(measurement: Measurement) -> None:
    data = measurement.to_bytes()
    assert Measurement.from_bytes(data) == measurement
    assert data[32:] == measurement.mnonce


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_fuzz_only_format_errors(data: bytes) -> None:
    for value in (
        parse_or_error(lambda: Session.from_bytes(data)),
        parse_or_error(lambda: Measurement.from_bytes(data)),
    ):
        if isinstance(value, FormatError):
            assert value.field == "length"
            assert value.value == len(data)
        else:
            assert value.to_bytes() == data


def test_field_sizes_are_checked() -> None:
    with pytest.raises(FormatError) as err:
        Session(bytes(16), bytes(31), bytes(16), bytes(32), bytes(32))
    assert (err.value.structure, err.value.field) == ("session blob", "wrap_tk")
    with pytest.raises(FormatError) as err:
        Measurement(bytes(32), bytes(15))
    assert err.value.field == "mnonce"
