"""ECDSA P-384 / SHA-384 with SNP's encodings: the report signature, the ID block and ID key
signatures (little-endian R, S in 72 bytes; public keys as little-endian QX, QY)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sevlaunch.errors import CryptoError
from sevlaunch.formats.snp.ecdsa import CURVE_P384, EcdsaPublicKey, EcdsaSignature

_ECDSA = ec.ECDSA(hashes.SHA384())
_DETERMINISTIC = ec.ECDSA(hashes.SHA384(), deterministic_signing=True)
#: The order of P-384's base point.
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)


def verify(key: ec.EllipticCurvePublicKey, signature: EcdsaSignature, data: bytes) -> None:
    """Raise CryptoError unless ``signature`` signs ``data`` under ``key``."""
    if not isinstance(key.curve, ec.SECP384R1):
        raise CryptoError(f"SNP signatures use P-384, the key is on {key.curve.name}")
    if signature.is_zero:
        raise CryptoError("the signature is all zero (the firmware did not sign)")
    try:
        key.verify(encode_dss_signature(signature.r, signature.s), data, _ECDSA)
    except InvalidSignature as exc:
        raise CryptoError("ECDSA P-384 signature does not verify") from exc


def sign(
    key: ec.EllipticCurvePrivateKey, data: bytes, *, deterministic: bool = False
) -> EcdsaSignature:
    """``deterministic`` uses RFC 6979 nonces, so a pure caller (the emulated firmware) adds
    no hidden randomness: the same key and data give the same signature."""
    r, s = decode_dss_signature(key.sign(data, _DETERMINISTIC if deterministic else _ECDSA))
    return EcdsaSignature(r, s)


def derive_p384(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-384 key from at least 48 bytes of uniform secret ``seed`` (reduced into
    ``[1, n-1]``; with 64 bytes of seed the bias is below 2^-128)."""
    if len(seed) < 48:
        raise CryptoError(f"a P-384 key needs at least 48 bytes of seed, got {len(seed)}")
    scalar = int.from_bytes(seed, "big") % (P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def to_snp_key(key: ec.EllipticCurvePublicKey) -> EcdsaPublicKey:
    if not isinstance(key.curve, ec.SECP384R1):
        raise CryptoError(f"SNP keys are P-384, got {key.curve.name}")
    numbers = key.public_numbers()
    return EcdsaPublicKey(CURVE_P384, numbers.x, numbers.y)


def from_snp_key(key: EcdsaPublicKey) -> ec.EllipticCurvePublicKey:
    if key.curve != CURVE_P384:
        raise CryptoError(f"SNP key curve {key.curve} is not P-384 (2)")
    try:
        return ec.EllipticCurvePublicNumbers(key.qx, key.qy, ec.SECP384R1()).public_key()
    except ValueError as exc:
        raise CryptoError(f"not a point on P-384: {exc}") from exc
