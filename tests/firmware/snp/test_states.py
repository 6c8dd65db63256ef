"""Every (SNP platform state, command) and (guest state, command) pair against the tables:
allowed pairs pass the admission, the others answer the table's status and change nothing."""

from __future__ import annotations

import pytest

from sevlaunch.firmware import Firmware, SparseMemory
from sevlaunch.firmware.snp.guest import SnpGuestState
from sevlaunch.firmware.snp.states import (
    IMPLEMENTED,
    SNP_GUEST_COMMANDS,
    SNP_GUEST_TABLE,
    SNP_PLATFORM_TABLE,
)
from sevlaunch.formats.snp.commands import SnpCommand, snp_buffer_size
from sevlaunch.formats.states import PlatformState
from sevlaunch.formats.status import Status
from tests.firmware.conftest import MakeFw
from tests.firmware.snp.conftest import MakeSnpFw
from tests.firmware.snp.helpers import GCTX, SnpGuestLaunch

COMMANDS = sorted(IMPLEMENTED)


def _buffer(command: SnpCommand, gctx: int = GCTX) -> bytes:
    size = snp_buffer_size(command) or 0
    raw = bytearray(size)
    if command in SNP_GUEST_COMMANDS:
        raw[:8] = gctx.to_bytes(8, "little")
    if command is SnpCommand.SNP_COMMIT:
        raw[:4] = (4).to_bytes(4, "little")
    return bytes(raw)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_uninit_platform_row(make_fw: MakeFw, command: SnpCommand) -> None:
    fw = make_fw()
    status, _ = fw.execute(command, _buffer(command), SparseMemory())
    allowed = command in SNP_PLATFORM_TABLE[PlatformState.UNINIT]
    assert (status is not Status.INVALID_PLATFORM_STATE) == allowed, status


@pytest.mark.parametrize("command", sorted(SNP_GUEST_COMMANDS), ids=lambda c: c.name)
def test_a_missing_context_is_invalid_guest(snp_fw: Firmware, command: SnpCommand) -> None:
    status, _ = snp_fw.execute(command, _buffer(command), SparseMemory())
    assert status is Status.INVALID_GUEST


def _guest_in(fw: Firmware, state: SnpGuestState) -> SnpGuestLaunch:
    guest = SnpGuestLaunch(fw)
    fw.snp.gctx_create(guest.gctx)
    if state >= SnpGuestState.LAUNCH:
        fw.snp.launch_start(guest.gctx)
    if state is SnpGuestState.RUNNING:
        fw.snp.launch_finish(guest.gctx)
    return guest


@pytest.mark.parametrize("state", list(SnpGuestState), ids=lambda s: s.name)
@pytest.mark.parametrize("command", sorted(SNP_GUEST_COMMANDS), ids=lambda c: c.name)
def test_guest_rows(make_snp_fw: MakeSnpFw, state: SnpGuestState, command: SnpCommand) -> None:
    fw = make_snp_fw()
    guest = _guest_in(fw, state)
    status, _ = fw.execute(command, _buffer(command, guest.gctx), guest.memory)
    if command in SNP_GUEST_TABLE[state]:
        assert status is not Status.INVALID_GUEST_STATE
    else:
        assert status is Status.INVALID_GUEST_STATE
        assert fw.snp.info()["guests"] == 1
