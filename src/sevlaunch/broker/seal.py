"""AES-256-GCM sealing of launch keys and secrets under the operator's key-encryption key.

Sealed blobs are ``version ‖ nonce ‖ ciphertext+tag``. The associated data names what the blob
is and whom it belongs to, so a blob copied to another launch or workload row fails to open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sevlaunch.errors import CryptoError, IntegrityError

KEK_SIZE = 32
NONCE_SIZE = 12
VERSION = b"\x01"


@dataclass(frozen=True)
class Sealer:
    """Seals and opens blobs under one KEK; ``random`` supplies nonces."""

    kek: bytes = field(repr=False)
    random: Callable[[int], bytes]
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.kek) != KEK_SIZE:
            raise CryptoError(
                f"the key-encryption key is {KEK_SIZE} bytes, got {len(self.kek)}; "
                f"make one with: head -c {KEK_SIZE} /dev/urandom > broker.kek"
            )
        object.__setattr__(self, "_aead", AESGCM(self.kek))  # the key schedule, once

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = self.random(NONCE_SIZE)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        """The plaintext, or IntegrityError if the blob, its context or the KEK is wrong."""
        if len(blob) < 1 + NONCE_SIZE + 16 or blob[:1] != VERSION:
            raise IntegrityError("sealed blob", "truncated or of an unknown version")
        nonce, body = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, body, context)
        except InvalidTag as exc:
            raise IntegrityError(
                "sealed blob",
                "the KEK differs from the one it was sealed with, or the row was altered",
            ) from exc


def launch_context(launch_id: str) -> bytes:
    return b"sevlaunch-broker/launch-keys/v1\0" + launch_id.encode()


def secret_context(workload: str, guid: str) -> bytes:
    return b"sevlaunch-broker/secret/v1\0" + workload.encode() + b"\0" + guid.encode()
