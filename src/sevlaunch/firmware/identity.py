"""A platform's identity: chip ID, its keys and certificates, and who owns it (doc §1-§3).

- CEK (chip endorsement key): fixed per chip; firmware exports it *unsigned*, the emulated
  key server (:meth:`Identity.signed_cek`) has the copy signed by the emulated ASK.
- OCA: self-signed by the firmware on a self-owned platform; the owner's on an externally
  owned one (then the firmware holds no OCA private key).
- PEK: signed by the OCA (slot 1) and the CEK (slot 2). PDH: signed by the PEK (slot 1).
- Emulated ARK and ASK: RSA-4096, RSA-PSS SHA-384, AMD certificate format, key ids starting
  with ASCII ``sevlaunch-emu`` so that they cannot be mistaken for AMD's. pyca/cryptography
  cannot generate RSA keys from a caller's random source, so these two keys come from the OS
  CSPRNG; everything else is drawn from the firmware's injected ``rng``.

An :class:`Identity` is immutable; commands that change keys return a new one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sevlaunch.crypto import ecc
from sevlaunch.crypto.rsa import sign_pss
from sevlaunch.firmware.snp.identity import SnpIdentity
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.sevcert import Algorithm, SevCert, Signature, Usage

Rng = Callable[[int], bytes]
CHIP_ID_SIZE = 64
ARK_KEY_ID = b"sevlaunch-emuARK"
ASK_KEY_ID = b"sevlaunch-emuASK"
RSA_BITS = 4096
_P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
_SIG = Algorithm.ECDSA_SHA256


def new_p384_scalar(rng: Rng) -> bytes:
    """A uniformly random P-384 private scalar (48 bytes big-endian) drawn from ``rng``."""
    while True:
        candidate = rng(48)
        if 0 < int.from_bytes(candidate, "big") < _P384_ORDER:
            return candidate


def _private_key(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    return ecc.private_from_bytes(scalar)


def _cert(
    usage: Usage, algorithm: Algorithm, key: ec.EllipticCurvePrivateKey, api: tuple[int, int]
) -> SevCert:
    """An unsigned SEV certificate (both slots empty) for ``key``."""
    return SevCert(
        usage=usage,
        algorithm=algorithm,
        public_key=ecc.from_public_key(key.public_key()),
        sig1=Signature.empty(),
        sig2=Signature.empty(),
        api_major=api[0],
        api_minor=api[1],
    )


def _signed(cert: SevCert, slot: int, signer: ec.EllipticCurvePrivateKey, usage: Usage) -> SevCert:
    return cert.with_signature(slot, ecc.sign(signer, cert.signed_bytes(), usage, _SIG))


def rsa_private_bytes(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _amd_cert(
    key: rsa.RSAPrivateKey, key_id: bytes, usage: Usage, signer: rsa.RSAPrivateKey, signer_id: bytes
) -> AmdCert:
    numbers = key.public_key().public_numbers()
    unsigned = AmdCert(
        key_id=key_id,
        certifying_id=signer_id,
        key_usage=usage,
        pub_exp_size=RSA_BITS,
        modulus_size=RSA_BITS,
        pub_exp=numbers.e,
        modulus=numbers.n,
        signature=None,
    )
    return replace(unsigned, signature=sign_pss(signer, unsigned.signed_bytes(), "sha384"))


def generate_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, RSA_BITS)


@dataclass(frozen=True)
class Identity:
    """Everything a platform keeps across restarts (its persistent state)."""

    chip_id: bytes
    cek_key: bytes
    signed_cek_cert: SevCert
    oca_cert: SevCert
    oca_key: bytes | None
    pek_cert: SevCert
    pek_key: bytes
    pdh_cert: SevCert
    pdh_key: bytes
    ark_cert: AmdCert
    ark_key: bytes
    ask_cert: AmdCert
    ask_key: bytes
    snp: SnpIdentity | None = None  # made on first SNP use by an SNP-capable generation

    @property
    def externally_owned(self) -> bool:
        return self.oca_key is None

    @functools.cached_property
    def cek_private(self) -> ec.EllipticCurvePrivateKey:
        return _private_key(self.cek_key)

    @functools.cached_property
    def pek_private(self) -> ec.EllipticCurvePrivateKey:
        return _private_key(self.pek_key)

    @functools.cached_property
    def pdh_private(self) -> ec.EllipticCurvePrivateKey:
        return _private_key(self.pdh_key)

    def exported_cek(self, api: tuple[int, int]) -> SevCert:
        """The CEK as PDH_CERT_EXPORT returns it: no signature in either slot."""
        return _cert(Usage.CEK, _SIG, self.cek_private, api)

    def pek_csr(self, api: tuple[int, int]) -> SevCert:
        """PEK_CSR's output: the current PEK, both slots empty, for the owner to sign."""
        return _cert(Usage.PEK, _SIG, self.pek_private, api)

    def with_new_pek(self, rng: Rng, api: tuple[int, int]) -> Identity:
        """PEK_GEN / PLATFORM_RESET: new OCA, PEK and PDH; the platform is self-owned again."""
        oca_key = new_p384_scalar(rng)
        oca = _private_key(oca_key)
        oca_cert = _signed(_cert(Usage.OCA, _SIG, oca, api), 1, oca, Usage.OCA)
        pek_key = new_p384_scalar(rng)
        pek = _private_key(pek_key)
        pek_cert = _signed(_cert(Usage.PEK, _SIG, pek, api), 1, oca, Usage.OCA)
        pek_cert = _signed(pek_cert, 2, self.cek_private, Usage.CEK)
        renewed = replace(
            self, oca_cert=oca_cert, oca_key=oca_key, pek_cert=pek_cert, pek_key=pek_key
        )
        return renewed.with_new_pdh(rng, api)

    def with_new_pdh(self, rng: Rng, api: tuple[int, int]) -> Identity:
        """PDH_GEN: a new PDH signed by the current PEK."""
        pdh_key = new_p384_scalar(rng)
        pdh_cert = _signed(
            _cert(Usage.PDH, Algorithm.ECDH_SHA256, _private_key(pdh_key), api),
            1,
            self.pek_private,
            Usage.PEK,
        )
        return replace(self, pdh_cert=pdh_cert, pdh_key=pdh_key)

    def with_owner(self, pek_cert: SevCert, oca_cert: SevCert) -> Identity:
        """PEK_CERT_IMPORT, once validated: add the CEK's signature in the free slot."""
        slot = 2 if not pek_cert.sig1.is_empty else 1
        signed = _signed(pek_cert, slot, self.cek_private, Usage.CEK)
        return replace(self, pek_cert=signed, oca_cert=oca_cert, oca_key=None)


def factory(
    rng: Rng,
    api: tuple[int, int],
    rsa_keygen: Callable[[], rsa.RSAPrivateKey],
    roots: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey] | None = None,
) -> Identity:
    """A factory-fresh chip: chip ID, CEK, emulated ARK/ASK, and a self-owned PEK/PDH.

    ``roots`` are the generation's (ARK, ASK) keys when they already exist (AMD certifies
    every chip of a generation with the same two); without them two are made with
    ``rsa_keygen``.
    """
    ark, ask = roots if roots is not None else (rsa_keygen(), rsa_keygen())
    ark_cert = _amd_cert(ark, ARK_KEY_ID, Usage.ARK, ark, ARK_KEY_ID)
    ask_cert = _amd_cert(ask, ASK_KEY_ID, Usage.ASK, ark, ARK_KEY_ID)
    cek_key = new_p384_scalar(rng)
    cek = _cert(Usage.CEK, _SIG, _private_key(cek_key), api)
    signed_cek = cek.with_signature(
        1,
        Signature.rsa(Usage.ASK, Algorithm.RSA_SHA384, sign_pss(ask, cek.signed_bytes(), "sha384")),
    )
    placeholder = cek  # replaced by with_new_pek below
    blank = Identity(
        chip_id=rng(CHIP_ID_SIZE),
        cek_key=cek_key,
        signed_cek_cert=signed_cek,
        oca_cert=placeholder,
        oca_key=None,
        pek_cert=placeholder,
        pek_key=cek_key,
        pdh_cert=placeholder,
        pdh_key=cek_key,
        ark_cert=ark_cert,
        ark_key=rsa_private_bytes(ark),
        ask_cert=ask_cert,
        ask_key=rsa_private_bytes(ask),
    )
    return blank.with_new_pek(rng, api)
