"""Typed SEV-SNP procedures for the platform clients, in the style of :mod:`.calls` (sans-IO
generators driven by ``client.run``).

Like Linux, :func:`ensure_snp_init` brings SNP up before SEV: when the SEV platform is INIT
with no guests it is shut down, SNP initialised, and SEV initialised again; with SEV guests
running SNP cannot come up (the firmware wants SEV UNINIT for SNP_INIT) and the refusal says
so. The host operations (RMPUPDATE, the guest's memory controller, the emulated AMD key
server) are in :mod:`.snp_host`.
"""

from __future__ import annotations

from sevlaunch.errors import PlatformError
from sevlaunch.formats.commands import Command, InitBuffer
from sevlaunch.formats.snp.commands import (
    STATUS_SIZE,
    SnpActivateBuffer,
    SnpAddrBuffer,
    SnpCommand,
    SnpCommitBuffer,
    SnpConfigBuffer,
    SnpGuestRequestBuffer,
    SnpLaunchFinishBuffer,
    SnpLaunchStartBuffer,
    SnpLaunchUpdateBuffer,
    SnpPlatformStatus,
    SnpVlekLoadBuffer,
)
from sevlaunch.formats.snp.idblock import ID_AUTH_SIZE
from sevlaunch.formats.states import PlatformState
from sevlaunch.formats.status import Status
from sevlaunch.platform import protocol as p
from sevlaunch.platform.calls import (
    TMR_PADDR,
    TMR_SIZE,
    Procedure,
    _mailbox,
    _read_back,
    _Scratch,
    platform_status,
    profile,
    raw_mailbox,
)

PAGE = 4096


# ---------------------------------------------------------------------------- platform


def snp_platform_status() -> Procedure[SnpPlatformStatus]:
    scratch = _Scratch()
    paddr = scratch.alloc(PAGE)
    reply = yield from _mailbox(
        SnpCommand.SNP_PLATFORM_STATUS, SnpAddrBuffer(paddr), scratch.regions
    )
    return SnpPlatformStatus.from_bytes(_read_back(scratch.regions, reply, paddr, STATUS_SIZE))


def ensure_snp_init() -> Procedure[SnpPlatformStatus]:
    """SNP_INIT if SNP is UNINIT (shutting an idle SEV platform down and back up around it)."""
    status = yield from snp_platform_status()
    if status.state != PlatformState.UNINIT:
        return status
    sev = yield from platform_status()
    if sev.state == PlatformState.WORKING:
        raise PlatformError(
            f"cannot initialise SNP while {sev.guest_count} SEV guest(s) run: SNP_INIT needs "
            "the SEV platform UNINIT or INIT: stop them first; then the next SNP guest, or "
            "'sevlaunch platform init --snp', brings SNP up (before SEV, as Linux's ccp driver does)"
        )
    if sev.state == PlatformState.INIT:
        yield from _mailbox(Command.SHUTDOWN, None)
    lost_race = frozenset({Status.SUCCESS, Status.INVALID_PLATFORM_STATE})
    yield from _mailbox(SnpCommand.SNP_INIT, None, allow=lost_race)
    if sev.state == PlatformState.INIT:
        es = (yield from profile()).max_es_guests > 0
        buf = InitBuffer(InitBuffer.OPTION_ES, TMR_PADDR, TMR_SIZE) if es else InitBuffer()
        yield from _mailbox(Command.INIT, buf, allow=lost_race)
    return (yield from snp_platform_status())


def snp_config(
    reported_tcb: int, *, mask_chip_id: bool = False, mask_chip_key: bool = False
) -> Procedure[None]:
    flags = (SnpConfigBuffer.MASK_CHIP_ID if mask_chip_id else 0) | (
        SnpConfigBuffer.MASK_CHIP_KEY if mask_chip_key else 0
    )
    yield from _mailbox(SnpCommand.SNP_CONFIG, SnpConfigBuffer(reported_tcb, flags))


def snp_commit() -> Procedure[None]:
    yield from _mailbox(SnpCommand.SNP_COMMIT, SnpCommitBuffer())


def snp_vlek_load(hashstick: bytes) -> Procedure[None]:
    scratch = _Scratch()
    paddr = scratch.put(hashstick)
    yield from _mailbox(SnpCommand.SNP_VLEK_LOAD, SnpVlekLoadBuffer(address=paddr), scratch.regions)


def snp_df_flush() -> Procedure[None]:
    yield from _mailbox(SnpCommand.SNP_DF_FLUSH, None)


# ---------------------------------------------------------------------------- guests


def gctx_create(gctx: int) -> Procedure[None]:
    yield from _mailbox(SnpCommand.SNP_GCTX_CREATE, SnpAddrBuffer(gctx))


def launch_start(gctx: int, policy: int, gosvw: bytes = bytes(16)) -> Procedure[None]:
    yield from _mailbox(
        SnpCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer(gctx, policy, gosvw=gosvw)
    )


def activate(gctx: int, asid: int) -> Procedure[None]:
    yield from _mailbox(SnpCommand.SNP_ACTIVATE, SnpActivateBuffer(gctx, asid))


def launch_update(gctx: int, spa: int, page_type: int, page: bytes) -> Procedure[p.MailboxReply]:
    """One page; the reply is returned whatever its status, for the caller to read the page
    back (the ciphertext, or the firmware's corrected CPUID table)."""
    buf = SnpLaunchUpdateBuffer.page(gctx, spa, page_type)
    return (
        yield from raw_mailbox(SnpCommand.SNP_LAUNCH_UPDATE, buf.to_bytes(), (p.Region(spa, page),))
    )


def page_after(reply: p.MailboxReply, spa: int, before: bytes) -> bytes:
    """The page at ``spa`` as the firmware left it."""
    out = bytearray(before)
    for region in reply.regions:
        if region.paddr <= spa < region.end:
            chunk = region.data[spa - region.paddr : spa - region.paddr + len(before)]
            out[: len(chunk)] = chunk
    return bytes(out)


def launch_finish(
    gctx: int,
    *,
    id_block: bytes | None,
    id_auth: bytes | None,
    author_key: bool,
    vcek_disabled: bool,
    host_data: bytes,
) -> Procedure[None]:
    scratch = _Scratch()
    flags = SnpLaunchFinishBuffer.VCEK_DISABLED if vcek_disabled else 0
    block_at = auth_at = 0
    if id_block is not None:
        block_at = scratch.put(id_block)
        auth_at = scratch.put((id_auth or b"").ljust(ID_AUTH_SIZE, b"\0"))
        flags |= SnpLaunchFinishBuffer.ID_BLOCK_EN
        flags |= SnpLaunchFinishBuffer.AUTH_KEY_EN if author_key else 0
    buf = SnpLaunchFinishBuffer(gctx, block_at, auth_at, flags, host_data)
    yield from _mailbox(SnpCommand.SNP_LAUNCH_FINISH, buf, scratch.regions)


def guest_request(gctx: int, request_page: bytes) -> Procedure[bytes]:
    """SNP_GUEST_REQUEST with the guest's (shared) request page; returns the response page."""
    scratch = _Scratch()
    req = scratch.put(request_page)
    res = scratch.alloc(PAGE)
    buf = SnpGuestRequestBuffer(gctx, req, res)
    reply = yield from _mailbox(SnpCommand.SNP_GUEST_REQUEST, buf, scratch.regions)
    return _read_back(scratch.regions, reply, res, PAGE)


def decommission(gctx: int) -> Procedure[None]:
    yield from _mailbox(SnpCommand.SNP_DECOMMISSION, SnpAddrBuffer(gctx))
