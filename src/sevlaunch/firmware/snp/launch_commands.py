"""SNP guest lifecycle: SNP_GCTX_CREATE, SNP_LAUNCH_START, SNP_ACTIVATE, SNP_LAUNCH_UPDATE,
SNP_LAUNCH_FINISH and SNP_DECOMMISSION (sev-snp.md §3).

SNP_LAUNCH_UPDATE takes one 4 KiB page at a system physical address whose RMP entry the
hypervisor assigned to the guest's ASID (the GPA measured is the RMP's), refuses a page that
is not (INVALID_PAGE_STATE) or that belongs to another ASID (INVALID_PAGE_OWNER) or that it
validated before, and extends the launch digest with the page's PAGE_INFO.

Status choices the sources leave open: a policy the platform cannot honour (bit 17 clear,
reserved bits, an ABI above the firmware's, AES-256-XTS, RAPL_DIS, ciphertext hiding, or no
SMT on an SMT platform) POLICY_FAILURE; migration agents and IMI INVALID_PARAM; a 2 MiB page
INVALID_PAGE_SIZE. At LAUNCH_FINISH a bad ID block or auth layout INVALID_PARAM, a signature
that does not verify BAD_SIGNATURE, an ID block whose digest is not the launch digest
BAD_MEASUREMENT (spec-derived) and one whose policy is not the guest's POLICY_FAILURE.
"""

from __future__ import annotations

import hashlib

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.errors import CryptoError, FormatError
from sevlaunch.firmware._core import CommandError, Core, Handler, require
from sevlaunch.firmware.encryption import VEK_SIZE, GuestCipher
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.snp import cpuid_check
from sevlaunch.firmware.snp.guest import IdInfo, SnpGuest
from sevlaunch.firmware.snp.platform_commands import snp
from sevlaunch.firmware.snp.rmp import PAGE, page_of
from sevlaunch.formats.snp.commands import (
    SnpActivateBuffer,
    SnpAddrBuffer,
    SnpCommand,
    SnpLaunchFinishBuffer,
    SnpLaunchStartBuffer,
    SnpLaunchUpdateBuffer,
)
from sevlaunch.formats.snp.cpuid import CpuidTable
from sevlaunch.formats.snp.idblock import ID_AUTH_SIZE, ID_BLOCK_SIZE, IdAuth, IdBlock
from sevlaunch.formats.snp.pageinfo import PageInfo, PageType
from sevlaunch.formats.snp.policy import PlatformInfoFlags, SnpPolicy, SnpPolicyFlags
from sevlaunch.formats.snp.secrets import SecretsPage
from sevlaunch.formats.status import Status

ZERO_CONTENTS = bytes(48)
_REFUSED_FLAGS = (
    (SnpPolicyFlags.MEM_AES_256_XTS, "AES-256-XTS memory encryption"),
    (SnpPolicyFlags.RAPL_DIS, "RAPL disabled"),
    (SnpPolicyFlags.CIPHERTEXT_HIDING, "ciphertext hiding"),
)


def guest_of(core: Core, gctx: int) -> SnpGuest:
    found = snp(core).guests.get(core.phys(gctx))
    if found is None:
        raise CommandError(Status.INVALID_GUEST, f"no guest context at {gctx:#x}")
    return found


def gctx_create(core: Core, buffer: bytes, memory: Memory) -> bytes:
    gctx = core.phys(SnpAddrBuffer.from_bytes(buffer).address)
    page_of(gctx)
    platform = snp(core)
    require(gctx not in platform.guests, Status.INVALID_GUEST, f"{gctx:#x} is a context already")
    platform.rmp.take_for_firmware(gctx, owner=gctx)
    platform.guests[gctx] = SnpGuest(gctx)
    return buffer


def _policy(core: Core, value: int) -> SnpPolicy:
    policy = SnpPolicy.from_int(value)
    problems = policy.problems()
    require(not problems, Status.POLICY_FAILURE, "; ".join(problems))
    profile = snp(core).profile
    fw = (profile.firmware.major, profile.firmware.minor)
    require(
        (policy.abi_major, policy.abi_minor) <= fw,
        Status.POLICY_FAILURE,
        f"the policy needs ABI {policy.abi_major}.{policy.abi_minor}, the firmware is "
        f"{fw[0]}.{fw[1]}",
    )
    for flag, what in _REFUSED_FLAGS:
        require(not policy.has(flag), Status.POLICY_FAILURE, f"this platform offers no {what}")
    smt_on = bool(profile.platform_info & PlatformInfoFlags.SMT_EN)
    require(
        policy.has(SnpPolicyFlags.SMT) or not smt_on,
        Status.POLICY_FAILURE,
        "SMT is enabled on this platform and the policy does not allow it",
    )
    return policy


def launch_start(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpLaunchStartBuffer.from_bytes(buffer)
    guest = guest_of(core, buf.gctx_paddr)
    _policy(core, buf.policy)
    require(buf.flags == 0, Status.INVALID_PARAM, "migration agents and IMI are not emulated")
    guest.policy = buf.policy
    guest.gosvw = buf.gosvw
    guest.cipher = GuestCipher(core.rng(VEK_SIZE))
    guest.vmpcks = tuple(core.rng(32) for _ in range(4))
    guest.report_id = core.rng(32)
    guest.launch_tcb = snp(core).current_tcb
    return buffer


def activate(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpActivateBuffer.from_bytes(buffer)
    guest = guest_of(core, buf.gctx_paddr)
    asids = core.profile.es_asids  # SNP guests share the SEV-ES range
    require(buf.asid in asids, Status.INVALID_ASID, f"ASID {buf.asid} is not an SEV-ES/SNP ASID")
    require(not guest.active, Status.ACTIVE, f"the guest is active on ASID {guest.asid} already")
    require(not core.asids.owners(buf.asid), Status.ASID_OWNED, f"ASID {buf.asid} is bound")
    require(
        buf.asid not in core.asids.dirty,
        Status.DF_FLUSH_REQUIRED,
        f"ASID {buf.asid} was deactivated: DF_FLUSH first",
    )
    core.asids.bind(buf.asid, guest.gctx)
    guest.asid = buf.asid
    return buffer


def _cpuid_page(core: Core, memory: Memory, spa: int, page: bytes) -> None:
    """Refused values are corrected in the page, left in plaintext for the hypervisor."""
    try:
        table = CpuidTable.from_bytes(page)
    except FormatError as exc:
        raise CommandError(Status.INVALID_PARAM, f"CPUID page: {exc}") from exc
    fixed = cpuid_check.check(table)
    if fixed is not None:
        memory.write(spa, fixed.to_page())
        raise CommandError(
            Status.INVALID_PARAM, "CPUID values refused; the accepted ones are in the page"
        )


def _contents(core: Core, guest: SnpGuest, memory: Memory, spa: int, kind: PageType) -> bytes:
    """What the page becomes (plaintext, before encryption) and its PAGE_INFO contents."""
    page = memory.read(spa, PAGE)
    if kind is PageType.ZERO:
        page = bytes(PAGE)
    elif kind is PageType.SECRETS:
        page = SecretsPage(
            fms=snp(core).profile.fms,
            vmpck0=guest.vmpcks[0],
            vmpck1=guest.vmpcks[1],
            vmpck2=guest.vmpcks[2],
            vmpck3=guest.vmpcks[3],
            gosvw=guest.gosvw,
        ).to_bytes()
    elif kind is PageType.CPUID:
        _cpuid_page(core, memory, spa, page)
    if guest.cipher is None:  # unreachable: LAUNCH state is entered by LAUNCH_START
        raise CommandError(Status.INVALID_GUEST_STATE, "the guest has no key")
    memory.write(spa, guest.cipher.encrypt_at(spa, page))
    return hashlib.sha384(page).digest() if kind.measures_contents else ZERO_CONTENTS


def launch_update(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpLaunchUpdateBuffer.from_bytes(buffer)
    guest = guest_of(core, buf.gctx_paddr)
    require(guest.active, Status.INACTIVE, "SNP_ACTIVATE the guest before SNP_LAUNCH_UPDATE")
    require(not buf.page_size_2m, Status.INVALID_PAGE_SIZE, "only 4 KiB pages are emulated")
    require(buf.reserved_flags == 0, Status.INVALID_PARAM, f"reserved flags {buf.flags:#x}")
    try:
        kind = PageType(buf.page_type)
    except ValueError as exc:
        raise CommandError(Status.INVALID_PARAM, f"page type {buf.page_type}") from exc
    spa = core.phys(buf.address)
    page_of(spa)
    rmp = snp(core).rmp
    entry = rmp.get(spa)
    if entry is None or entry.firmware:
        raise CommandError(Status.INVALID_PAGE_STATE, f"page {spa:#x} is not assigned to a guest")
    require(
        entry.asid == guest.asid,
        Status.INVALID_PAGE_OWNER,
        f"page {spa:#x} is assigned to ASID {entry.asid}, not {guest.asid}",
    )
    require(not entry.validated, Status.INVALID_PAGE_STATE, f"page {spa:#x} is validated already")
    contents = _contents(core, guest, memory, spa, kind)
    vmpl1, vmpl2, vmpl3 = buf.vmpl_perms
    info = PageInfo(guest.ld, contents, kind, entry.gpa, buf.imi_page, vmpl1, vmpl2, vmpl3)
    guest.ld = hashlib.sha384(info.to_bytes()).digest()
    entry.validated, entry.vmsa, entry.owner = True, kind is PageType.VMSA, guest.gctx
    return buffer


def _id_block(core: Core, guest: SnpGuest, buf: SnpLaunchFinishBuffer, memory: Memory) -> IdInfo:
    try:
        block = IdBlock.from_bytes(core.read(memory, buf.id_block_paddr, ID_BLOCK_SIZE))
        auth = IdAuth.from_bytes(core.read(memory, buf.id_auth_paddr, ID_AUTH_SIZE))
    except FormatError as exc:
        raise CommandError(Status.INVALID_PARAM, f"ID block: {exc}") from exc
    require(block.version == 1, Status.INVALID_PARAM, f"ID block version {block.version}")
    with_author = buf.has(SnpLaunchFinishBuffer.AUTH_KEY_EN)
    require(auth.id_key_algo == 1, Status.INVALID_PARAM, "ID key algorithm must be 1")
    require(
        not with_author or auth.auth_key_algo == 1,
        Status.INVALID_PARAM,
        "author key algorithm must be 1",
    )
    try:
        ecdsa.verify(ecdsa.from_snp_key(auth.id_key), auth.id_block_sig, block.to_bytes())
        if with_author:
            author = ecdsa.from_snp_key(auth.author_key)
            ecdsa.verify(author, auth.id_key_sig, auth.id_key.to_bytes())
    except CryptoError as exc:
        raise CommandError(Status.BAD_SIGNATURE, f"ID auth: {exc}") from exc
    require(
        block.ld == guest.ld,
        Status.BAD_MEASUREMENT,
        f"the ID block expects launch digest {block.ld.hex()[:16]}…, the launch is "
        f"{guest.ld.hex()[:16]}…",
    )
    require(
        block.policy == guest.policy,
        Status.POLICY_FAILURE,
        f"the ID block's policy {block.policy:#x} is not the guest's {guest.policy:#x}",
    )
    return IdInfo(
        family_id=block.family_id,
        image_id=block.image_id,
        guest_svn=block.guest_svn,
        id_key_digest=hashlib.sha384(auth.id_key.to_bytes()).digest(),
        author_key_digest=(
            hashlib.sha384(auth.author_key.to_bytes()).digest() if with_author else bytes(48)
        ),
        author_key_en=with_author,
    )


def launch_finish(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = SnpLaunchFinishBuffer.from_bytes(buffer)
    guest = guest_of(core, buf.gctx_paddr)
    known = (
        SnpLaunchFinishBuffer.ID_BLOCK_EN
        | SnpLaunchFinishBuffer.AUTH_KEY_EN
        | SnpLaunchFinishBuffer.VCEK_DISABLED
    )
    require(buf.flags & ~known == 0, Status.INVALID_PARAM, f"reserved flags {buf.flags:#x}")
    with_block = buf.has(SnpLaunchFinishBuffer.ID_BLOCK_EN)
    require(
        with_block or not buf.has(SnpLaunchFinishBuffer.AUTH_KEY_EN),
        Status.INVALID_PARAM,
        "AUTH_KEY_EN needs ID_BLOCK_EN",
    )
    guest.id_info = _id_block(core, guest, buf, memory) if with_block else IdInfo()
    guest.host_data = buf.host_data
    guest.vcek_disabled = buf.has(SnpLaunchFinishBuffer.VCEK_DISABLED)
    return buffer


def decommission(core: Core, buffer: bytes, memory: Memory) -> bytes:
    guest = guest_of(core, SnpAddrBuffer.from_bytes(buffer).address)
    if guest.asid:
        core.asids.unbind(guest.asid, guest.gctx)
    snp(core).rmp.release_owner(guest.gctx, guest.asid)
    return buffer


HANDLERS: dict[SnpCommand, Handler] = {
    SnpCommand.SNP_GCTX_CREATE: gctx_create,
    SnpCommand.SNP_LAUNCH_START: launch_start,
    SnpCommand.SNP_ACTIVATE: activate,
    SnpCommand.SNP_LAUNCH_UPDATE: launch_update,
    SnpCommand.SNP_LAUNCH_FINISH: launch_finish,
    SnpCommand.SNP_DECOMMISSION: decommission,
}
