"""SNP platform commands: SNP_INIT(_EX), SNP_SHUTDOWN(_EX), SNP_PLATFORM_STATUS, SNP_DF_FLUSH,
SNP_CONFIG, SNP_COMMIT and SNP_VLEK_LOAD (sev-snp.md §2.5).

Choices where the sources leave the status open: SNP_INIT while the SEV platform is
initialised answers INVALID_PLATFORM_STATE (SNP must come up first, as Linux orders it);
SNP_SHUTDOWN while SEV is initialised SHUTDOWN_REQUIRED; a REPORTED_TCB above the installed
TCB, reserved flag bits or an unknown buffer length INVALID_PARAM; a VLEK for another TCB than
the reported one BAD_SVN. Changing REPORTED_TCB drops a loaded VLEK (a VLEK is TCB-specific).
"""

from __future__ import annotations

from dataclasses import replace

from sevlaunch.firmware._core import CommandError, Core, Handler, require
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.snp import identity as snp_id
from sevlaunch.firmware.snp.guest import SnpPlatform
from sevlaunch.formats.snp.commands import (
    SnpAddrBuffer,
    SnpCommand,
    SnpCommitBuffer,
    SnpConfigBuffer,
    SnpInitExBuffer,
    SnpPlatformStatus,
    SnpStatusFlags,
    SnpVlekLoadBuffer,
)
from sevlaunch.formats.states import PlatformState
from sevlaunch.formats.status import Status


def snp(core: Core) -> SnpPlatform:
    if core.snp is None:  # the dispatcher answers INVALID_COMMAND before a handler runs
        raise CommandError(Status.INVALID_COMMAND, "this generation has no SNP firmware")
    return core.snp


def snp_identity(core: Core) -> snp_id.SnpIdentity:
    """The chip's SNP PKI, made (once, then persisted) on first use."""
    ident = core.identity
    if ident.snp is not None:
        return ident.snp
    if core.rsa_keygen is None:
        raise CommandError(Status.HWERROR_PLATFORM, "no RSA key generator for the SNP PKI")
    made = snp_id.create(
        ident.ark_key,
        ident.ask_key,
        snp(core).profile.generation,
        snp(core).profile.firmware,
        core.rsa_keygen,
    )
    core.identity = replace(ident, snp=made)
    return made


def _start(core: Core) -> None:
    require(
        core.state is PlatformState.UNINIT,
        Status.INVALID_PLATFORM_STATE,
        "SNP_INIT needs the SEV platform UNINIT: SHUTDOWN it first (SNP comes up before SEV)",
    )
    snp_identity(core)
    snp(core).rmp.clear()


def snp_init(core: Core, buffer: bytes, memory: Memory) -> bytes:
    _start(core)
    return buffer


def snp_init_ex(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpInitExBuffer.from_bytes(buffer)
    require(
        buf.flags & ~(SnpInitExBuffer.INIT_RMP | SnpInitExBuffer.LIST_PADDR_EN) == 0,
        Status.INVALID_PARAM,
        f"SNP_INIT_EX options {buf.flags:#x}: RAPL_DIS and ciphertext hiding are not offered",
    )
    require(
        bool(buf.flags & SnpInitExBuffer.INIT_RMP),
        Status.RMP_INIT_REQUIRED,
        "the RMP was never initialised: set INIT_RMP",
    )
    _start(core)
    return buffer


def _drop_guests(core: Core) -> None:
    platform = snp(core)
    for guest in platform.guests.values():
        if guest.asid:
            core.asids.unbind(guest.asid, guest.gctx)
    platform.guests.clear()
    platform.rmp.clear()
    platform.vlek = None


def snp_shutdown(core: Core, buffer: bytes, memory: Memory) -> bytes:
    require(
        core.state is PlatformState.UNINIT,
        Status.SHUTDOWN_REQUIRED,
        "SHUTDOWN the SEV platform before SNP_SHUTDOWN",
    )
    _drop_guests(core)
    return buffer


def snp_platform_status(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpAddrBuffer.from_bytes(buffer)
    platform = snp(core)
    fw = platform.profile.firmware
    flags = SnpStatusFlags(0)
    for on, flag in (
        (platform.mask_chip_id, SnpStatusFlags.MASK_CHIP_ID),
        (platform.mask_chip_key, SnpStatusFlags.MASK_CHIP_KEY),
        (platform.vlek is not None, SnpStatusFlags.VLEK_EN),
    ):
        if on:
            flags |= flag
    status = SnpPlatformStatus(
        api_major=fw.major,
        api_minor=fw.minor,
        state=int(platform.state),
        build_id=fw.build,
        guest_count=len(platform.guests),
        current_tcb=platform.current_tcb,
        reported_tcb=platform.reported_tcb,
        rmp_flags=int(platform.state is PlatformState.INIT),
        flags=int(flags),
    )
    core.write(memory, buf.address, status.to_bytes())
    return buffer


def snp_df_flush(core: Core, buffer: bytes, memory: Memory) -> bytes:
    core.asids.flush()
    return buffer


def snp_config(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpConfigBuffer.from_bytes(buffer)
    platform = snp(core)
    known = SnpConfigBuffer.MASK_CHIP_ID | SnpConfigBuffer.MASK_CHIP_KEY
    require(buf.flags & ~known == 0, Status.INVALID_PARAM, f"reserved flags {buf.flags:#x}")
    wanted = platform.profile.tcb(buf.reported_tcb)
    installed = platform.profile.tcb(platform.current_tcb)
    require(
        wanted.at_most(installed) and not wanted.reserved,
        Status.INVALID_PARAM,
        f"REPORTED_TCB {wanted.describe()} is above the installed {installed.describe()}",
    )
    if buf.reported_tcb != platform.reported_tcb:
        platform.vlek = None
    platform.reported_tcb = buf.reported_tcb
    platform.mask_chip_id = bool(buf.flags & SnpConfigBuffer.MASK_CHIP_ID)
    platform.mask_chip_key = bool(buf.flags & SnpConfigBuffer.MASK_CHIP_KEY)
    return buffer


def snp_commit(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpCommitBuffer.from_bytes(buffer)
    require(buf.length == SnpCommitBuffer.size(), Status.INVALID_PARAM, "LENGTH must be 4")
    ident = snp_identity(core)
    core.identity = replace(core.identity, snp=ident.with_committed(snp(core).profile.firmware))
    return buffer


def snp_vlek_load(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpVlekLoadBuffer.from_bytes(buffer)
    require(buf.length == SnpVlekLoadBuffer.size(), Status.INVALID_PARAM, "LENGTH must be 16")
    require(buf.version == 0, Status.INVALID_PARAM, "only hashstick version 0 exists")
    platform = snp(core)
    loaded = snp_id.unwrap_hashstick(
        core.identity.cek_key, core.read(memory, buf.address, snp_id.HASHSTICK_SIZE)
    )
    require(
        loaded.tcb == platform.reported_tcb,
        Status.BAD_SVN,
        f"the VLEK is for TCB {loaded.tcb:#x}, the platform reports {platform.reported_tcb:#x}",
    )
    platform.vlek = loaded
    return buffer


HANDLERS: dict[SnpCommand, Handler] = {
    SnpCommand.SNP_INIT: snp_init,
    SnpCommand.SNP_INIT_EX: snp_init_ex,
    SnpCommand.SNP_SHUTDOWN: snp_shutdown,
    SnpCommand.SNP_SHUTDOWN_EX: snp_shutdown,
    SnpCommand.SNP_PLATFORM_STATUS: snp_platform_status,
    SnpCommand.SNP_DF_FLUSH: snp_df_flush,
    SnpCommand.SNP_CONFIG: snp_config,
    SnpCommand.SNP_COMMIT: snp_commit,
    SnpCommand.SNP_VLEK_LOAD: snp_vlek_load,
}
