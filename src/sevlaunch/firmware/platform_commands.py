"""Platform commands: INIT, INIT_EX, SHUTDOWN, PLATFORM_RESET, PLATFORM_STATUS, PEK_GEN,
PEK_CSR, PEK_CERT_IMPORT, PDH_GEN, PDH_CERT_EXPORT, GET_ID, DF_FLUSH (doc §0, §3, §9)."""

from __future__ import annotations

from dataclasses import replace

from sevlaunch.crypto import ecc
from sevlaunch.errors import CryptoError, FormatError
from sevlaunch.firmware._core import CommandError, Core, Handler, length_query, require
from sevlaunch.firmware.identity import CHIP_ID_SIZE
from sevlaunch.firmware.memory import Memory
from sevlaunch.formats import sevcert
from sevlaunch.formats.commands import (
    Command,
    GetIdBuffer,
    InitBuffer,
    InitExBuffer,
    PdhCertExportBuffer,
    PekCertImportBuffer,
    PekCsrBuffer,
    PlatformStatusBuffer,
)
from sevlaunch.formats.sevcert import Algorithm, EccCurve, EccPublicKey, SevCert, Usage
from sevlaunch.formats.status import Status

TMR_SIZE = 1 << 20
CERT_SIZE = sevcert.SIZE
CHAIN_SIZE = 3 * CERT_SIZE


def _init_options(core: Core, options: int, tmr_paddr: int, tmr_len: int) -> None:
    require(
        options & ~InitBuffer.OPTION_ES == 0, Status.INVALID_PARAM, f"unknown options {options:#x}"
    )
    es = bool(options & InitBuffer.OPTION_ES)
    if es:
        require(
            core.profile.supports_es, Status.INVALID_PARAM, f"{core.profile.name} has no SEV-ES"
        )
        require(tmr_paddr % TMR_SIZE == 0, Status.INVALID_ADDRESS, "the TMR must be 1 MiB aligned")
        require(tmr_len >= TMR_SIZE, Status.INVALID_LENGTH, "the TMR must be 1 MiB long")
    core.es_enabled = es


def init(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = InitBuffer.from_bytes(buffer)
    _init_options(core, buf.options, buf.tmr_paddr, buf.tmr_len)
    return buffer


def init_ex(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """INIT with host-provided NV storage; the emulator keeps its own, so the area is only
    checked, not used."""
    buf = InitExBuffer.from_bytes(buffer)
    require(buf.length == InitExBuffer.LENGTH, Status.INVALID_LENGTH, "INIT_EX length must be 0x24")
    if buf.nv_paddr:
        require(buf.nv_len == InitExBuffer.NV_SIZE, Status.INVALID_LENGTH, "NV area must be 32 KiB")
    _init_options(core, buf.options, buf.tmr_paddr, buf.tmr_len)
    return buffer


def shutdown(core: Core, buffer: bytes, memory: Memory) -> bytes:
    core.drop_guests()
    core.es_enabled = False
    return buffer


def platform_reset(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """Delete the owner's keys: a new self-signed OCA, PEK and PDH; chip ID and CEK stay."""
    core.identity = core.identity.with_new_pek(core.rng, core.api)
    return buffer


def platform_status(core: Core, buffer: bytes, memory: Memory) -> bytes:
    PlatformStatusBuffer.from_bytes(buffer)
    return PlatformStatusBuffer(
        api_major=core.profile.api_major,
        api_minor=core.profile.api_minor,
        state=int(core.state),
        owner=int(core.identity.externally_owned),
        config=int(core.es_enabled),
        build_id=core.profile.build_id,
        guest_count=len(core.guests),
    ).to_bytes()


def pek_gen(core: Core, buffer: bytes, memory: Memory) -> bytes:
    core.identity = core.identity.with_new_pek(core.rng, core.api)
    return buffer


def pdh_gen(core: Core, buffer: bytes, memory: Memory) -> bytes:
    core.identity = core.identity.with_new_pdh(core.rng, core.api)
    return buffer


def pek_csr(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = PekCsrBuffer.from_bytes(buffer)
    done = replace(buf, length=CERT_SIZE).to_bytes()
    length_query(CERT_SIZE, buf.length, done)
    core.write(memory, buf.paddr, core.identity.pek_csr(core.api).to_bytes())
    return done


def _parse_cert(core: Core, memory: Memory, paddr: int, length: int, what: str) -> SevCert:
    require(length == CERT_SIZE, Status.INVALID_LENGTH, f"the {what} must be {CERT_SIZE:#x} bytes")
    try:
        return SevCert.from_bytes(core.read(memory, paddr, length))
    except FormatError as exc:
        raise CommandError(Status.INVALID_CERTIFICATE, f"{what}: {exc}") from exc


def _signed_by(cert: SevCert, signer: SevCert, link: str) -> None:
    """Some slot of ``cert`` names ``signer`` and verifies, else BAD_SIGNATURE."""
    key = signer.ecc_key
    for sig in cert.signatures:
        if sig.usage is signer.usage and sig.algorithm is signer.algorithm:
            try:
                ecc.verify(key, sig, cert.signed_bytes(), signer.algorithm.hash_name)
            except CryptoError:
                continue
            return
    raise CommandError(Status.BAD_SIGNATURE, f"{link} signature missing or invalid")


def _check_oca(oca: SevCert) -> None:
    require(
        oca.usage is Usage.OCA
        and oca.algorithm in (Algorithm.ECDSA_SHA256, Algorithm.ECDSA_SHA384)
        and isinstance(oca.public_key, EccPublicKey)
        and oca.public_key.curve is EccCurve.P384,
        Status.INVALID_CERTIFICATE,
        "the OCA must be a P-384 ECDSA certificate with usage OCA",
    )
    try:
        ecc.to_public_key(oca.ecc_key)
    except CryptoError as exc:
        raise CommandError(Status.INVALID_CERTIFICATE, f"OCA: {exc}") from exc
    _signed_by(oca, oca, "OCA -> OCA")


def pek_cert_import(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """Take ownership: the owner's OCA (self-signed) and the PEK it signed (doc §3)."""
    buf = PekCertImportBuffer.from_bytes(buffer)
    require(not core.identity.externally_owned, Status.ALREADY_OWNED, "PLATFORM_RESET first")
    pek = _parse_cert(core, memory, buf.pek_paddr, buf.pek_len, "PEK")
    oca = _parse_cert(core, memory, buf.oca_paddr, buf.oca_len, "OCA")
    _check_oca(oca)
    require(
        pek.usage is Usage.PEK and pek.public_key == core.identity.pek_cert.public_key,
        Status.INVALID_CERTIFICATE,
        "the PEK is not this platform's PEK (sign the CSR from PEK_CSR)",
    )
    _signed_by(pek, oca, "OCA -> PEK")
    require(
        pek.sig1.is_empty or pek.sig2.is_empty,
        Status.INVALID_CERTIFICATE,
        "the PEK needs a free slot for the CEK signature",
    )
    core.identity = core.identity.with_owner(pek, oca)
    return buffer


def pdh_cert_export(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """PDH, then PEK ‖ OCA ‖ CEK with the CEK unsigned, as real firmware exports it."""
    buf = PdhCertExportBuffer.from_bytes(buffer)
    done = replace(buf, pdh_len=CERT_SIZE, certs_len=CHAIN_SIZE).to_bytes()
    length_query(CERT_SIZE, buf.pdh_len, done)
    length_query(CHAIN_SIZE, buf.certs_len, done)
    ident = core.identity
    chain = ident.pek_cert.to_bytes() + ident.oca_cert.to_bytes()
    chain += ident.exported_cek(core.api).to_bytes()
    core.write(memory, buf.pdh_paddr, ident.pdh_cert.to_bytes())
    core.write(memory, buf.certs_paddr, chain)
    return done


def get_id(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """One socket's 64-byte ID; a longer buffer gets 64 bytes and length 64 back."""
    buf = GetIdBuffer.from_bytes(buffer)
    done = replace(buf, length=CHIP_ID_SIZE).to_bytes()
    length_query(CHIP_ID_SIZE, buf.length, done)
    core.write(memory, buf.paddr, core.identity.chip_id)
    return done


def df_flush(core: Core, buffer: bytes, memory: Memory) -> bytes:
    core.asids.flush()
    return buffer


HANDLERS: dict[Command, Handler] = {
    Command.INIT: init,
    Command.INIT_EX: init_ex,
    Command.SHUTDOWN: shutdown,
    Command.PLATFORM_RESET: platform_reset,
    Command.PLATFORM_STATUS: platform_status,
    Command.PEK_GEN: pek_gen,
    Command.PEK_CSR: pek_csr,
    Command.PEK_CERT_IMPORT: pek_cert_import,
    Command.PDH_GEN: pdh_gen,
    Command.PDH_CERT_EXPORT: pdh_cert_export,
    Command.GET_ID: get_id,
    Command.DF_FLUSH: df_flush,
}
