"""AES-128-CTR and HMAC-SHA256 as the SEV API uses them, on pyca/cryptography."""

from __future__ import annotations

from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sevlaunch.errors import CryptoError, IntegrityError


def aes128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR with the whole 16-byte IV as the initial big-endian counter block."""
    if len(key) != 16 or len(iv) != 16:
        raise CryptoError(f"AES-128-CTR needs a 16-byte key and IV, got {len(key)} and {len(iv)}")
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def check_mac(what: str, expected: bytes, found: bytes) -> None:
    """Constant-time MAC comparison that raises :class:`IntegrityError` naming ``what``."""
    if not constant_time.bytes_eq(expected, found):
        raise IntegrityError(what)
