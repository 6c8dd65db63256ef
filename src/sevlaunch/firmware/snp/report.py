"""The attestation report the firmware writes for MSG_REPORT_REQ (sev-snp.md §4), signed with
ECDSA P-384 over bytes 0x000–0x29F (RFC 6979 nonces: no hidden randomness).

Signer: nothing with MASK_CHIP_KEY (zero signature, SIGNING_KEY 7); else the loaded VLEK;
else the VCEK at REPORTED_TCB, unless the guest was launched with VCEK_DISABLED, when there
is no key to sign with (the request answers INVALID_KEY). CHIP_ID is zero with MASK_CHIP_ID
and, on Turin, only its first 8 bytes are used. Version 5 reports carry the (zero) mitigation
vectors.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.firmware._core import Core
from sevlaunch.firmware.snp import identity as snp_id
from sevlaunch.firmware.snp.guest import SnpGuest
from sevlaunch.firmware.snp.platform_commands import snp, snp_identity
from sevlaunch.formats.snp.ecdsa import SIGNATURE_SIZE
from sevlaunch.formats.snp.policy import KeyInfo, SigningKey
from sevlaunch.formats.snp.report import SIGNED_SIZE, AttestationReport
from sevlaunch.formats.snp.tcb import Generation

NO_MIGRATION_AGENT = b"\xff" * 32


def _signer(core: Core, guest: SnpGuest) -> tuple[SigningKey, ec.EllipticCurvePrivateKey | None]:
    platform = snp(core)
    if platform.mask_chip_key:
        return SigningKey.NONE, None
    if platform.vlek is not None:
        return SigningKey.VLEK, platform.vlek.key
    if guest.vcek_disabled:
        return SigningKey.NONE, None
    tcb = platform.profile.tcb(platform.reported_tcb)
    return SigningKey.VCEK, snp_id.vcek_key(core.identity.cek_key, tcb)


def _chip_id(core: Core) -> bytes:
    platform = snp(core)
    if platform.mask_chip_id:
        return bytes(64)
    chip = core.identity.chip_id
    if platform.profile.generation is Generation.TURIN:
        return chip[:8] + bytes(56)
    return chip


def build_report(core: Core, guest: SnpGuest, report_data: bytes, vmpl: int) -> bytes | None:
    """The signed 1184-byte report, or None when the guest may not use the only key."""
    platform = snp(core)
    profile = platform.profile
    signing, key = _signer(core, guest)
    if key is None and not platform.mask_chip_key:
        return None
    committed = snp_identity(core).committed
    info = guest.id_info
    version = profile.report_version
    report = AttestationReport(
        version=version,
        guest_svn=info.guest_svn,
        policy=guest.policy,
        family_id=info.family_id,
        image_id=info.image_id,
        vmpl=vmpl,
        signature_algo=1,
        current_tcb=platform.current_tcb,
        platform_info=profile.platform_info,
        key_info=KeyInfo(info.author_key_en, platform.mask_chip_key, int(signing)).to_int(),
        report_data=report_data,
        measurement=guest.ld,
        host_data=guest.host_data,
        id_key_digest=info.id_key_digest,
        author_key_digest=info.author_key_digest,
        report_id=guest.report_id,
        report_id_ma=NO_MIGRATION_AGENT,
        reported_tcb=platform.reported_tcb,
        chip_id=_chip_id(core),
        committed_tcb=committed.tcb,
        current_build=profile.firmware.build,
        current_minor=profile.firmware.minor,
        current_major=profile.firmware.major,
        committed_build=committed.build,
        committed_minor=committed.minor,
        committed_major=committed.major,
        launch_tcb=guest.launch_tcb,
        signature=bytes(SIGNATURE_SIZE),
        cpuid_fam_id=profile.cpuid_family if version >= 3 else 0,
        cpuid_mod_id=profile.cpuid_model if version >= 3 else 0,
        cpuid_step=profile.cpuid_stepping if version >= 3 else 0,
    )
    unsigned = report.to_bytes()
    if key is None:
        return unsigned
    signature = ecdsa.sign(key, unsigned[:SIGNED_SIZE], deterministic=True)
    return unsigned[:SIGNED_SIZE] + signature.to_bytes()
