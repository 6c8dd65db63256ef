"""Identity, certificates, ownership and persistent state (doc §1-§3, §9)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto import TrustStore, ecc, verify_platform
from sevlaunch.errors import FormatError, MissingCekSignatureError, UntrustedRootError
from sevlaunch.firmware import Firmware
from sevlaunch.firmware.identity import ARK_KEY_ID, ASK_KEY_ID
from sevlaunch.formats import AmdCert, CaChain, CertExport, PlatformChain, SevCert
from sevlaunch.formats.sevcert import Algorithm, Usage
from sevlaunch.formats.status import Status
from tests.firmware.conftest import MakeFw
from tests.firmware.helpers import fails


def _chain(fw: Firmware, *, signed_cek: bool) -> PlatformChain:
    pdh, certs = fw.pdh_cert_export()
    export = CertExport.from_bytes(certs)
    cek = SevCert.from_bytes(fw.signed_cek()) if signed_cek else export.cek
    return PlatformChain(
        SevCert.from_bytes(pdh), export.pek, export.oca, cek, CaChain.from_bytes(fw.ca_chain())
    )


def _trust(fw: Firmware) -> TrustStore:
    return TrustStore().with_root(AmdCert.from_bytes(fw.ark()))


def test_exported_chain_with_signed_cek_verifies_to_the_emulated_ark(fw: Firmware) -> None:
    fw.init()
    verified = verify_platform(_chain(fw, signed_cek=True), _trust(fw))
    assert [(link.signer, link.subject) for link in verified.links] == [
        ("ARK", "ARK"),
        ("ARK", "ASK"),
        ("ASK", "CEK"),
        ("OCA", "OCA"),
        ("OCA", "PEK"),
        ("CEK", "PEK"),
        ("PEK", "PDH"),
    ]


def test_exported_cek_is_unsigned_like_real_firmware(fw: Firmware) -> None:
    fw.init()
    chain = _chain(fw, signed_cek=False)
    assert chain.cek.sig1.is_empty
    assert chain.cek.sig2.is_empty
    with pytest.raises(MissingCekSignatureError):
        verify_platform(chain, _trust(fw))


def test_emulated_roots_cannot_pass_for_amd(fw: Firmware) -> None:
    ca = CaChain.from_bytes(fw.ca_chain())
    assert ca.ark.key_id == ARK_KEY_ID
    assert ca.ask.key_id == ASK_KEY_ID
    assert ARK_KEY_ID.startswith(b"sevlaunch-emu")
    assert (ca.ark.modulus_size, ca.ask.certifying_id) == (4096, ARK_KEY_ID)
    fw.init()
    with pytest.raises(UntrustedRootError):
        verify_platform(_chain(fw, signed_cek=True), TrustStore())


def test_certificate_contents(fw: Firmware) -> None:
    fw.init()
    pdh, certs = fw.pdh_cert_export()
    export = CertExport.from_bytes(certs)
    p = fw.profile
    for cert in (SevCert.from_bytes(pdh), export.pek, export.oca, export.cek):
        assert (cert.api_major, cert.api_minor) == (p.api_major, p.api_minor)
    assert SevCert.from_bytes(pdh).algorithm is Algorithm.ECDH_SHA256
    assert (export.pek.sig1.usage, export.pek.sig2.usage) == (Usage.OCA, Usage.CEK)
    signed = SevCert.from_bytes(fw.signed_cek())
    assert (signed.sig1.usage, signed.sig1.algorithm) == (Usage.ASK, Algorithm.RSA_SHA384)


def test_get_id_is_64_bytes_and_stable(fw: Firmware, make_fw: MakeFw) -> None:
    chip = fw.get_id()
    assert len(chip) == 64
    assert chip == fw.chip_id == make_fw(seed=9).get_id()


def _own(fw: Firmware, seed: int = 3) -> tuple[bytes, bytes]:
    """Sign the PEK CSR with a fresh owner OCA; returns (pek, oca)."""
    oca_key = ecc.generate_p384(seed)
    csr = SevCert.from_bytes(fw.pek_csr())
    assert csr.sig1.is_empty
    assert csr.sig2.is_empty
    oca = SevCert(
        Usage.OCA,
        Algorithm.ECDSA_SHA256,
        ecc.from_public_key(oca_key.public_key()),
        csr.sig1,
        csr.sig2,
    )
    oca = oca.with_signature(
        1, ecc.sign(oca_key, oca.signed_bytes(), Usage.OCA, Algorithm.ECDSA_SHA256)
    )
    pek = csr.with_signature(
        1, ecc.sign(oca_key, csr.signed_bytes(), Usage.OCA, Algorithm.ECDSA_SHA256)
    )
    return pek.to_bytes(), oca.to_bytes()


def test_take_ownership_then_reset(fw: Firmware) -> None:
    fw.init()
    pek, oca = _own(fw)
    fw.pek_cert_import(pek, oca)
    assert fw.platform_status().externally_owned
    chain = _chain(fw, signed_cek=True)
    assert chain.oca.to_bytes() == oca
    verify_platform(chain, _trust(fw))  # CEK signature added in slot 2
    fails(Status.ALREADY_OWNED, fw.pek_cert_import, pek, oca)
    fw.shutdown()
    fw.platform_reset()
    fw.init()
    assert not fw.platform_status().externally_owned
    verify_platform(_chain(fw, signed_cek=True), _trust(fw))


def test_import_refuses_bad_certificates(fw: Firmware) -> None:
    fw.init()
    pek, oca = _own(fw)
    other_pek, _ = _own(fw, seed=4)
    fails(Status.BAD_SIGNATURE, fw.pek_cert_import, other_pek, oca)  # signed by another OCA
    bad_self_sig = oca[:0x41C] + bytes([oca[0x41C] ^ 1]) + oca[0x41D:]
    fails(Status.BAD_SIGNATURE, fw.pek_cert_import, pek, bad_self_sig)
    fails(Status.INVALID_LENGTH, fw.pek_cert_import, pek, oca[:-1])
    fails(Status.INVALID_CERTIFICATE, fw.pek_cert_import, pek, bytes(0x824))
    fails(Status.INVALID_CERTIFICATE, fw.pek_cert_import, oca, oca)  # not a PEK
    fw.pek_gen()  # the CSR no longer matches the PEK
    fails(Status.INVALID_CERTIFICATE, fw.pek_cert_import, pek, oca)
    assert not fw.platform_status().externally_owned


def test_pek_gen_and_pdh_gen(fw: Firmware) -> None:
    fw.init()
    pdh1, certs1 = fw.pdh_cert_export()
    fw.pdh_gen()
    pdh2, certs2 = fw.pdh_cert_export()
    assert pdh1 != pdh2
    assert certs1 == certs2
    fw.pek_gen()
    pdh3, certs3 = fw.pdh_cert_export()
    assert pdh3 != pdh2
    assert certs3[:0x824] != certs2[:0x824]
    verify_platform(_chain(fw, signed_cek=True), _trust(fw))


def test_persistent_state_round_trips_and_keeps_identity(fw: Firmware, make_fw: MakeFw) -> None:
    fw.init()
    pek, oca = _own(fw)
    fw.pek_cert_import(pek, oca)
    state = fw.persistent_state()
    again = Firmware(fw.profile, state=state)
    assert again.persistent_state() == state
    assert again.state.name == "UNINIT"  # a restart: no guests, platform uninitialised
    again.init()
    assert again.pdh_cert_export() == fw.pdh_cert_export()
    assert again.platform_status().externally_owned


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: b"not json",
        lambda d: b"[]",
        lambda d: d.replace(b'"version": 1', b'"version": 2'),
        lambda d: d.replace(b'"chip_id": "', b'"chip_id": "zz'),
        lambda d: d.replace(b'"format"', b'"fromat"'),
    ],
)
def test_garbage_state_is_a_format_error(fw: Firmware, mutate: object) -> None:
    state = fw.persistent_state()
    with pytest.raises(FormatError):
        Firmware(fw.profile, state=mutate(state))  # type: ignore[operator]


def test_state_with_mismatched_key_is_refused(fw: Firmware) -> None:
    doc = json.loads(fw.persistent_state())
    doc["pek_key"] = doc["pdh_key"]
    with pytest.raises(FormatError) as info:
        Firmware(fw.profile, state=json.dumps(doc).encode())
    assert info.value.field == "pek_key"
    doc = json.loads(fw.persistent_state())
    doc["pdh_key"] = "ff" * 48
    with pytest.raises(FormatError):
        Firmware(fw.profile, state=json.dumps(doc).encode())


def test_pdh_is_the_ecdh_key_the_firmware_uses(fw: Firmware) -> None:
    fw.init()
    pdh = SevCert.from_bytes(fw.pdh_cert_export()[0])
    assert isinstance(ecc.to_public_key(pdh.ecc_key), ec.EllipticCurvePublicKey)
