"""SNP command IDs, buffer layouts (Linux psp-sev.h) and SNP_PLATFORM_STATUS."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.commands import CommandBuffer
from sevlaunch.formats.snp.commands import (
    SNP_BUFFERS,
    STATUS_SIZE,
    SnpCommand,
    SnpLaunchFinishBuffer,
    SnpLaunchStartBuffer,
    SnpLaunchUpdateBuffer,
    SnpPlatformStatus,
    is_snp_command,
    snp_buffer_size,
)
from tests.strategies import mutated, parse_or_error

# sizeof() of the packed psp-sev.h structs
SIZES = {
    SnpCommand.SNP_PLATFORM_STATUS: 8,
    SnpCommand.SNP_GCTX_CREATE: 8,
    SnpCommand.SNP_DECOMMISSION: 8,
    SnpCommand.SNP_PAGE_RECLAIM: 8,
    SnpCommand.SNP_INIT_EX: 64,
    SnpCommand.SNP_SHUTDOWN_EX: 8,
    SnpCommand.SNP_ACTIVATE: 12,
    SnpCommand.SNP_LAUNCH_START: 0x30,
    SnpCommand.SNP_LAUNCH_UPDATE: 0x20,
    SnpCommand.SNP_LAUNCH_FINISH: 0x40,
    SnpCommand.SNP_GUEST_REQUEST: 24,
    SnpCommand.SNP_DBG_DECRYPT: 24,
    SnpCommand.SNP_DBG_ENCRYPT: 24,
    SnpCommand.SNP_CONFIG: 64,
    SnpCommand.SNP_COMMIT: 4,
    SnpCommand.SNP_VLEK_LOAD: 16,
}


def test_sizes_and_ids() -> None:
    assert {c: cls.size() for c, cls in SNP_BUFFERS.items()} == SIZES
    assert snp_buffer_size(SnpCommand.SNP_INIT) == 0
    assert snp_buffer_size(SnpCommand.SNP_PAGE_MOVE) is None
    ids = (SnpCommand.SNP_INIT, SnpCommand.SNP_LAUNCH_START, SnpCommand.SNP_GUEST_REQUEST)
    assert ids == (0x81, 0xA0, 0x94)
    assert (SnpCommand.SNP_CONFIG, SnpCommand.SNP_COMMIT, SnpCommand.SNP_VLEK_LOAD) == (
        0xC9,
        0xCB,
        0xCD,
    )
    assert is_snp_command(0xCE)
    assert not is_snp_command(0x36)
    assert not is_snp_command(0x87)


def test_known_layouts() -> None:
    start = SnpLaunchStartBuffer(0x1000, 0x30000, 0, 0, 0, b"W" * 16).to_bytes()
    assert start == struct.pack("<QQQII", 0x1000, 0x30000, 0, 0, 0) + b"W" * 16
    update = SnpLaunchUpdateBuffer.page(0x1000, 0x2000, 6)
    assert update.to_bytes() == struct.pack("<QIIQII", 0x1000, 6 << 1, 0, 0x2000, 0, 0)
    assert (update.page_type, update.page_size_2m, update.imi_page) == (6, False, 0)
    perms = SnpLaunchUpdateBuffer(perms=0x030201 << 8)
    assert perms.vmpl_perms == (1, 2, 3)
    finish = SnpLaunchFinishBuffer(1, 2, 3, 0b111, b"H" * 32)
    assert finish.to_bytes() == struct.pack("<QQQQ", 1, 2, 3, 7) + b"H" * 32
    assert finish.has(SnpLaunchFinishBuffer.VCEK_DISABLED)


def test_platform_status_layout() -> None:
    status = SnpPlatformStatus(1, 55, 1, 29, 3, 0xDB18, 0x4, rmp_flags=1, flags=0b100)
    raw = status.to_bytes()
    assert len(raw) == STATUS_SIZE
    assert raw[:4] == bytes((1, 55, 1, 1))
    assert raw[4:8] == (29).to_bytes(4, "little")
    assert raw[0x10:0x18] == (0xDB18).to_bytes(8, "little")
    assert raw[0x18:0x20] == (4).to_bytes(8, "little")
    parsed = SnpPlatformStatus.from_bytes(raw)
    assert parsed == status
    assert parsed.rmp_initialized
    assert parsed.vlek_loaded


@pytest.mark.parametrize("cls", sorted(set(SNP_BUFFERS.values()), key=str))
@given(data=st.data())
def test_round_trip_and_mutations(cls: type[CommandBuffer], data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=cls.size(), max_size=cls.size()))
    parsed = cls.from_bytes(raw)
    again = parsed.to_bytes()
    assert cls.from_bytes(again) == parsed
    for a, b in zip(raw, again, strict=True):  # only reserved bytes may differ: zero
        assert b in (a, 0)
    bent = data.draw(mutated(raw))
    result = parse_or_error(lambda: cls.from_bytes(bent))
    if isinstance(result, FormatError):
        assert len(bent) != cls.size()


@given(data=st.binary(min_size=0, max_size=40))
def test_status_parser_refuses_other_lengths(data: bytes) -> None:
    result = parse_or_error(lambda: SnpPlatformStatus.from_bytes(data))
    assert isinstance(result, FormatError) == (len(data) != STATUS_SIZE)
