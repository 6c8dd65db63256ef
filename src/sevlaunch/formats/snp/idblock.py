"""The ID block (96 B) and ID authentication information (4096 B) of SNP_LAUNCH_FINISH
(sev-snp.md §3.6). The owner signs the ID block with an ID key, and optionally the ID key
with an author key; the report then carries both keys' SHA-384 digests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, check_len, le_bytes
from sevlaunch.formats.snp.ecdsa import (
    ALGO_ECDSA_P384_SHA384,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    EcdsaPublicKey,
    EcdsaSignature,
)

ID_BLOCK = "SNP ID block"
ID_AUTH = "SNP ID auth"
ID_BLOCK_SIZE = 96
ID_AUTH_SIZE = 4096
ID_BLOCK_VERSION = 1

_ID_BLOCK_SIG = 0x040
_ID_KEY = 0x240
_ID_KEY_SIG = 0x680
_AUTHOR_KEY = 0x880


@dataclass(frozen=True)
class IdBlock:
    ld: bytes  # the expected launch digest (48 B)
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    version: int = ID_BLOCK_VERSION
    guest_svn: int = 0
    policy: int = 0x30000

    def __post_init__(self) -> None:
        check_len(ID_BLOCK, "ld", self.ld, 48)
        check_len(ID_BLOCK, "family_id", self.family_id, 16)
        check_len(ID_BLOCK, "image_id", self.image_id, 16)
        le_bytes(self.version, 4, structure=ID_BLOCK, field="version")
        le_bytes(self.guest_svn, 4, structure=ID_BLOCK, field="guest_svn")
        le_bytes(self.policy, 8, structure=ID_BLOCK, field="policy")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(ID_BLOCK, data)
        r.expect_size(ID_BLOCK_SIZE)
        return cls(
            ld=r.raw("ld", 0, 48),
            family_id=r.raw("family_id", 0x30, 16),
            image_id=r.raw("image_id", 0x40, 16),
            version=r.u32("version", 0x50),
            guest_svn=r.u32("guest_svn", 0x54),
            policy=r.u64("policy", 0x58),
        )

    def to_bytes(self) -> bytes:
        return (
            self.ld
            + self.family_id
            + self.image_id
            + self.version.to_bytes(4, "little")
            + self.guest_svn.to_bytes(4, "little")
            + self.policy.to_bytes(8, "little")
        )


@dataclass(frozen=True)
class IdAuth:
    """Signatures and keys; without an author key both ``id_key_sig`` and ``author_key`` are
    all zero (AUTH_KEY_EN off)."""

    id_block_sig: EcdsaSignature
    id_key: EcdsaPublicKey
    id_key_sig: EcdsaSignature
    author_key: EcdsaPublicKey
    id_key_algo: int = ALGO_ECDSA_P384_SHA384
    auth_key_algo: int = ALGO_ECDSA_P384_SHA384

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(ID_AUTH, data)
        r.expect_size(ID_AUTH_SIZE)
        r.zeros("reserved_008", 0x008, 0x38)
        r.zeros("reserved_644", _ID_KEY + PUBLIC_KEY_SIZE, _ID_KEY_SIG - _ID_KEY - PUBLIC_KEY_SIZE)
        end = _AUTHOR_KEY + PUBLIC_KEY_SIZE
        r.zeros("reserved_c84", end, ID_AUTH_SIZE - end)
        return cls(
            id_key_algo=r.u32("id_key_algo", 0),
            auth_key_algo=r.u32("auth_key_algo", 4),
            id_block_sig=EcdsaSignature.from_bytes(
                r.raw("id_block_sig", _ID_BLOCK_SIG, SIGNATURE_SIZE)
            ),
            id_key=EcdsaPublicKey.from_bytes(r.raw("id_key", _ID_KEY, PUBLIC_KEY_SIZE)),
            id_key_sig=EcdsaSignature.from_bytes(r.raw("id_key_sig", _ID_KEY_SIG, SIGNATURE_SIZE)),
            author_key=EcdsaPublicKey.from_bytes(r.raw("author_key", _AUTHOR_KEY, PUBLIC_KEY_SIZE)),
        )

    def to_bytes(self) -> bytes:
        out = bytearray(ID_AUTH_SIZE)
        out[0:4] = le_bytes(self.id_key_algo, 4, structure=ID_AUTH, field="id_key_algo")
        out[4:8] = le_bytes(self.auth_key_algo, 4, structure=ID_AUTH, field="auth_key_algo")
        for off, part in (
            (_ID_BLOCK_SIG, self.id_block_sig.to_bytes()),
            (_ID_KEY, self.id_key.to_bytes()),
            (_ID_KEY_SIG, self.id_key_sig.to_bytes()),
            (_AUTHOR_KEY, self.author_key.to_bytes()),
        ):
            out[off : off + len(part)] = part
        return bytes(out)

    @property
    def has_author_key(self) -> bool:
        return not self.author_key.is_zero
