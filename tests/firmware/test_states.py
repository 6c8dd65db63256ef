"""Every (state, command) pair of both state tables against its expected status (doc §9).

Allowed pairs are run with a valid buffer and must succeed and move the state as the
transition tables say; every other pair must answer the table's error and change nothing.
SUPDATE, RUPDATE and SENT cannot be reached without SEND/RECEIVE (not emulated), so those rows
are exercised by placing a guest in them directly.
"""

from __future__ import annotations

import pytest

from sevlaunch.crypto import ecc
from sevlaunch.firmware import (
    GUEST_TABLE,
    GUEST_TRANSITIONS,
    PLATFORM_TABLE,
    Firmware,
    GuestState,
    PlatformState,
    SparseMemory,
)
from sevlaunch.firmware.dispatch import HANDLERS
from sevlaunch.firmware.states import GUEST_COMMANDS, platform_after
from sevlaunch.formats import Policy, SevCert
from sevlaunch.formats.commands import (
    ActivateBuffer,
    AttestationBuffer,
    Command,
    DbgBuffer,
    GetIdBuffer,
    GuestStatusBuffer,
    HandleBuffer,
    InitBuffer,
    InitExBuffer,
    LaunchMeasureBuffer,
    LaunchSecretBuffer,
    LaunchStartBuffer,
    LaunchUpdateBuffer,
    PdhCertExportBuffer,
    PekCertImportBuffer,
    PekCsrBuffer,
    PlatformStatusBuffer,
)
from sevlaunch.formats.sevcert import Algorithm, Usage
from sevlaunch.formats.status import Status
from tests.firmware.conftest import MakeFw
from tests.firmware.helpers import OwnerSession, owner_session

IMPLEMENTED = sorted(HANDLERS)
PLATFORM_ONLY = [c for c in IMPLEMENTED if c not in GUEST_COMMANDS]
GUEST_ADDRESSED = [c for c in IMPLEMENTED if c in GUEST_COMMANDS]
ES_POLICY = Policy.parse("es").to_int()
ES_ASID = 1
SECRET_AT, HDR_AT, TRANS_AT = 0x40000, 0x50000, 0x60000


def _owner_signed_pek(fw: Firmware, mem: SparseMemory) -> bytes:
    """A PEK_CERT_IMPORT buffer with the CSR signed by a fresh owner OCA."""
    oca_key = ecc.generate_p384(5)
    csr = SevCert.from_bytes(fw.pek_csr())
    blank = SevCert(
        Usage.OCA,
        Algorithm.ECDSA_SHA256,
        ecc.from_public_key(oca_key.public_key()),
        csr.sig2,
        csr.sig2,
    )
    oca_cert = blank.with_signature(
        1, ecc.sign(oca_key, blank.signed_bytes(), Usage.OCA, Algorithm.ECDSA_SHA256)
    )
    pek = csr.with_signature(
        1, ecc.sign(oca_key, csr.signed_bytes(), Usage.OCA, Algorithm.ECDSA_SHA256)
    )
    mem.write(0x1000, pek.to_bytes())
    mem.write(0x3000, oca_cert.to_bytes())
    return PekCertImportBuffer(0x1000, 0x824, 0x3000, 0x824).to_bytes()


def platform_buffer(fw: Firmware, command: Command, mem: SparseMemory) -> bytes:
    """A valid buffer for a command that addresses no guest."""
    if fw.state is PlatformState.INIT and command is Command.PEK_CERT_IMPORT:
        return _owner_signed_pek(fw, mem)
    return {
        Command.INIT: InitBuffer(1, 1 << 20, 1 << 20).to_bytes(),
        Command.INIT_EX: InitExBuffer(options=1, tmr_paddr=1 << 20, tmr_len=1 << 20).to_bytes(),
        Command.PLATFORM_STATUS: PlatformStatusBuffer().to_bytes(),
        Command.PEK_CSR: PekCsrBuffer(0x1000, 0x824).to_bytes(),
        Command.PEK_CERT_IMPORT: PekCertImportBuffer(0x1000, 0x824, 0x3000, 0x824).to_bytes(),
        Command.PDH_CERT_EXPORT: PdhCertExportBuffer(0x1000, 0x824, 0x3000, 0x186C).to_bytes(),
        Command.GET_ID: GetIdBuffer(0x1000, 64).to_bytes(),
        Command.LAUNCH_START: LaunchStartBuffer().to_bytes(),
    }.get(command, b"")


def guest_buffer(command: Command, handle: int) -> bytes:
    return {
        Command.LAUNCH_UPDATE_DATA: LaunchUpdateBuffer(handle, 0x10000, 4096),
        Command.LAUNCH_UPDATE_VMSA: LaunchUpdateBuffer(handle, 0x20000, 4096),
        Command.LAUNCH_MEASURE: LaunchMeasureBuffer(handle, 0x1000, 0x30),
        Command.LAUNCH_SECRET: LaunchSecretBuffer(
            handle, HDR_AT, 0x34, SECRET_AT, 32, TRANS_AT, 32
        ),
        Command.ATTESTATION: AttestationBuffer(handle, 0x1000, bytes(16), 0xD0),
        Command.ACTIVATE: ActivateBuffer(handle, ES_ASID),
        Command.GUEST_STATUS: GuestStatusBuffer(handle),
        Command.DBG_DECRYPT: DbgBuffer(handle, 0x10000, 0x30000, 16),
        Command.DBG_ENCRYPT: DbgBuffer(handle, 0x10000, 0x30000, 16),
    }.get(command, HandleBuffer(handle)).to_bytes()


def guest_in(fw: Firmware, state: GuestState, command: Command, mem: SparseMemory) -> int:
    """An SEV-ES guest (debug allowed) in ``state``, active unless ``command`` needs it not."""
    owner: OwnerSession = owner_session(fw.pdh_cert_export()[0], ES_POLICY)
    handle = fw.launch_start(ES_POLICY, owner.godh, owner.session)
    fw.activate(handle, ES_ASID)
    if state in (GuestState.LSECRET, GuestState.RUNNING):
        measure = fw.launch_measure(handle).measure
        header, ciphertext = owner.secret_packet(bytes(32), measure, bytes(16))
        mem.write(HDR_AT, header)
        mem.write(TRANS_AT, ciphertext)
    if state is GuestState.RUNNING:
        fw.launch_finish(handle)
    if command in (Command.ACTIVATE, Command.DECOMMISSION):
        fw.deactivate(handle)
        fw.df_flush()
    if state in (GuestState.SUPDATE, GuestState.RUPDATE, GuestState.SENT):
        fw._core.guests[handle].state = state  # unreachable without SEND/RECEIVE
    return handle


def platform_in(make_fw: MakeFw, state: PlatformState) -> Firmware:
    fw = make_fw()
    if state is not PlatformState.UNINIT:
        fw.init(es=True)
    if state is PlatformState.WORKING:
        fw.launch_start(0)  # a bystander guest keeps the platform WORKING
    assert fw.state is state
    return fw


@pytest.mark.parametrize("state", list(PlatformState))
@pytest.mark.parametrize("command", [*PLATFORM_ONLY, Command.LAUNCH_START])
def test_platform_table_platform_commands(
    make_fw: MakeFw, state: PlatformState, command: Command
) -> None:
    fw = platform_in(make_fw, state)
    mem = SparseMemory()
    before = fw.platform_status().guest_count
    status, _ = fw.execute(command, platform_buffer(fw, command, mem), mem)
    if command in PLATFORM_TABLE[state]:
        assert status is Status.SUCCESS
        after = 0 if command is Command.SHUTDOWN else before + (command is Command.LAUNCH_START)
        assert fw.state is platform_after(state, command, after)
    else:
        assert status is Status.INVALID_PLATFORM_STATE
        assert fw.state is state


@pytest.mark.parametrize("state", list(PlatformState))
@pytest.mark.parametrize("command", GUEST_ADDRESSED)
def test_platform_table_guest_commands(
    make_fw: MakeFw, state: PlatformState, command: Command
) -> None:
    fw = platform_in(make_fw, state)
    mem = SparseMemory()
    if command not in PLATFORM_TABLE[state]:
        status, _ = fw.execute(command, guest_buffer(command, 1), mem)
        assert status is Status.INVALID_PLATFORM_STATE
        assert fw.state is state
        return
    wanted = {
        Command.LAUNCH_SECRET: GuestState.LSECRET,
        Command.LAUNCH_FINISH: GuestState.LSECRET,
        Command.ATTESTATION: GuestState.RUNNING,
    }.get(command, GuestState.LUPDATE)
    handle = guest_in(fw, wanted, command, mem)
    status, _ = fw.execute(command, guest_buffer(command, handle), mem)
    assert status is Status.SUCCESS
    assert fw.state is PlatformState.WORKING  # the bystander guest remains


@pytest.mark.parametrize(
    "state", [s for s in GuestState if s is not GuestState.UNINIT], ids=lambda s: s.name
)
@pytest.mark.parametrize("command", GUEST_ADDRESSED, ids=lambda c: c.name)
def test_guest_table(make_fw: MakeFw, state: GuestState, command: Command) -> None:
    fw = platform_in(make_fw, PlatformState.INIT)
    mem = SparseMemory()
    handle = guest_in(fw, state, command, mem)
    status, _ = fw.execute(command, guest_buffer(command, handle), mem)
    if command in GUEST_TABLE[state]:
        assert status is Status.SUCCESS, status
        expected = GUEST_TRANSITIONS.get((state, command), state)
        assert fw.guest_state(handle) is expected
    else:
        assert status is Status.INVALID_GUEST_STATE
        assert fw.guest_state(handle) is state


@pytest.mark.parametrize("command", GUEST_ADDRESSED, ids=lambda c: c.name)
def test_guest_table_uninit_row(make_fw: MakeFw, command: Command) -> None:
    """A guest in UNINIT has no context: every command addressed to it is INVALID_GUEST."""
    fw = platform_in(make_fw, PlatformState.WORKING)
    status, _ = fw.execute(command, guest_buffer(command, 77), SparseMemory())
    assert status is Status.INVALID_GUEST
    assert command not in GUEST_TABLE[GuestState.UNINIT]


def test_every_implemented_command_is_in_some_row() -> None:
    rows = set().union(*PLATFORM_TABLE.values())
    assert set(IMPLEMENTED) <= rows
