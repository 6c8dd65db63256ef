"""The SNP side of a chip's identity: the emulated AMD SNP PKI, the VCEK and the VLEK.

- ARK-<product> and SEV-<product> (the ASK) are X.509 forms of the emulated ARK and ASK keys
  the SEV identity already holds (AMD, too, certifies SEV and SNP with one ARK and ASK per
  product); SEV-VLEK-<product> (the ASVK) has its own RSA key. All are RSA-PSS SHA-384, as
  AMD signs, with fixed validity (a pure layer has no clock), and are persisted.
- The VCEK is derived, never stored: its P-384 key from the chip secret (the CEK's scalar)
  and the TCB (``HMAC-SHA512(cek, "sevlaunch VCEK" ‖ tcb)``), so a chip has one VCEK per TCB
  as on silicon. Its certificate is what AMD's key server issues for (hwID, TCB), signed by
  the ASK, with a positive serial derived from both (see :mod:`sevlaunch.crypto.snp.issue`).
- A VLEK belongs to a cloud provider (csp_id) and a TCB; "AMD" (the ASVK key here) derives it
  and hands the provider a hashstick wrapped for this chip (AES-256-GCM under a key from the
  chip secret), which SNP_VLEK_LOAD unwraps. Layout of the 432-byte emulated hashstick:
  ``"SVLK" ‖ u32 version 0 ‖ u64 tcb ‖ u8 len ‖ csp_id[63] ‖ nonce[12] ‖ sealed seed[80]``,
  zero-padded; AMD's real layout is not public.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sevlaunch.crypto.snp import ecdsa, issue
from sevlaunch.crypto.snp.chain import SignerKind
from sevlaunch.errors import CommandRefusedError
from sevlaunch.firmware.snp.profiles import SnpFirmwareVersion
from sevlaunch.formats.snp.tcb import Generation, TcbVersion
from sevlaunch.formats.status import Status

UTC = datetime.UTC
CA_VALIDITY = issue.Validity(
    datetime.datetime(2020, 1, 1, tzinfo=UTC),
    datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
)
LEAF_VALIDITY = issue.Validity(
    datetime.datetime(2024, 1, 1, tzinfo=UTC),
    datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
)
HASHSTICK_SIZE = 432
_MAGIC = b"SVLK"
_CSP_MAX = 63
_SEALED = 0x5C


def _rsa(der: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("not an RSA key")
    return key


def _private_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class SnpIdentity:
    """What a chip keeps for SNP across restarts (inside its persistent state)."""

    product: Generation
    ark_der: bytes
    ask_der: bytes
    asvk_der: bytes
    asvk_key: bytes  # PKCS#8 DER
    committed: SnpFirmwareVersion

    def with_committed(self, committed: SnpFirmwareVersion) -> SnpIdentity:
        return SnpIdentity(
            self.product, self.ark_der, self.ask_der, self.asvk_der, self.asvk_key, committed
        )

    def ca_pem(self, kind: SignerKind) -> bytes:
        """KDS's ``cert_chain``: the ASK (or ASVK), then the ARK, as PEM."""
        mid = self.ask_der if kind is SignerKind.VCEK else self.asvk_der
        return _pem(mid) + _pem(self.ark_der)


def _pem(der: bytes) -> bytes:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def create(
    ark_key: bytes,
    ask_key: bytes,
    product: Generation,
    committed: SnpFirmwareVersion,
    rsa_keygen: Callable[[], rsa.RSAPrivateKey],
) -> SnpIdentity:
    """The SNP PKI of a chip whose emulated ARK and ASK keys are ``ark_key``/``ask_key``."""
    ark, ask, asvk = _rsa(ark_key), _rsa(ask_key), rsa_keygen()
    return SnpIdentity(
        product=product,
        ark_der=issue.issue_ark(ark, product, CA_VALIDITY),
        ask_der=issue.issue_intermediate(
            ask.public_key(), ark, product, SignerKind.VCEK, CA_VALIDITY
        ),
        asvk_der=issue.issue_intermediate(
            asvk.public_key(), ark, product, SignerKind.VLEK, CA_VALIDITY
        ),
        asvk_key=_private_der(asvk),
        committed=committed,
    )


# --- VCEK ------------------------------------------------------------------------------------


def _significant(tcb: TcbVersion) -> bytes:
    return tcb.to_int().to_bytes(8, "little")


def vcek_key(chip_secret: bytes, tcb: TcbVersion) -> ec.EllipticCurvePrivateKey:
    seed = hmac.digest(chip_secret, b"sevlaunch VCEK" + _significant(tcb), "sha512")
    return ecdsa.derive_p384(seed)


def leaf_serial(label: bytes, who: bytes, tcb: TcbVersion) -> int:
    digest = hashlib.sha256(label + who + _significant(tcb)).digest()
    return (int.from_bytes(digest[:8], "big") >> 1) | 1


def hwid(chip_id: bytes, product: Generation) -> bytes:
    return chip_id[: product.hwid_size]


def vcek_cert(
    identity: SnpIdentity, ask_key: bytes, chip_id: bytes, chip_secret: bytes, tcb: TcbVersion
) -> bytes:
    product = identity.product
    chip = hwid(chip_id, product)
    name = "Milan-B0" if product is Generation.MILAN else product.value
    return issue.issue_leaf(
        vcek_key(chip_secret, tcb).public_key(),
        _rsa(ask_key),
        product,
        SignerKind.VCEK,
        issue.amd_extensions(product, tcb, hwid=chip, product_name=name),
        serial=leaf_serial(b"VCEK", chip, tcb),
        validity=LEAF_VALIDITY,
    )


# --- VLEK ------------------------------------------------------------------------------------


def _vlek_seed(identity: SnpIdentity, csp_id: str, tcb: TcbVersion) -> bytes:
    return hmac.digest(
        identity.asvk_key, b"sevlaunch VLEK" + csp_id.encode() + _significant(tcb), "sha512"
    )


def vlek_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    return ecdsa.derive_p384(seed)


def vlek_cert(identity: SnpIdentity, csp_id: str, tcb: TcbVersion) -> bytes:
    product = identity.product
    return issue.issue_leaf(
        vlek_key(_vlek_seed(identity, csp_id, tcb)).public_key(),
        _rsa(identity.asvk_key),
        product,
        SignerKind.VLEK,
        issue.amd_extensions(product, tcb, csp_id=csp_id),
        serial=leaf_serial(b"VLEK", csp_id.encode(), tcb),
        validity=LEAF_VALIDITY,
    )


def _wrap_key(chip_secret: bytes) -> bytes:
    return hmac.digest(chip_secret, b"sevlaunch VLEK wrap", "sha256")


def wrap_hashstick(
    identity: SnpIdentity, chip_secret: bytes, csp_id: str, tcb: TcbVersion, nonce: bytes
) -> bytes:
    raw = csp_id.encode()
    if not 0 < len(raw) <= _CSP_MAX:
        raise ValueError(f"a csp_id is 1..{_CSP_MAX} bytes")
    head = _MAGIC + bytes(4) + _significant(tcb) + bytes((len(raw),)) + raw.ljust(_CSP_MAX, b"\0")
    head += nonce
    sealed = AESGCM(_wrap_key(chip_secret)).encrypt(nonce, _vlek_seed(identity, csp_id, tcb), head)
    out = head + sealed
    return out + bytes(HASHSTICK_SIZE - len(out))


@dataclass(frozen=True)
class LoadedVlek:
    csp_id: str
    tcb: int
    seed: bytes

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        return vlek_key(self.seed)


def unwrap_hashstick(chip_secret: bytes, data: bytes) -> LoadedVlek:
    """SNP_VLEK_LOAD's check: a hashstick wrapped for this chip; INVALID_PARAM otherwise."""
    if len(data) != HASHSTICK_SIZE or data[:4] != _MAGIC or data[4:8] != bytes(4):
        raise CommandRefusedError(Status.INVALID_PARAM, "not a version-0 wrapped VLEK hashstick")
    size = data[16]
    if not 0 < size <= _CSP_MAX:
        raise CommandRefusedError(Status.INVALID_PARAM, "hashstick csp_id length out of range")
    head, nonce = data[:_SEALED], data[_SEALED - 12 : _SEALED]
    try:
        seed = AESGCM(_wrap_key(chip_secret)).decrypt(nonce, data[_SEALED : _SEALED + 80], head)
    except InvalidTag as exc:
        raise CommandRefusedError(
            Status.BAD_SIGNATURE, "the hashstick is not wrapped for this chip"
        ) from exc
    tcb = int.from_bytes(data[8:16], "little")
    return LoadedVlek(data[17 : 17 + size].decode("utf-8", "replace"), tcb, seed)
