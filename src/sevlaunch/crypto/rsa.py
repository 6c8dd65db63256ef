"""RSA-PSS for AMD's ARK/ASK and the ASK's signature on the CEK.

AMD signs with RSASSA-PSS, MGF1 with the same hash, salt length = hash length; signature and
key integers are little-endian in the certificates. Verification demands that salt length.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sevlaunch.crypto.ecc import hash_algorithm
from sevlaunch.errors import CryptoError


def public_key(modulus: int, exponent: int) -> rsa.RSAPublicKey:
    try:
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError as exc:
        raise CryptoError(f"not a valid RSA public key: {exc}") from exc


def _pss(hash_name: str) -> padding.PSS:
    return padding.PSS(
        mgf=padding.MGF1(hash_algorithm(hash_name)), salt_length=padding.PSS.DIGEST_LENGTH
    )


def verify_pss(key: rsa.RSAPublicKey, signature: int, data: bytes, hash_name: str) -> None:
    """Verify a little-endian-decoded PSS signature integer; raises CryptoError."""
    size = (key.key_size + 7) // 8
    if signature.bit_length() > size * 8:
        raise CryptoError("RSA signature is larger than the modulus")
    try:
        key.verify(
            signature.to_bytes(size, "big"), data, _pss(hash_name), hash_algorithm(hash_name)
        )
    except InvalidSignature as exc:
        raise CryptoError("RSA-PSS signature does not verify") from exc


def sign_pss(key: rsa.RSAPrivateKey, data: bytes, hash_name: str) -> int:
    """Sign as AMD does; the result is the signature integer (store it little-endian)."""
    return int.from_bytes(key.sign(data, _pss(hash_name), hash_algorithm(hash_name)), "big")
