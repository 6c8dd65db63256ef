"""The host's SEV-SNP records on the wire: launch security info (libvirt 10.5's names, no
measurement) and node SNP info round trip exactly, and every malformed object is a typed error
naming its key (mutation fuzzing)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.protocol import NodeSnpInfo, SnpLaunchSecurityInfo

u8 = st.integers(0, 0xFF)
u64 = st.integers(0, 2**64 - 1)
launch_infos = st.builds(SnpLaunchSecurityInfo, u8, u8, u8, u64)
node_infos = st.builds(
    NodeSnpInfo,
    st.lists(st.sampled_from(["sev", "sev-snp", "s390-pv"]), unique=True).map(tuple),
    st.none() | st.sampled_from(["UNINIT", "INIT", "WORKING"]),
    st.none() | u8,
    st.none() | u8,
    st.none() | u8,
    st.none() | u64,
    st.none() | u64,
    st.none() | st.integers(0, 1000),
)


@given(launch_infos)
def test_snp_launch_security_info_round_trips_without_a_measurement(
    info: SnpLaunchSecurityInfo,
) -> None:
    wire = info.to_wire()
    assert set(wire) == {"sev-api-major", "sev-api-minor", "sev-build-id", "sev-snp-policy"}
    assert SnpLaunchSecurityInfo.from_wire(wire) == info


@given(node_infos)
def test_node_snp_info_round_trips(info: NodeSnpInfo) -> None:
    assert NodeSnpInfo.from_wire(info.to_wire()) == info
    assert info.snp == ("sev-snp" in info.sectypes)


GOOD_LAUNCH = SnpLaunchSecurityInfo(1, 55, 3, 0x30000).to_wire()
GOOD_NODE = NodeSnpInfo(("sev", "sev-snp"), "INIT", 1, 55, 3, 7, 7, 0).to_wire()
BAD_VALUES: tuple[object, ...] = ("x", True, [], 1.5, {})


@pytest.mark.parametrize("key", sorted(GOOD_LAUNCH))
def test_launch_info_mutations_name_the_key(key: str) -> None:
    dropped: dict[str, object] = {k: v for k, v in GOOD_LAUNCH.items() if k != key}
    wires: list[dict[str, object]] = [dropped, *({**GOOD_LAUNCH, key: b} for b in BAD_VALUES)]
    for wire in wires:
        with pytest.raises(FormatError) as caught:
            SnpLaunchSecurityInfo.from_wire(wire)
        assert caught.value.field == key


@pytest.mark.parametrize("key", sorted(GOOD_NODE))
def test_node_info_mutations_name_the_key(key: str) -> None:
    for bad in BAD_VALUES:
        if (key, bad) in (("snp-state", "x"), ("launch-security-types", [])):
            continue  # any text is a state name; a node may have no launch security type
        with pytest.raises(FormatError) as caught:
            NodeSnpInfo.from_wire({**GOOD_NODE, key: bad})
        assert caught.value.field == key
    with pytest.raises(FormatError, match="launch-security-types"):
        NodeSnpInfo.from_wire({k: v for k, v in GOOD_NODE.items() if k != "launch-security-types"})
    with pytest.raises(FormatError, match="launch-security-types"):
        NodeSnpInfo.from_wire({**GOOD_NODE, "launch-security-types": ["sev", 1]})
