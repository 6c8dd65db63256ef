"""AMD's own certificate format for the ARK (root) and ASK (signing key).

Variable length (firmware-API doc §2): a 0x40-byte header, then the public exponent, the
modulus and the signature, each ``size/8`` bytes, little-endian. 832 bytes for Naples
(RSA-2048), 1600 bytes for Rome and later (RSA-4096). AMD publishes the Naples ARK without
its signature (576 bytes); such a certificate parses with ``signature=None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError
from sevlaunch.formats._codec import Reader, check_len, le_bytes
from sevlaunch.formats.sevcert import Usage

STRUCTURE = "AMD certificate"
HEADER_SIZE = 0x40
KEY_SIZES = (2048, 4096)


@dataclass(frozen=True)
class AmdCert:
    """An ARK or ASK certificate. ``key_id`` and ``certifying_id`` are 16 opaque bytes."""

    key_id: bytes
    certifying_id: bytes
    key_usage: Usage
    pub_exp_size: int
    modulus_size: int
    pub_exp: int
    modulus: int
    signature: int | None
    version: int = 1

    def __post_init__(self) -> None:
        check_len(STRUCTURE, "key_id", self.key_id, 16)
        check_len(STRUCTURE, "certifying_id", self.certifying_id, 16)

    @staticmethod
    def size_for(modulus_bits: int, *, signed: bool = True) -> int:
        return HEADER_SIZE + (modulus_bits // 8) * (3 if signed else 2)

    @classmethod
    def parse_prefix(cls, data: bytes, *, allow_unsigned: bool = False) -> tuple[Self, bytes]:
        """Parse one certificate from the start of ``data``; return it and the rest.

        ``allow_unsigned`` accepts a certificate that ends right after its modulus (AMD's
        published Naples ARK); only meaningful for the last certificate of a file.
        """
        r = Reader(STRUCTURE, data)
        r.expect_at_least(HEADER_SIZE)
        version = r.u32("version", 0)
        if version != 1:
            raise r.fail("version", 0, f"only version 1 exists, got {version}", version)
        raw_usage = r.u32("key_usage", 0x24)
        if raw_usage not in (Usage.ARK, Usage.ASK):
            raise r.fail(
                "key_usage", 0x24, f"expected ARK 0x0 or ASK 0x13, got {raw_usage:#x}", raw_usage
            )
        r.zeros("reserved", 0x28, 16)
        exp_bits = r.u32("pub_exp_size", 0x38)
        mod_bits = r.u32("modulus_size", 0x3C)
        for name, off, bits in (("pub_exp_size", 0x38, exp_bits), ("modulus_size", 0x3C, mod_bits)):
            if bits not in KEY_SIZES:
                raise r.fail(name, off, f"expected 2048 or 4096 bits, got {bits}", bits)
        exp_end = HEADER_SIZE + exp_bits // 8
        mod_end = exp_end + mod_bits // 8
        sig_end = mod_end + mod_bits // 8
        signature: int | None
        if allow_unsigned and len(data) == mod_end:
            signature, rest = None, b""
        else:
            signature = r.uint("signature", mod_end, mod_bits // 8)
            rest = data[sig_end:]
        cert = cls(
            key_id=r.raw("key_id", 0x4, 16),
            certifying_id=r.raw("certifying_id", 0x14, 16),
            key_usage=Usage(raw_usage),
            pub_exp_size=exp_bits,
            modulus_size=mod_bits,
            pub_exp=r.uint("pub_exp", HEADER_SIZE, exp_bits // 8),
            modulus=r.uint("modulus", exp_end, mod_bits // 8),
            signature=signature,
            version=version,
        )
        return cert, rest

    @classmethod
    def from_bytes(cls, data: bytes, *, allow_unsigned: bool = False) -> Self:
        cert, rest = cls.parse_prefix(data, allow_unsigned=allow_unsigned)
        if rest:
            raise FormatError(
                STRUCTURE,
                "length",
                f"{len(rest)} trailing bytes after a {len(data) - len(rest)}-byte certificate",
                offset=len(data) - len(rest),
                value=len(data),
            )
        return cert

    def signed_bytes(self) -> bytes:
        """Everything before the signature: header, exponent and modulus."""

        def enc(v: int, bits: int, field: str) -> bytes:
            return le_bytes(v, bits // 8, structure=STRUCTURE, field=field)

        return (
            self.version.to_bytes(4, "little")
            + self.key_id
            + self.certifying_id
            + int(self.key_usage).to_bytes(4, "little")
            + bytes(16)
            + self.pub_exp_size.to_bytes(4, "little")
            + self.modulus_size.to_bytes(4, "little")
            + enc(self.pub_exp, self.pub_exp_size, "pub_exp")
            + enc(self.modulus, self.modulus_size, "modulus")
        )

    def to_bytes(self) -> bytes:
        body = self.signed_bytes()
        if self.signature is None:
            return body
        return body + le_bytes(
            self.signature, self.modulus_size // 8, structure=STRUCTURE, field="signature"
        )

    @property
    def is_self_signed(self) -> bool:
        return self.key_id == self.certifying_id

    @property
    def hash_name(self) -> str:
        """SHA-256 for RSA-2048 keys, SHA-384 for RSA-4096 (all real AMD certificates)."""
        return "sha256" if self.modulus_size == 2048 else "sha384"
