"""The protocol's wire values: exact round trips with libvirt's key names, and a typed error
naming the key for every malformed object (mutation fuzzing)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.session import Measurement
from sevlaunch.protocol import (
    DomainInfo,
    HostEvent,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    Step,
    StepReport,
)

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFF_FFFF)

measurements = st.builds(
    Measurement, st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16)
)
launch_infos = st.builds(LaunchSecurityInfo, measurements, u8, u8, u8, u32)
node_infos = st.builds(
    NodeSevInfo,
    st.binary(min_size=1, max_size=64),
    st.binary(min_size=1, max_size=64),
    st.integers(0, 63),
    st.integers(0, 63),
    st.none() | st.binary(min_size=1, max_size=64),
    st.none() | st.integers(0, 1000),
    st.none() | st.integers(0, 1000),
)  # fmt: skip
reports = st.builds(
    StepReport,
    st.integers(0, 100),
    st.sampled_from(list(Step)),
    st.sampled_from(["ok", "failed"]),
    st.floats(0, 2e9),
    st.none() | st.floats(0, 100),
    st.text(max_size=40),
)


@given(launch_infos)
def test_launch_security_info_round_trips(info: LaunchSecurityInfo) -> None:
    wire = info.to_wire()
    assert set(wire) == {
        "sev-measurement",
        "sev-api-major",
        "sev-api-minor",
        "sev-build-id",
        "sev-policy",
    }
    assert LaunchSecurityInfo.from_wire(wire) == info
    assert base64.b64decode(info.measurement_b64) == info.measurement.to_bytes()


@given(node_infos)
def test_node_sev_info_round_trips(info: NodeSevInfo) -> None:
    assert NodeSevInfo.from_wire(info.to_wire()) == info


@given(reports)
def test_step_report_round_trips_with_the_protocol_wording(report: StepReport) -> None:
    wire = report.to_wire()
    assert (wire["name"], wire["party"]) == (report.step.title, report.step.party)
    assert StepReport.from_wire(wire) == report


@given(st.binary(min_size=1, max_size=80), st.binary(min_size=1, max_size=80))
def test_secret_release_round_trips(header: bytes, secret: bytes) -> None:
    release = SecretRelease(header, secret)
    assert SecretRelease.from_wire(release.to_wire()) == release
    assert not release.empty


def test_an_empty_release_is_what_a_broker_without_secrets_sends() -> None:
    assert SecretRelease.from_wire({"sev-secret-header": None, "sev-secret": None}).empty


def test_domain_info_and_events() -> None:
    wire = {"uuid": "u", "name": "vm", "state": "paused", "reason": "user", "launch": 2}
    info = DomainInfo.from_wire(wire)
    assert (info.active, info.to_wire()) == (True, wire)
    event = HostEvent.from_wire({"event": "launch-step", "domain": "vm", "timestamp": 5.0,
                                 "launch": 2, "step": 9, "outcome": "ok", "detail": "d"})  # fmt: skip
    step = event.step()
    assert step is not None
    assert (step.step, step.started, step.launch) == (Step.LAUNCH_MEASURED, 5.0, 2)
    assert HostEvent.from_wire({"event": "lifecycle", "domain": "vm"}).step() is None


def _mutations(wire: Mapping[str, object]) -> list[tuple[str, dict[str, object]]]:
    """Each key dropped, and each value replaced by a wrong type or bad base64."""
    out: list[tuple[str, dict[str, object]]] = []
    for key in wire:
        out.append((key, {k: v for k, v in wire.items() if k != key}))
        bads: tuple[object, ...] = ("%%%", True, [], 1.5)
        for bad in bads:
            if (isinstance(wire[key], str) and bad == "%%%") or not isinstance(wire[key], str):
                out.append((key, {**wire, key: bad}))
    return out


GOOD_INFO = LaunchSecurityInfo(Measurement(bytes(32), bytes(16)), 1, 55, 3, 1).to_wire()


@pytest.mark.parametrize(("key", "wire"), _mutations(GOOD_INFO))
def test_launch_security_info_mutations_name_the_key(key: str, wire: dict[str, object]) -> None:
    with pytest.raises(FormatError) as caught:
        LaunchSecurityInfo.from_wire(wire)
    assert caught.value.field in (key, "sev-api")


def test_out_of_range_platform_values_are_a_format_error() -> None:
    with pytest.raises(FormatError, match="api_major is a byte"):
        LaunchSecurityInfo.from_wire({**GOOD_INFO, "sev-api-major": 256})
    with pytest.raises(FormatError, match="48 bytes"):
        LaunchSecurityInfo.from_wire(
            {**GOOD_INFO, "sev-measurement": base64.b64encode(bytes(47)).decode()}
        )


GOOD_NODE = NodeSevInfo(b"p", b"c", 51, 1, b"chip", 15, 494).to_wire()


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        m
        for m in _mutations(GOOD_NODE)
        if m[0] not in ("cpu0-id", "max-guests", "max-es-guests") or m[0] in m[1]
    ],
)
def test_node_sev_info_mutations_name_the_key(key: str, wire: dict[str, object]) -> None:
    with pytest.raises(FormatError) as caught:
        NodeSevInfo.from_wire(wire)
    assert caught.value.field == key
