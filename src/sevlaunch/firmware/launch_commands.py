"""Launch commands: LAUNCH_START, LAUNCH_UPDATE_DATA, LAUNCH_UPDATE_VMSA, LAUNCH_MEASURE,
LAUNCH_SECRET, LAUNCH_FINISH and ATTESTATION (doc §4-§8).

Status choices where the doc marks the firmware's behaviour [spec] or [uncertain]:

- policy with reserved bits 6-15 set, a minimum API above the platform's, SEV-ES on a
  platform not initialised for SEV-ES, or key sharing when either guest has NOKS, or between
  an SEV-ES and a plain SEV guest: POLICY_FAILURE;
- WRAP_MAC or POLICY_MAC mismatch: BAD_MEASUREMENT (observed on hardware); a GODH that is not
  a P-384 ECDH certificate: INVALID_CERTIFICATE;
- LAUNCH_UPDATE_VMSA for a guest without the ES policy bit: POLICY_FAILURE;
- LAUNCH_SECRET packet MAC mismatch: BAD_MEASUREMENT; FLAGS other than 0 (compression):
  INVALID_PARAM; the guest range must be 16-byte aligned, like every encrypted write;
- commands that write guest memory under the VEK need an active guest: INACTIVE otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from sevlaunch.crypto import ecc, kdf, launch
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.crypto.symmetric import aes128_ctr, check_mac
from sevlaunch.errors import CryptoError, FormatError, IntegrityError
from sevlaunch.firmware._core import (
    CommandError,
    Core,
    Handler,
    aligned,
    length_query,
    require,
    require_active,
)
from sevlaunch.firmware.encryption import VEK_SIZE, GuestCipher, granules
from sevlaunch.firmware.guest import GuestContext
from sevlaunch.firmware.memory import Memory
from sevlaunch.formats import secret, sevcert
from sevlaunch.formats._codec import Reader
from sevlaunch.formats.commands import (
    AttestationBuffer,
    Command,
    LaunchMeasureBuffer,
    LaunchSecretBuffer,
    LaunchStartBuffer,
    LaunchUpdateBuffer,
)
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.secret import SecretHeader
from sevlaunch.formats.session import MEASUREMENT_SIZE, SESSION_SIZE, Session
from sevlaunch.formats.sevcert import Algorithm, EccCurve, EccPublicKey, Usage
from sevlaunch.formats.status import Status

VMSA_SIZE = 4096
ATTESTATION_SIZE = 0xD0


def _policy(core: Core, value: int) -> Policy:
    try:
        policy = Policy.from_int(value)
    except FormatError as exc:
        raise CommandError(Status.POLICY_FAILURE, str(exc)) from exc
    require(
        (policy.api_major, policy.api_minor) <= core.api,
        Status.POLICY_FAILURE,
        f"policy needs API {policy.api_major}.{policy.api_minor}, platform has "
        f"{core.api[0]}.{core.api[1]}",
    )
    require(
        not policy.requires_es or core.es_enabled,
        Status.POLICY_FAILURE,
        "an SEV-ES policy needs a platform initialised with SEV-ES",
    )
    return policy


def _godh(core: Core, memory: Memory, buf: LaunchStartBuffer) -> EccPublicKey:
    """The guest owner's DH public key. Like real firmware, only the header and key are
    read: GODH signatures are not validated (sev-tool self-signs, virtee leaves slots empty)."""
    require(buf.godh_len == sevcert.SIZE, Status.INVALID_LENGTH, "the GODH is 0x824 bytes")
    data = core.read(memory, buf.godh_paddr, sevcert.SIZE)
    r = Reader("GODH certificate", data)
    try:
        version, usage, algo = r.u32("version", 0), r.u32("pub_key_usage", 8), r.u32("algo", 0xC)
        key = EccPublicKey.from_bytes(r.raw("pub_key", sevcert.PUBKEY_OFFSET, sevcert.PUBKEY_SIZE))
    except FormatError as exc:
        raise CommandError(Status.INVALID_CERTIFICATE, f"GODH: {exc}") from exc
    require(
        version == 1
        and usage == Usage.PDH
        and algo in (Algorithm.ECDH_SHA256, Algorithm.ECDH_SHA384)
        and key.curve is EccCurve.P384,
        Status.INVALID_CERTIFICATE,
        "the GODH must be a version-1 P-384 ECDH certificate with usage PDH",
    )
    return key


def _transport_keys(core: Core, memory: Memory, buf: LaunchStartBuffer) -> TransportKeys:
    """Unwrap TEK ‖ TIK from the session; without GODH and session the firmware picks them."""
    if not (buf.godh_len or buf.session_len):
        return TransportKeys(core.rng(16), core.rng(16))
    godh = _godh(core, memory, buf)
    require(buf.session_len == SESSION_SIZE, Status.INVALID_LENGTH, "the session is 0x80 bytes")
    session = Session.from_bytes(core.read(memory, buf.session_paddr, SESSION_SIZE))
    try:
        shared = ecc.ecdh(core.identity.pdh_private, godh)
    except CryptoError as exc:
        raise CommandError(Status.INVALID_CERTIFICATE, f"GODH: {exc}") from exc
    master = kdf.master_secret(shared, session.nonce)
    try:
        keys = launch.unwrap_keys(master, session)
        launch.check_policy_mac(keys.tik, buf.policy, session.policy_mac)
    except IntegrityError as exc:
        raise CommandError(Status.BAD_MEASUREMENT, str(exc)) from exc
    return keys


def _key_source(core: Core, handle: int, policy: Policy) -> GuestContext | None:
    """The guest whose key a new guest shares (handle != 0), checked against both policies."""
    if handle == 0:
        kind = [g for g in core.guests.values() if g.es == policy.requires_es]
        asids = core.profile.es_asids if policy.requires_es else core.profile.sev_asids
        require(
            len({g.key_group for g in kind}) < len(asids),
            Status.RESOURCE_LIMIT,
            f"all {len(asids)} {'SEV-ES' if policy.requires_es else 'SEV'} ASIDs have a key",
        )
        return None
    source = core.guest(handle)
    require(
        source.policy.allows_key_sharing and policy.allows_key_sharing,
        Status.POLICY_FAILURE,
        "key sharing needs NOKS clear in both policies",
    )
    require(source.es == policy.requires_es, Status.POLICY_FAILURE, "SEV and SEV-ES cannot share")
    return source


def launch_start(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = LaunchStartBuffer.from_bytes(buffer)
    policy = _policy(core, buf.policy)
    source = _key_source(core, buf.handle, policy)
    keys = _transport_keys(core, memory, buf)
    if source is None:
        cipher, group = GuestCipher(core.rng(VEK_SIZE)), core.next_key_group
        core.next_key_group += 1
    else:
        cipher, group = source.cipher, source.key_group
    handle = core.new_handle()
    core.guests[handle] = GuestContext(handle, policy, group, cipher, keys.tik, keys.tek)
    return replace(buf, handle=handle).to_bytes()


def _encrypt_in_place(
    core: Core, guest: GuestContext, memory: Memory, paddr: int, length: int
) -> None:
    """Measure the plaintext and write it back under the VEK, a granule at a time."""
    for addr, size in granules(core.phys(paddr), length):
        chunk = memory.read(addr, size)
        guest.digest.update(chunk)
        memory.write(addr, guest.cipher.encrypt_at(addr, chunk))


def launch_update_data(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = LaunchUpdateBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    require_active(guest, Command.LAUNCH_UPDATE_DATA)
    aligned(buf.paddr, buf.length, Command.LAUNCH_UPDATE_DATA)
    _encrypt_in_place(core, guest, memory, buf.paddr, buf.length)
    return buffer


def launch_update_vmsa(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """Add one vCPU's 4 KiB VMSA: measured after the data, in the order given (doc §6)."""
    buf = LaunchUpdateBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    require(guest.es, Status.POLICY_FAILURE, "LAUNCH_UPDATE_VMSA is for SEV-ES guests only")
    require_active(guest, Command.LAUNCH_UPDATE_VMSA)
    require(buf.paddr % VMSA_SIZE == 0, Status.INVALID_ADDRESS, "a VMSA is page aligned")
    require(buf.length == VMSA_SIZE, Status.INVALID_LENGTH, "a VMSA is 4096 bytes")
    _encrypt_in_place(core, guest, memory, buf.paddr, buf.length)
    return buffer


def launch_measure(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = LaunchMeasureBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    done = replace(buf, length=MEASUREMENT_SIZE).to_bytes()
    length_query(MEASUREMENT_SIZE, buf.length, done)
    mnonce = core.rng(16)
    measure = launch.measurement_mac(
        guest.tik,
        api_major=core.profile.api_major,
        api_minor=core.profile.api_minor,
        build_id=core.profile.build_id,
        policy=guest.policy.to_int(),
        digest=guest.digest.digest(),
        mnonce=mnonce,
    )
    core.write(memory, buf.paddr, measure + mnonce)
    guest.measure = measure
    return done


def launch_secret(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = LaunchSecretBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    require_active(guest, Command.LAUNCH_SECRET)
    require(buf.hdr_len == secret.HEADER_SIZE, Status.INVALID_LENGTH, "the header is 0x34 bytes")
    require(buf.guest_len == buf.trans_len, Status.INVALID_LENGTH, "guest and trans lengths differ")
    aligned(buf.guest_paddr, buf.guest_len, Command.LAUNCH_SECRET)
    header = SecretHeader.from_bytes(core.read(memory, buf.hdr_paddr, buf.hdr_len))
    require(header.flags == 0, Status.INVALID_PARAM, "compressed secrets are not supported")
    if guest.measure is None:  # unreachable: LSECRET is entered by LAUNCH_MEASURE
        raise CommandError(Status.INVALID_GUEST_STATE, "no launch measurement yet")
    ciphertext = core.read(memory, buf.trans_paddr, buf.trans_len)
    expected = launch.secret_mac(
        guest.tik,
        flags=header.flags,
        iv=header.iv,
        guest_length=buf.guest_len,
        ciphertext=ciphertext,
        measure=guest.measure,
    )
    try:
        check_mac("packet MAC", expected, header.mac)
    except IntegrityError as exc:
        raise CommandError(Status.BAD_MEASUREMENT, str(exc)) from exc
    plaintext = aes128_ctr(guest.tek, header.iv, ciphertext)
    guest.cipher.store(memory, core.phys(buf.guest_paddr), plaintext)
    return buffer


def launch_finish(core: Core, buffer: bytes, memory: Memory) -> bytes:
    return buffer


def attestation(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """The PEK-signed report over MNONCE ‖ LAUNCH_DIGEST ‖ POLICY (doc §7)."""
    buf = AttestationBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    done = replace(buf, length=ATTESTATION_SIZE).to_bytes()
    length_query(ATTESTATION_SIZE, buf.length, done)
    body = buf.mnonce + guest.digest.digest() + guest.policy.to_bytes()
    signature = ecc.sign(core.identity.pek_private, body, Usage.PEK, Algorithm.ECDSA_SHA256)
    header = int(Usage.PEK).to_bytes(4, "little") + int(Algorithm.ECDSA_SHA256).to_bytes(
        4, "little"
    )
    report = body + header + bytes(4) + signature.value[:144]
    core.write(memory, buf.paddr, report)
    return done


HANDLERS: dict[Command, Handler] = {
    Command.LAUNCH_START: launch_start,
    Command.LAUNCH_UPDATE_DATA: launch_update_data,
    Command.LAUNCH_UPDATE_VMSA: launch_update_vmsa,
    Command.LAUNCH_MEASURE: launch_measure,
    Command.LAUNCH_SECRET: launch_secret,
    Command.LAUNCH_FINISH: launch_finish,
    Command.ATTESTATION: attestation,
}
