"""``Firmware.execute`` on raw buffers: the length-query convention, unknown and unsupported
commands, malformed buffers, addresses (doc §0)."""

from __future__ import annotations

import pytest

from sevlaunch.errors import AddressError
from sevlaunch.firmware import Firmware, PlatformState, SparseMemory
from sevlaunch.formats.commands import (
    Command,
    GetIdBuffer,
    InitBuffer,
    InitExBuffer,
    LaunchMeasureBuffer,
    PdhCertExportBuffer,
    PekCsrBuffer,
    PlatformStatusBuffer,
)
from sevlaunch.formats.status import Status

UNSUPPORTED = [
    Command.DOWNLOAD_FIRMWARE,
    Command.NOP,
    Command.RING_BUFFER,
    Command.COPY,
    Command.ACTIVATE_EX,
    Command.SEND_START,
    Command.SEND_UPDATE_DATA,
    Command.SEND_UPDATE_VMSA,
    Command.SEND_FINISH,
    Command.SEND_CANCEL,
    Command.RECEIVE_START,
    Command.RECEIVE_UPDATE_DATA,
    Command.RECEIVE_UPDATE_VMSA,
    Command.RECEIVE_FINISH,
    Command.SWAP_OUT,
    Command.SWAP_IN,
]


class FailingMemory:
    def read(self, paddr: int, length: int) -> bytes:
        raise AddressError(paddr, length, "no RAM here")

    def write(self, paddr: int, data: bytes) -> None:
        raise AddressError(paddr, len(data), "no RAM here")


@pytest.mark.parametrize("command", UNSUPPORTED, ids=lambda c: c.name)
def test_unimplemented_commands_are_unsupported(es_fw: Firmware, command: Command) -> None:
    assert es_fw.execute(command, bytes(64), SparseMemory()) == (Status.UNSUPPORTED, bytes(64))


@pytest.mark.parametrize("command", [0x00, 0x10, 0x26, 0x37, 0x87, 0xA3, 0xFFFF])
def test_unknown_ids_are_invalid_command(fw: Firmware, command: int) -> None:
    assert fw.execute(command, b"x", SparseMemory()) == (Status.INVALID_COMMAND, b"x")


def test_wrong_buffer_size_is_invalid_param(fw: Firmware) -> None:
    status, _ = fw.execute(Command.PLATFORM_STATUS, bytes(11), SparseMemory())
    assert status is Status.INVALID_PARAM
    status, _ = fw.execute(Command.SHUTDOWN, b"\0", SparseMemory())
    assert status is Status.INVALID_PARAM


@pytest.mark.parametrize(
    ("command", "buffer", "written"),
    [
        (Command.PEK_CSR, PekCsrBuffer(0, 0), PekCsrBuffer(0, 0x824)),
        (Command.GET_ID, GetIdBuffer(0, 0), GetIdBuffer(0, 64)),
        (
            Command.PDH_CERT_EXPORT,
            PdhCertExportBuffer(0, 0, 0, 0),
            PdhCertExportBuffer(0, 0x824, 0, 0x186C),
        ),
        (
            Command.PDH_CERT_EXPORT,
            PdhCertExportBuffer(0x1000, 0x824, 0x2000, 0x186B),
            PdhCertExportBuffer(0x1000, 0x824, 0x2000, 0x186C),
        ),
    ],
)
def test_length_query_writes_back_required_lengths(
    fw: Firmware, command: Command, buffer: PekCsrBuffer, written: PekCsrBuffer
) -> None:
    fw.init()
    mem = SparseMemory()
    assert fw.execute(command, buffer.to_bytes(), mem) == (
        Status.INVALID_LENGTH,
        written.to_bytes(),
    )
    assert mem.pages_in_use == 0  # nothing was written


def test_measure_length_query_does_not_change_state(es_fw: Firmware) -> None:
    handle = es_fw.launch_start(0)
    status, written = es_fw.execute(
        Command.LAUNCH_MEASURE, LaunchMeasureBuffer(handle, 0, 0).to_bytes(), SparseMemory()
    )
    assert status is Status.INVALID_LENGTH
    assert LaunchMeasureBuffer.from_bytes(written).length == 0x30
    assert es_fw.guest_status(handle).state == 1  # still LUPDATE


def test_get_id_with_a_two_socket_buffer_gets_one_id(fw: Firmware) -> None:
    mem = SparseMemory()
    status, written = fw.execute(Command.GET_ID, GetIdBuffer(0x1000, 128).to_bytes(), mem)
    assert status is Status.SUCCESS
    assert GetIdBuffer.from_bytes(written).length == 64
    assert mem.read(0x1000, 64) == fw.chip_id


def test_c_bit_is_stripped_from_addresses(fw: Firmware) -> None:
    mem = SparseMemory()
    c_bit = 1 << fw.profile.cbitpos
    fw.execute(Command.GET_ID, GetIdBuffer(c_bit | 0x1000, 64).to_bytes(), mem)
    assert mem.read(0x1000, 64) == fw.chip_id


def test_unreachable_memory_is_invalid_address(fw: Firmware) -> None:
    status, _ = fw.execute(Command.GET_ID, GetIdBuffer(0x1000, 64).to_bytes(), FailingMemory())
    assert status is Status.INVALID_ADDRESS
    status, _ = fw.execute(Command.GET_ID, GetIdBuffer(1 << 60, 64).to_bytes(), SparseMemory())
    assert status is Status.INVALID_ADDRESS


def test_platform_status_layout(es_fw: Firmware) -> None:
    es_fw.launch_start(0)
    status, written = es_fw.execute(Command.PLATFORM_STATUS, bytes(12), SparseMemory())
    assert status is Status.SUCCESS
    # api 1.55, state WORKING, self-owned, ES configured, build 21, one guest
    assert written == bytes([1, 55, 2, 0, 1, 0, 0, 21, 1, 0, 0, 0])
    assert PlatformStatusBuffer.from_bytes(written).es_initialized


@pytest.mark.parametrize(
    ("buffer", "status"),
    [
        (InitBuffer(options=2), Status.INVALID_PARAM),
        (InitBuffer(options=1, tmr_paddr=0x1000, tmr_len=1 << 20), Status.INVALID_ADDRESS),
        (InitBuffer(options=1, tmr_paddr=1 << 20, tmr_len=4096), Status.INVALID_LENGTH),
        (InitExBuffer(length=0x20), Status.INVALID_LENGTH),
        (InitExBuffer(nv_paddr=0x10000, nv_len=4096), Status.INVALID_LENGTH),
        (InitExBuffer(nv_paddr=0x10000, nv_len=32768), Status.SUCCESS),
    ],
)
def test_init_checks(fw: Firmware, buffer: InitBuffer | InitExBuffer, status: Status) -> None:
    command = Command.INIT if isinstance(buffer, InitBuffer) else Command.INIT_EX
    assert fw.execute(command, buffer.to_bytes(), SparseMemory())[0] is status
    expected = PlatformState.INIT if status is Status.SUCCESS else PlatformState.UNINIT
    assert fw.state is expected


def test_verbose_execute_explains(fw: Firmware) -> None:
    status, _, reason = fw.execute_verbose(Command.PEK_GEN, b"", SparseMemory())
    assert status is Status.INVALID_PLATFORM_STATE
    assert "UNINIT" in reason
