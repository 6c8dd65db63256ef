"""SEV's key derivation: NIST SP 800-108 counter mode with HMAC-SHA256.

``K(i) = HMAC(key, u32le(i) ‖ label ‖ 0x00 ‖ context ‖ u32le(L bits))``. The counter and
length are little-endian, which is why pyca's KBKDFHMAC (big-endian counter) cannot be used
as is; HMAC itself comes from pyca/cryptography.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from sevlaunch.errors import CryptoError

MASTER_SECRET_LABEL = b"sev-master-secret"
KEK_LABEL = b"sev-kek"
KIK_LABEL = b"sev-kik"


def kdf(key: bytes, label: bytes, context: bytes = b"", length: int = 16) -> bytes:
    """Derive ``length`` bytes from ``key`` for ``label`` and ``context``."""
    if length <= 0:
        raise CryptoError(f"KDF output length must be positive, got {length}")
    suffix = label + b"\0" + context + (length * 8).to_bytes(4, "little")
    out = b""
    counter = 1
    while len(out) < length:
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(counter.to_bytes(4, "little") + suffix)
        out += mac.finalize()
        counter += 1
    return out[:length]


def master_secret(shared_secret: bytes, nonce: bytes) -> bytes:
    """The 16-byte master secret from the ECDH shared secret and the session NONCE."""
    return kdf(shared_secret, MASTER_SECRET_LABEL, nonce, 16)


def kek(master: bytes) -> bytes:
    """Key-encryption key: encrypts TEK ‖ TIK into WRAP_TK."""
    return kdf(master, KEK_LABEL, b"", 16)


def kik(master: bytes) -> bytes:
    """Key-integrity key: authenticates WRAP_TK (WRAP_MAC)."""
    return kdf(master, KIK_LABEL, b"", 16)
