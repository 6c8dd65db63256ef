"""Command IDs and firmware command-buffer layouts (doc §0)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.commands import (
    BUFFERS,
    ActivateBuffer,
    AttestationBuffer,
    Command,
    CommandBuffer,
    DbgBuffer,
    GuestStatusBuffer,
    LaunchSecretBuffer,
    LaunchStartBuffer,
    PdhCertExportBuffer,
    PlatformStatusBuffer,
    buffer_size,
)

# The doc's table: every layout and its size.
SIZES = {
    Command.INIT: 0x14,
    Command.INIT_EX: 0x24,
    Command.PLATFORM_STATUS: 0x0C,
    Command.PEK_CSR: 0x0C,
    Command.PEK_CERT_IMPORT: 0x1C,
    Command.PDH_CERT_EXPORT: 0x1C,
    Command.GET_ID: 0x0C,
    Command.DOWNLOAD_FIRMWARE: 0x0C,
    Command.DECOMMISSION: 0x04,
    Command.DEACTIVATE: 0x04,
    Command.LAUNCH_FINISH: 0x04,
    Command.SEND_FINISH: 0x04,
    Command.SEND_CANCEL: 0x04,
    Command.RECEIVE_FINISH: 0x04,
    Command.ACTIVATE: 0x08,
    Command.GUEST_STATUS: 0x0D,
    Command.LAUNCH_START: 0x24,
    Command.LAUNCH_UPDATE_DATA: 0x14,
    Command.LAUNCH_UPDATE_VMSA: 0x14,
    Command.LAUNCH_MEASURE: 0x14,
    Command.LAUNCH_SECRET: 0x34,
    Command.ATTESTATION: 0x24,
    Command.DBG_DECRYPT: 0x1C,
    Command.DBG_ENCRYPT: 0x1C,
}


def test_sizes_match_the_doc() -> None:
    assert {c: cls.size() for c, cls in BUFFERS.items()} == SIZES
    assert buffer_size(Command.SHUTDOWN) == 0
    assert buffer_size(Command.SEND_START) is None


def test_command_ids() -> None:
    assert (Command.INIT, Command.INIT_EX, Command.LAUNCH_START, Command.ATTESTATION) == (
        0x01,
        0x0D,
        0x30,
        0x36,
    )
    assert (Command.SEND_START, Command.RECEIVE_START, Command.DBG_ENCRYPT) == (0x40, 0x50, 0x61)
    assert len(Command) == 41


def test_known_layouts() -> None:
    assert LaunchStartBuffer(1, 2, 3, 4, 5, 6).to_bytes() == struct.pack(
        "<IIQIIQI", 1, 2, 3, 4, 0, 5, 6
    )
    assert PdhCertExportBuffer(0x10, 0x824, 0x20, 0x186C).to_bytes() == struct.pack(
        "<QIIQI", 0x10, 0x824, 0, 0x20, 0x186C
    )
    secret = LaunchSecretBuffer(1, 2, 3, 4, 5, 6, 7).to_bytes()
    assert secret == struct.pack("<IIQIIQIIQI", 1, 0, 2, 3, 0, 4, 5, 0, 6, 7)
    assert AttestationBuffer(1, 2, b"N" * 16, 3).to_bytes()[0x10:0x20] == b"N" * 16
    assert GuestStatusBuffer(1, 2, 3, 4).to_bytes()[-1] == 4
    status = PlatformStatusBuffer(1, 55, 2, 1, 1, 21, 3).to_bytes()
    assert status == bytes([1, 55, 2, 1, 1, 0, 0, 21, 3, 0, 0, 0])
    assert int.from_bytes(status[3:7], "little") == 0x101  # Linux: OWNER | CONFIG_ES


@pytest.mark.parametrize("cls", sorted(set(BUFFERS.values()), key=str))
@given(data=st.data())
def test_parse_serialise_round_trip(cls: type[CommandBuffer], data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=cls.size(), max_size=cls.size()))
    parsed = cls.from_bytes(raw)
    again = parsed.to_bytes()
    assert cls.from_bytes(again) == parsed
    # only reserved bytes may differ, and they come back as zero
    for a, b in zip(raw, again, strict=True):
        assert b in (a, 0)


@pytest.mark.parametrize("cls", sorted(set(BUFFERS.values()), key=str))
def test_wrong_size_is_a_format_error(cls: type[CommandBuffer]) -> None:
    with pytest.raises(FormatError) as info:
        cls.from_bytes(bytes(cls.size() + 1))
    assert info.value.field == "length"


def test_out_of_range_fields_are_refused() -> None:
    with pytest.raises(FormatError) as info:
        ActivateBuffer(handle=1 << 32)
    assert info.value.field == "handle"
    with pytest.raises(FormatError):
        DbgBuffer(length=-1)
    with pytest.raises(FormatError):
        AttestationBuffer(mnonce=b"short")
