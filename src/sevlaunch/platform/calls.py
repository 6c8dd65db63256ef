"""Typed SEV commands as sans-IO procedures shared by the sync and async clients.

A procedure is a generator: it yields protocol requests, is sent the responses, and returns a
typed result, so the sequencing (length queries, the Linux driver's automatic INIT) is written
once and driven by either client. Command buffers come from :mod:`sevlaunch.formats.commands`;
their physical addresses point into a scratch window (bounce buffers, as the kernel's are)
or at guest memory the caller passes as a :class:`~sevlaunch.formats.memory.Memory`, whose
written ranges are stored back into it.

Like Linux's ``/dev/sev`` (``drivers/crypto/ccp/sev-dev.c``), the admin procedures
:func:`pek_gen`, :func:`pdh_gen`, :func:`pek_csr`, :func:`pek_cert_import` and
:func:`pdh_cert_export` first INIT the platform when it is UNINIT (and leave it INIT), and
:func:`platform_reset` SHUTs DOWN an INIT platform before PLATFORM_RESET and refuses a WORKING
one (the kernel answers EBUSY). KVM INITs the platform when the first SEV guest is created;
:func:`ensure_init` is that step for a VMM. Everything else is passed through as is: the
firmware itself stays strict.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sevlaunch.errors import FirmwareError, PlatformError, ProtocolError, UsageError
from sevlaunch.formats.commands import (
    ActivateBuffer,
    AttestationBuffer,
    Command,
    CommandBuffer,
    DbgBuffer,
    GetIdBuffer,
    GuestStatusBuffer,
    HandleBuffer,
    InitBuffer,
    LaunchMeasureBuffer,
    LaunchSecretBuffer,
    LaunchStartBuffer,
    LaunchUpdateBuffer,
    PdhCertExportBuffer,
    PekCertImportBuffer,
    PekCsrBuffer,
    PlatformStatusBuffer,
)
from sevlaunch.formats.memory import Memory, SparseMemory
from sevlaunch.formats.session import MEASUREMENT_SIZE, Measurement
from sevlaunch.formats.states import PlatformState
from sevlaunch.formats.status import Status
from sevlaunch.platform import protocol as p

if TYPE_CHECKING:  # loaded by the two procedures that use them (see client.py)
    from sevlaunch.formats.chain import PlatformChain

T = TypeVar("T")
Procedure = Generator[p.Request, p.Response, T]

#: Where bounce buffers live in the emulated physical address space (32 TiB, above any
#: guest this project runs and below every profile's C-bit).
SCRATCH_BASE = 1 << 45
SCRATCH_SIZE = 1 << 32
#: Largest run of guest memory sent in one request (LAUNCH_UPDATE_DATA, DBG_*, guest I/O).
CHUNK = 8 * 1024 * 1024
TMR_PADDR = SCRATCH_BASE - (1 << 20)
TMR_SIZE = 1 << 20
ATTESTATION_REPORT_SIZE = 0xD0


@dataclass
class _Scratch:
    """Allocates page-aligned bounce buffers in the scratch window for one call."""

    next: int = SCRATCH_BASE
    regions: list[p.Region] = field(default_factory=list)

    def put(self, data: bytes) -> int:
        paddr = self.next
        self.regions.append(p.Region(paddr, data))
        self.next += (len(data) + 0xFFF) & ~0xFFF or 0x1000
        return paddr

    def alloc(self, size: int) -> int:
        return self.put(bytes(size))


def _check_guest_range(paddr: int, length: int) -> None:
    if paddr < SCRATCH_BASE + SCRATCH_SIZE and paddr + length > SCRATCH_BASE:
        raise UsageError(
            f"guest range [{paddr:#x}, +{length:#x}) overlaps the platform client's bounce "
            f"buffers at [{SCRATCH_BASE:#x}, +{SCRATCH_SIZE:#x}); place guest memory below"
        )


def _mailbox(
    command: enum.IntEnum,
    buffer: CommandBuffer | None,
    regions: list[p.Region] | tuple[p.Region, ...] = (),
    *,
    allow: frozenset[int] = frozenset({Status.SUCCESS}),
) -> Procedure[p.MailboxReply]:
    raw = buffer.to_bytes() if buffer is not None else b""
    reply = yield p.MailboxRequest(int(command), raw, tuple(regions))
    if not isinstance(reply, p.MailboxReply):
        raise ProtocolError("response", "expected a mailbox result", value=type(reply).__name__)
    if reply.status not in allow:
        raise FirmwareError(command.name, reply.status, reply.detail)
    return reply


def raw_mailbox(
    command: int, buffer: bytes, regions: tuple[p.Region, ...] = ()
) -> Procedure[p.MailboxReply]:
    """One PSP call, any status accepted: the strict firmware, as is."""
    reply = yield p.MailboxRequest(command, buffer, regions)
    if not isinstance(reply, p.MailboxReply):
        raise ProtocolError("response", "expected a mailbox result", value=type(reply).__name__)
    return reply


def _read_back(sent: list[p.Region], reply: p.MailboxReply, paddr: int, length: int) -> bytes:
    """What the scratch buffer at ``paddr`` holds after the call."""
    mem = SparseMemory()
    for region in (*sent, *reply.regions):
        if SCRATCH_BASE <= region.paddr < SCRATCH_BASE + SCRATCH_SIZE:
            mem.write(region.paddr, region.data)
    return mem.read(paddr, length)


def _store_guest(memory: Memory, regions: tuple[p.Region, ...]) -> None:
    for region in regions:
        if not SCRATCH_BASE <= region.paddr < SCRATCH_BASE + SCRATCH_SIZE:
            memory.write(region.paddr, region.data)


def _buffer(cls: type[CommandBuffer], reply: p.MailboxReply) -> Any:
    return cls.from_bytes(reply.buffer)


# ---------------------------------------------------------------------------- platform


def platform_status() -> Procedure[PlatformStatusBuffer]:
    reply = yield from _mailbox(Command.PLATFORM_STATUS, PlatformStatusBuffer())
    status: PlatformStatusBuffer = _buffer(PlatformStatusBuffer, reply)
    return status


def profile() -> Procedure[p.ProfileReply]:
    reply = yield p.ServiceRequest(p.ServiceOp.PROFILE)
    if not isinstance(reply, p.ProfileReply):
        raise ProtocolError("response", "expected profile information", value=type(reply).__name__)
    return reply


def _blob(op: p.ServiceOp) -> Procedure[bytes]:
    reply = yield p.ServiceRequest(op)
    if not isinstance(reply, p.BlobReply):
        raise ProtocolError("response", "expected bytes", value=type(reply).__name__)
    return reply.data


def signed_cek() -> Procedure[bytes]:
    """The ASK-signed CEK: the emulated counterpart of AMD's key server answer."""
    return (yield from _blob(p.ServiceOp.SIGNED_CEK))


def ca_chain() -> Procedure[bytes]:
    """The emulated ASK ‖ ARK."""
    return (yield from _blob(p.ServiceOp.CA_CHAIN))


def ark() -> Procedure[bytes]:
    """The emulated ARK alone, for a trust store."""
    return (yield from _blob(p.ServiceOp.ARK))


def init(es: bool | None = None) -> Procedure[None]:
    """INIT; ``es=None`` enables SEV-ES where the part has SEV-ES ASIDs, as Linux does."""
    if es is None:
        es = (yield from profile()).max_es_guests > 0
    buf = InitBuffer(InitBuffer.OPTION_ES, TMR_PADDR, TMR_SIZE) if es else InitBuffer()
    yield from _mailbox(Command.INIT, buf)


def ensure_init() -> Procedure[PlatformStatusBuffer]:
    """INIT the platform if it is UNINIT (the Linux driver's implicit INIT)."""
    status = yield from platform_status()
    if status.state == PlatformState.UNINIT:
        lost_race = frozenset({Status.SUCCESS, Status.INVALID_PLATFORM_STATE})
        es = (yield from profile()).max_es_guests > 0
        buf = InitBuffer(InitBuffer.OPTION_ES, TMR_PADDR, TMR_SIZE) if es else InitBuffer()
        yield from _mailbox(Command.INIT, buf, allow=lost_race)
        status = yield from platform_status()
    return status


def shutdown() -> Procedure[None]:
    yield from _mailbox(Command.SHUTDOWN, None)


def platform_reset() -> Procedure[None]:
    """SHUTDOWN if INIT, then PLATFORM_RESET; refused while guests run (Linux: EBUSY)."""
    status = yield from platform_status()
    if status.state == PlatformState.WORKING:
        raise PlatformError(
            f"cannot reset the platform while {status.guest_count} guest(s) exist; "
            "decommission them first (the Linux driver answers EBUSY)"
        )
    if status.state == PlatformState.INIT:
        yield from _mailbox(Command.SHUTDOWN, None)
    yield from _mailbox(Command.PLATFORM_RESET, None)


def df_flush() -> Procedure[None]:
    yield from _mailbox(Command.DF_FLUSH, None)


def pek_gen() -> Procedure[None]:
    yield from ensure_init()
    yield from _mailbox(Command.PEK_GEN, None)


def pdh_gen() -> Procedure[None]:
    yield from ensure_init()
    yield from _mailbox(Command.PDH_GEN, None)


def get_id() -> Procedure[bytes]:
    """GET_ID with the length query: ask with length 0, then with what the firmware wants."""
    query = yield from _mailbox(
        Command.GET_ID,
        GetIdBuffer(SCRATCH_BASE, 0),
        allow=frozenset({Status.SUCCESS, Status.INVALID_LENGTH}),
    )
    need = _buffer(GetIdBuffer, query).length
    scratch = _Scratch()
    paddr = scratch.alloc(need)
    reply = yield from _mailbox(Command.GET_ID, GetIdBuffer(paddr, need), scratch.regions)
    out = _buffer(GetIdBuffer, reply)
    return _read_back(scratch.regions, reply, paddr, out.length)


def pek_csr() -> Procedure[bytes]:
    from sevlaunch.formats import sevcert

    yield from ensure_init()
    scratch = _Scratch()
    paddr = scratch.alloc(sevcert.SIZE)
    reply = yield from _mailbox(Command.PEK_CSR, PekCsrBuffer(paddr, sevcert.SIZE), scratch.regions)
    return _read_back(scratch.regions, reply, paddr, _buffer(PekCsrBuffer, reply).length)


def pek_cert_import(pek: bytes, oca: bytes) -> Procedure[None]:
    """Take ownership: import the owner-signed PEK and the owner's OCA."""
    yield from ensure_init()
    scratch = _Scratch()
    pek_paddr, oca_paddr = scratch.put(pek), scratch.put(oca)
    buf = PekCertImportBuffer(pek_paddr, len(pek), oca_paddr, len(oca))
    yield from _mailbox(Command.PEK_CERT_IMPORT, buf, scratch.regions)


def pdh_cert_export() -> Procedure[PlatformChain]:
    """PDH and PEK ‖ OCA ‖ CEK, as one chain (the CEK unsigned, as firmware exports it)."""
    from sevlaunch.formats import sevcert
    from sevlaunch.formats.chain import CertExport, PlatformChain

    yield from ensure_init()
    scratch = _Scratch()
    pdh_paddr = scratch.alloc(sevcert.SIZE)
    certs_paddr = scratch.alloc(CertExport.SIZE)
    buf = PdhCertExportBuffer(pdh_paddr, sevcert.SIZE, certs_paddr, CertExport.SIZE)
    reply = yield from _mailbox(Command.PDH_CERT_EXPORT, buf, scratch.regions)
    out = _buffer(PdhCertExportBuffer, reply)
    pdh = _read_back(scratch.regions, reply, pdh_paddr, out.pdh_len)
    certs = _read_back(scratch.regions, reply, certs_paddr, out.certs_len)
    return PlatformChain.from_export(sevcert.SevCert.from_bytes(pdh), CertExport.from_bytes(certs))


# ---------------------------------------------------------------------------- guests


def launch_start(policy: int, godh: bytes, session: bytes, handle: int = 0) -> Procedure[int]:
    """LAUNCH_START; returns the new guest's handle (``handle`` != 0 shares that guest's key)."""
    scratch = _Scratch()
    godh_paddr, session_paddr = scratch.put(godh), scratch.put(session)
    buf = LaunchStartBuffer(handle, policy, godh_paddr, len(godh), session_paddr, len(session))
    reply = yield from _mailbox(Command.LAUNCH_START, buf, scratch.regions)
    new_handle: int = _buffer(LaunchStartBuffer, reply).handle
    return new_handle


def _chunks(paddr: int, length: int) -> list[tuple[int, int]]:
    return [(a, min(CHUNK, paddr + length - a)) for a in range(paddr, paddr + length, CHUNK)]


def _update(
    command: Command, handle: int, paddr: int, length: int, memory: Memory
) -> Procedure[None]:
    _check_guest_range(paddr, length)
    for start, size in _chunks(paddr, length) or [(paddr, 0)]:
        region = (p.Region(start, memory.read(start, size)),) if size else ()
        reply = yield from _mailbox(command, LaunchUpdateBuffer(handle, start, size), region)
        _store_guest(memory, reply.regions)


def launch_update_data(handle: int, paddr: int, length: int, memory: Memory) -> Procedure[None]:
    """Measure and encrypt ``memory[paddr, +length)`` in place (sent in CHUNK-sized calls)."""
    yield from _update(Command.LAUNCH_UPDATE_DATA, handle, paddr, length, memory)


def launch_update_vmsa(handle: int, paddr: int, length: int, memory: Memory) -> Procedure[None]:
    """Measure and encrypt one VMSA page in place (SEV-ES)."""
    _check_guest_range(paddr, length)
    region = (p.Region(paddr, memory.read(paddr, length)),)
    buf = LaunchUpdateBuffer(handle, paddr, length)
    reply = yield from _mailbox(Command.LAUNCH_UPDATE_VMSA, buf, region)
    _store_guest(memory, reply.regions)


def launch_measure(handle: int) -> Procedure[Measurement]:
    scratch = _Scratch()
    paddr = scratch.alloc(MEASUREMENT_SIZE)
    buf = LaunchMeasureBuffer(handle, paddr, MEASUREMENT_SIZE)
    reply = yield from _mailbox(Command.LAUNCH_MEASURE, buf, scratch.regions)
    return Measurement.from_bytes(_read_back(scratch.regions, reply, paddr, MEASUREMENT_SIZE))


def launch_secret(
    handle: int, header: bytes, packet: bytes, guest_paddr: int, memory: Memory
) -> Procedure[None]:
    """Inject a secret packet; the firmware writes it, encrypted, at ``guest_paddr``."""
    _check_guest_range(guest_paddr, len(packet))
    scratch = _Scratch()
    hdr_paddr, trans_paddr = scratch.put(header), scratch.put(packet)
    guest = p.Region(guest_paddr, memory.read(guest_paddr, len(packet)))
    buf = LaunchSecretBuffer(
        handle, hdr_paddr, len(header), guest_paddr, len(packet), trans_paddr, len(packet)
    )
    reply = yield from _mailbox(Command.LAUNCH_SECRET, buf, [*scratch.regions, guest])
    _store_guest(memory, reply.regions)


def _handle_only(command: Command, handle: int) -> Procedure[None]:
    yield from _mailbox(command, HandleBuffer(handle))


def launch_finish(handle: int) -> Procedure[None]:
    yield from _handle_only(Command.LAUNCH_FINISH, handle)


def deactivate(handle: int) -> Procedure[None]:
    yield from _handle_only(Command.DEACTIVATE, handle)


def decommission(handle: int) -> Procedure[None]:
    yield from _handle_only(Command.DECOMMISSION, handle)


def activate(handle: int, asid: int) -> Procedure[None]:
    yield from _mailbox(Command.ACTIVATE, ActivateBuffer(handle, asid))


def guest_status(handle: int) -> Procedure[GuestStatusBuffer]:
    reply = yield from _mailbox(Command.GUEST_STATUS, GuestStatusBuffer(handle))
    status: GuestStatusBuffer = _buffer(GuestStatusBuffer, reply)
    return status


def attestation(handle: int, mnonce: bytes) -> Procedure[bytes]:
    """The PEK-signed attestation report (0xD0 bytes) over ``mnonce``."""
    scratch = _Scratch()
    paddr = scratch.alloc(ATTESTATION_REPORT_SIZE)
    buf = AttestationBuffer(handle, paddr, mnonce, ATTESTATION_REPORT_SIZE)
    reply = yield from _mailbox(Command.ATTESTATION, buf, scratch.regions)
    length = _buffer(AttestationBuffer, reply).length
    return _read_back(scratch.regions, reply, paddr, length)


def dbg_decrypt(handle: int, paddr: int, length: int, memory: Memory) -> Procedure[bytes]:
    """Plaintext of guest memory ``[paddr, +length)`` (16-byte aligned; refused under NODBG)."""
    _check_guest_range(paddr, length)
    out = []
    for start, size in _chunks(paddr, length):
        scratch = _Scratch()
        dst = scratch.alloc(size)
        regions = [p.Region(start, memory.read(start, size)), *scratch.regions]
        reply = yield from _mailbox(
            Command.DBG_DECRYPT, DbgBuffer(handle, start, dst, size), regions
        )
        out.append(_read_back(scratch.regions, reply, dst, size))
    return b"".join(out)


def dbg_encrypt(handle: int, paddr: int, data: bytes, memory: Memory) -> Procedure[None]:
    """Encrypt ``data`` into guest memory at ``paddr`` (16-byte aligned; refused under NODBG)."""
    _check_guest_range(paddr, len(data))
    for offset in range(0, len(data), CHUNK):
        piece = data[offset : offset + CHUNK]
        scratch = _Scratch()
        src = scratch.put(piece)
        dst = paddr + offset
        regions = [*scratch.regions, p.Region(dst, memory.read(dst, len(piece)))]
        buf = DbgBuffer(handle, src, dst, len(piece))
        reply = yield from _mailbox(Command.DBG_ENCRYPT, buf, regions)
        _store_guest(memory, reply.regions)


# ---------------------------------------------------------------------------- guest CPU


def _aligned(paddr: int, length: int) -> tuple[int, int]:
    start = paddr & ~0xF
    end = (paddr + length + 0xF) & ~0xF
    return start, end - start


def guest_read(handle: int, paddr: int, length: int, memory: Memory) -> Procedure[bytes]:
    """What the guest itself reads at ``paddr`` (its memory decrypted by its key)."""
    _check_guest_range(paddr, length)
    out = []
    for start, size in _chunks(paddr, length):
        a, n = _aligned(start, size)
        request = p.GuestReadRequest(handle, start, size, (p.Region(a, memory.read(a, n)),))
        reply = yield request
        if not isinstance(reply, p.BlobReply):
            raise ProtocolError("response", "expected bytes", value=type(reply).__name__)
        out.append(reply.data)
    return b"".join(out)


def guest_write(handle: int, paddr: int, data: bytes, memory: Memory) -> Procedure[None]:
    """The guest itself writes ``data`` at ``paddr`` (stored encrypted under its key)."""
    _check_guest_range(paddr, len(data))
    for offset in range(0, len(data), CHUNK):
        piece = data[offset : offset + CHUNK]
        a, n = _aligned(paddr + offset, len(piece))
        request = p.GuestWriteRequest(
            handle, paddr + offset, piece, (p.Region(a, memory.read(a, n)),)
        )
        reply = yield request
        if not isinstance(reply, p.BlobReply):
            raise ProtocolError("response", "expected bytes", value=type(reply).__name__)
        _store_guest(memory, reply.regions)
