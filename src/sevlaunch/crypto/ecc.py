"""P-384 ECDH and ECDSA with SEV's little-endian encodings.

Certificates store affine coordinates and signature integers little-endian in 72-byte fields;
pyca/cryptography does the arithmetic. The ECDH shared secret is the x-coordinate as OpenSSL
returns it (48 bytes, big-endian), which is what both firmware and tools feed the KDF.
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from sevlaunch.errors import CryptoError
from sevlaunch.formats.sevcert import Algorithm, EccCurve, EccPublicKey, Signature, Usage

_CURVES: dict[EccCurve, ec.EllipticCurve] = {
    EccCurve.P256: ec.SECP256R1(),
    EccCurve.P384: ec.SECP384R1(),
}
_HASHES: dict[str, type[hashes.SHA256] | type[hashes.SHA384]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
}


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    return _HASHES[name]()


@functools.lru_cache(maxsize=1024)
def to_public_key(key: EccPublicKey) -> ec.EllipticCurvePublicKey:
    """The pyca key for a certificate's point; raises CryptoError if it is not on the curve.

    Cached: a verifier meets the same OCA, PEK and CEK points again and again, and building a
    key checks the point on the curve each time (immutable inputs, immutable outputs)."""
    try:
        return ec.EllipticCurvePublicNumbers(key.qx, key.qy, _CURVES[key.curve]).public_key()
    except ValueError as exc:
        raise CryptoError(
            f"the {key.curve.name} public key is not a valid curve point: {exc}"
        ) from exc


def from_public_key(key: ec.EllipticCurvePublicKey) -> EccPublicKey:
    numbers = key.public_numbers()
    curve = {"secp256r1": EccCurve.P256, "secp384r1": EccCurve.P384}.get(numbers.curve.name)
    if curve is None:
        raise CryptoError(f"SEV certificates carry P-256 or P-384 keys, not {numbers.curve.name}")
    return EccPublicKey(curve, numbers.x, numbers.y)


def generate_p384(rng_seed: int | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh P-384 key; ``rng_seed`` derives a deterministic key for tests only."""
    if rng_seed is None:
        return ec.generate_private_key(ec.SECP384R1())
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
    return ec.derive_private_key(rng_seed % (n - 1) + 1, ec.SECP384R1())


def private_from_bytes(secret: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-384 private key from its 48-byte big-endian scalar (how sevlaunch stores keys)."""
    try:
        return ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP384R1())
    except ValueError as exc:
        raise CryptoError(f"not a P-384 private scalar: {exc}") from exc


def private_to_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(48, "big")


def ecdh(private: ec.EllipticCurvePrivateKey, peer: EccPublicKey) -> bytes:
    """The shared secret Z: x(d · Q_peer), 48 bytes big-endian, unmodified."""
    return private.exchange(ec.ECDH(), to_public_key(peer))


def sign(
    private: ec.EllipticCurvePrivateKey, data: bytes, usage: Usage, algorithm: Algorithm
) -> Signature:
    """An ECDSA signature slot over ``data`` with the digest ``algorithm`` names."""
    der = private.sign(data, ec.ECDSA(hash_algorithm(algorithm.hash_name)))
    r, s = decode_dss_signature(der)
    return Signature.ecdsa(usage, algorithm, r, s)


def verify(public: EccPublicKey, signature: Signature, data: bytes, hash_name: str) -> None:
    """Verify an ECDSA slot; raises CryptoError naming the problem."""
    r, s = signature.ecdsa_rs
    try:
        to_public_key(public).verify(
            encode_dss_signature(r, s), data, ec.ECDSA(hash_algorithm(hash_name))
        )
    except InvalidSignature as exc:
        raise CryptoError("ECDSA signature does not verify") from exc
