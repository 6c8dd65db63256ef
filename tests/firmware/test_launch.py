"""A whole launch against the guest owner's cryptography (sevlaunch.crypto, not firmware)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from sevlaunch.crypto import ecc
from sevlaunch.firmware import Firmware, GuestState, SparseMemory
from sevlaunch.formats import Policy, Session, SevCert
from sevlaunch.formats.commands import Command, LaunchStartBuffer
from sevlaunch.formats.sevcert import Usage
from sevlaunch.formats.status import Status
from tests.firmware.conftest import MakeFw
from tests.firmware.helpers import OwnerSession, fails, owner_session, sha256

SEV_ASID = 100
ES_ASID = 1
OVMF = bytes(range(256)) * 64  # 16 KiB of recognisable "firmware"
OVMF_AT = 0xFFFF_C000
SECRET_AT = 0x80_C000


def _start(fw: Firmware, policy: int, **tamper: bytes) -> tuple[int, OwnerSession]:
    owner = owner_session(fw.pdh_cert_export()[0], policy)
    session = replace(Session.from_bytes(owner.session), **tamper).to_bytes()
    return fw.launch_start(policy, owner.godh, session), owner


def test_owner_session_is_accepted_and_measurement_verifies_with_tik(es_fw: Firmware) -> None:
    handle, owner = _start(es_fw, 0)
    assert es_fw.guest_state(handle) is GuestState.LUPDATE
    es_fw.activate(handle, SEV_ASID)
    mem = SparseMemory()
    mem.write(OVMF_AT, OVMF)
    es_fw.launch_update_data(handle, mem, OVMF_AT, len(OVMF))
    assert mem.read(OVMF_AT, len(OVMF)) != OVMF  # the host now sees ciphertext
    measurement = es_fw.launch_measure(handle)
    expected = owner.expected_measure(es_fw, sha256(OVMF), measurement.mnonce)
    assert measurement.measure == expected
    assert es_fw.guest_state(handle) is GuestState.LSECRET


def test_each_measure_has_a_fresh_mnonce(make_fw: MakeFw) -> None:
    nonces = set()
    for seed in (1, 2):
        fw = make_fw(seed=seed)
        fw.init()
        handle, _ = _start(fw, 0)
        nonces.add(fw.launch_measure(handle).mnonce)
    assert len(nonces) == 2


def test_secret_lands_in_guest_memory_under_the_vek(es_fw: Firmware) -> None:
    handle, owner = _start(es_fw, 0)
    es_fw.activate(handle, SEV_ASID)
    mem = SparseMemory()
    measure = es_fw.launch_measure(handle).measure
    secret = b"MY-LUKS-PASSPHRASE".ljust(64, b"\0")
    header, ciphertext = owner.secret_packet(secret, measure, bytes(range(16)))
    es_fw.launch_secret(handle, header, ciphertext, mem, SECRET_AT)
    assert mem.read(SECRET_AT, 64) not in (secret, ciphertext)
    assert es_fw.dbg_decrypt(handle, mem, SECRET_AT, 64) == secret
    assert es_fw.guest_read(handle, SECRET_AT + 3, 15, mem) == secret[3:18]
    es_fw.launch_finish(handle)
    assert es_fw.guest_state(handle) is GuestState.RUNNING


@pytest.mark.parametrize("field", ["wrap_mac", "policy_mac", "wrap_tk", "nonce"])
def test_tampered_session_is_bad_measurement(es_fw: Firmware, field: str) -> None:
    owner = owner_session(es_fw.pdh_cert_export()[0], 0)
    blob = Session.from_bytes(owner.session)
    value = bytearray(getattr(blob, field))
    value[0] ^= 1
    tampered = replace(blob, **{field: bytes(value)}).to_bytes()
    fails(Status.BAD_MEASUREMENT, es_fw.launch_start, 0, owner.godh, tampered)
    assert es_fw.platform_status().guest_count == 0


def test_policy_other_than_the_macd_one_is_bad_measurement(es_fw: Firmware) -> None:
    owner = owner_session(es_fw.pdh_cert_export()[0], 0x1)
    fails(Status.BAD_MEASUREMENT, es_fw.launch_start, 0x0, owner.godh, owner.session)


def test_tampered_secret_packet_is_bad_measurement(es_fw: Firmware) -> None:
    handle, owner = _start(es_fw, 0)
    es_fw.activate(handle, SEV_ASID)
    measure = es_fw.launch_measure(handle).measure
    header, ciphertext = owner.secret_packet(bytes(32), measure, bytes(16))
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    fails(Status.BAD_MEASUREMENT, es_fw.launch_secret, handle, header, flipped, SparseMemory(), 0)
    wrong_measure = owner.secret_packet(bytes(32), bytes(32), bytes(16))[0]
    fails(
        Status.BAD_MEASUREMENT,
        es_fw.launch_secret,
        handle,
        wrong_measure,
        ciphertext,
        SparseMemory(),
        0,
    )


def test_godh_signatures_are_ignored_but_key_checked(es_fw: Firmware) -> None:
    owner = owner_session(es_fw.pdh_cert_export()[0], 0)
    garbage_sigs = owner.godh[:0x414] + bytes([0xAA]) * (0x824 - 0x414)
    assert es_fw.launch_start(0, garbage_sigs, owner.session) > 0
    not_pdh = owner.godh[:8] + int(Usage.PEK).to_bytes(4, "little") + owner.godh[12:]
    fails(Status.INVALID_CERTIFICATE, es_fw.launch_start, 0, not_pdh, owner.session)
    off_curve = owner.godh[:0x14] + bytes([owner.godh[0x14] ^ 1]) + owner.godh[0x15:]
    fails(Status.INVALID_CERTIFICATE, es_fw.launch_start, 0, off_curve, owner.session)
    fails(Status.INVALID_LENGTH, es_fw.launch_start, 0, owner.godh[:-1], owner.session)


def test_launch_without_session_uses_firmware_keys(es_fw: Firmware) -> None:
    handle = es_fw.launch_start(0)
    assert es_fw.guest_status(handle).state == GuestState.LUPDATE


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        (Policy.parse("es").to_int(), "es on a non-ES platform"),
        (0x40, "reserved bit 6"),
        (Policy(api_major=1, api_minor=56).to_int(), "newer minimum API"),
        (Policy(api_major=2).to_int(), "newer major API"),
    ],
)
def test_policy_failures(fw: Firmware, policy: int, why: str) -> None:
    fw.init(es=False)
    owner = owner_session(fw.pdh_cert_export()[0], policy)
    fails(Status.POLICY_FAILURE, fw.launch_start, policy, owner.godh, owner.session)


def test_minimum_api_equal_to_platform_is_accepted(es_fw: Firmware) -> None:
    policy = Policy(api_major=1, api_minor=55).to_int()
    handle, _ = _start(es_fw, policy)
    assert es_fw.guest_status(handle).policy == policy


def test_key_sharing_rules(es_fw: Firmware) -> None:
    first, _ = _start(es_fw, 0)
    shared = es_fw.launch_start(0, share=first)
    es_fw.activate(first, SEV_ASID)
    es_fw.activate(shared, SEV_ASID)  # same key: same ASID is fine
    other = es_fw.launch_start(0)
    fails(Status.ASID_OWNED, es_fw.activate, other, SEV_ASID)
    noks = Policy.parse("noks").to_int()
    fails(Status.POLICY_FAILURE, es_fw.launch_start, noks, share=first)
    guarded = es_fw.launch_start(noks)
    fails(Status.POLICY_FAILURE, es_fw.launch_start, 0, share=guarded)
    es = Policy.parse("es").to_int()
    fails(Status.POLICY_FAILURE, es_fw.launch_start, es, share=first)
    fails(Status.INVALID_GUEST, es_fw.launch_start, 0, share=999)


def test_shared_key_guests_read_each_others_memory(es_fw: Firmware) -> None:
    first = es_fw.launch_start(0)
    second = es_fw.launch_start(0, share=first)
    for h in (first, second):
        es_fw.activate(h, SEV_ASID)
    mem = SparseMemory()
    es_fw.guest_write(first, 0x1234, b"shared", mem)
    assert es_fw.guest_read(second, 0x1234, 6, mem) == b"shared"


def test_debug_refused_under_nodbg(es_fw: Firmware) -> None:
    handle = es_fw.launch_start(Policy.parse("nodbg").to_int())
    es_fw.activate(handle, SEV_ASID)
    fails(Status.POLICY_FAILURE, es_fw.dbg_decrypt, handle, SparseMemory(), 0, 16)
    fails(Status.POLICY_FAILURE, es_fw.dbg_encrypt, handle, SparseMemory(), 0, bytes(16))


def test_dbg_encrypt_then_decrypt_and_alignment(es_fw: Firmware) -> None:
    handle = es_fw.launch_start(0)
    es_fw.activate(handle, SEV_ASID)
    mem = SparseMemory()
    es_fw.dbg_encrypt(handle, mem, 0x2000, b"A" * 32)
    assert es_fw.guest_read(handle, 0x2000, 32, mem) == b"A" * 32
    assert es_fw.dbg_decrypt(handle, mem, 0x2000, 32) == b"A" * 32
    fails(Status.INVALID_ADDRESS, es_fw.dbg_decrypt, handle, mem, 0x2008, 16)
    fails(Status.INVALID_LENGTH, es_fw.dbg_decrypt, handle, mem, 0x2000, 8)


def test_update_data_alignment_and_activation(es_fw: Firmware) -> None:
    handle = es_fw.launch_start(0)
    mem = SparseMemory()
    fails(Status.INACTIVE, es_fw.launch_update_data, handle, mem, 0, 16)
    es_fw.activate(handle, SEV_ASID)
    fails(Status.INVALID_ADDRESS, es_fw.launch_update_data, handle, mem, 8, 16)
    fails(Status.INVALID_LENGTH, es_fw.launch_update_data, handle, mem, 0, 24)
    fails(Status.INVALID_LENGTH, es_fw.launch_update_data, handle, mem, 0, 0)


def test_split_updates_measure_like_one(make_fw: MakeFw) -> None:
    digests = []
    for chunks in ((len(OVMF),), (4096, len(OVMF) - 4096)):
        fw = make_fw()
        fw.init()
        handle, owner = _start(fw, 0)
        fw.activate(handle, SEV_ASID)
        mem = SparseMemory()
        mem.write(OVMF_AT, OVMF)
        at = OVMF_AT
        for size in chunks:
            fw.launch_update_data(handle, mem, at, size)
            at += size
        m = fw.launch_measure(handle)
        assert m.measure == owner.expected_measure(fw, sha256(OVMF), m.mnonce)
        digests.append(mem.read(OVMF_AT, len(OVMF)))
    assert digests[0] == digests[1]  # ciphertext depends on key and address, not chunking


def test_es_vmsa_is_measured_after_data(es_fw: Firmware) -> None:
    policy = Policy.parse("es").to_int()
    handle, owner = _start(es_fw, policy)
    es_fw.activate(handle, ES_ASID)
    mem = SparseMemory()
    vmsa = bytes([0x5A]) * 4096
    mem.write(OVMF_AT, OVMF)
    mem.write(0x1000, vmsa)
    es_fw.launch_update_data(handle, mem, OVMF_AT, len(OVMF))
    es_fw.launch_update_vmsa(handle, mem, 0x1000)
    m = es_fw.launch_measure(handle)
    assert m.measure == owner.expected_measure(es_fw, sha256(OVMF, vmsa), m.mnonce)


def test_vmsa_rules(es_fw: Firmware) -> None:
    plain = es_fw.launch_start(0)
    es_fw.activate(plain, SEV_ASID)
    fails(Status.POLICY_FAILURE, es_fw.launch_update_vmsa, plain, SparseMemory(), 0)
    es = es_fw.launch_start(Policy.parse("es").to_int())
    es_fw.activate(es, ES_ASID)
    fails(Status.INVALID_ADDRESS, es_fw.launch_update_vmsa, es, SparseMemory(), 0x10)


def test_attestation_report_is_signed_by_the_pek(es_fw: Firmware) -> None:
    handle, _ = _start(es_fw, 0)
    es_fw.launch_measure(handle)
    mnonce = bytes(range(16))
    report = es_fw.attestation(handle, mnonce)
    assert len(report) == 0xD0
    assert report[:16] == mnonce
    assert report[0x10:0x30] == hashlib.sha256().digest()
    assert int.from_bytes(report[0x34:0x38], "little") == Usage.PEK
    pek = SevCert.from_bytes(es_fw.pdh_cert_export()[1][:0x824])
    sig = pek.sig1.__class__(Usage.PEK, pek.algorithm, report[0x40:0xD0].ljust(512, b"\0"))
    ecc.verify(pek.ecc_key, sig, report[:0x34], "sha256")


def test_attestation_does_not_exist_before_api_0_23(make_fw: MakeFw) -> None:
    from sevlaunch.firmware import PROFILES

    fw = make_fw(PROFILES["naples"])
    fw.init()
    handle = fw.launch_start(0)
    fw.launch_measure(handle)
    fails(Status.INVALID_COMMAND, fw.attestation, handle, bytes(16))


def test_launch_start_writes_back_the_new_handle(es_fw: Firmware) -> None:
    buf = LaunchStartBuffer(policy=0).to_bytes()
    status, written = es_fw.execute(Command.LAUNCH_START, buf, SparseMemory())
    assert status is Status.SUCCESS
    assert LaunchStartBuffer.from_bytes(written).handle == 1
