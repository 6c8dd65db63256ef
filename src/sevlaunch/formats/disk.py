"""sevlaunch's small encrypted disk image, unlocked by the guest with its ``luks-key`` secret.

A stand-in for a LUKS volume that keeps the launch honest: the guest can only read the disk's
label after the guest owner released the passphrase. Layout (little-endian):

| Offset | Size | Field |
|---|---|---|
| 0 | 8 | magic ``SLDISK01`` |
| 8 | 1 | scrypt log2(N) |
| 9 | 1 | scrypt r |
| 10 | 1 | scrypt p |
| 11 | 1 | reserved (0) |
| 12 | 16 | scrypt salt |
| 28 | 12 | AES-GCM nonce |
| 40 | 4 | ciphertext length |
| 44 | … | AES-256-GCM ciphertext ‖ tag of ``u16 label length ‖ label ‖ data``; header as AAD |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, check_len

STRUCTURE = "encrypted disk image"
MAGIC = b"SLDISK01"
HEADER_SIZE = 44
MAX_CIPHERTEXT = 1 << 30


@dataclass(frozen=True)
class DiskHeader:
    scrypt_log2_n: int
    scrypt_r: int
    scrypt_p: int
    salt: bytes
    nonce: bytes
    ciphertext_length: int

    def __post_init__(self) -> None:
        check_len(STRUCTURE, "salt", self.salt, 16)
        check_len(STRUCTURE, "nonce", self.nonce, 12)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data[:HEADER_SIZE])
        r.expect_size(HEADER_SIZE)
        if (magic := r.raw("magic", 0, 8)) != MAGIC:
            raise r.fail(
                "magic", 0, f"expected {MAGIC!r}, found {magic!r}: not a sevlaunch disk", magic
            )
        r.zeros("reserved", 11, 1)
        log2_n = r.u8("scrypt_log2_n", 8)
        if not 10 <= log2_n <= 20:
            raise r.fail("scrypt_log2_n", 8, "must be within 10..20", log2_n)
        length = r.u32("ciphertext_length", 40)
        if not 18 <= length <= MAX_CIPHERTEXT:
            raise r.fail("ciphertext_length", 40, f"must be within 18..{MAX_CIPHERTEXT}", length)
        return cls(
            log2_n,
            r.u8("scrypt_r", 9),
            r.u8("scrypt_p", 10),
            r.raw("salt", 12, 16),
            r.raw("nonce", 28, 12),
            length,
        )

    def to_bytes(self) -> bytes:
        return (
            MAGIC
            + bytes((self.scrypt_log2_n, self.scrypt_r, self.scrypt_p, 0))
            + self.salt
            + self.nonce
            + self.ciphertext_length.to_bytes(4, "little")
        )
