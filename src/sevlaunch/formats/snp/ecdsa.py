"""SNP's ECDSA signature (512 B) and public key (0x404 B) encodings (sev-snp.md §3.6).

R, S and the point coordinates are unsigned little-endian integers zero-extended to 72 bytes;
the same signature layout ends the attestation report and fills the ID auth structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, le_bytes

SIGNATURE = "SNP ECDSA signature"
PUBLIC_KEY = "SNP ECDSA public key"
SIGNATURE_SIZE = 512
PUBLIC_KEY_SIZE = 0x404
COMPONENT_SIZE = 72
CURVE_P384 = 2
ALGO_ECDSA_P384_SHA384 = 1


@dataclass(frozen=True)
class EcdsaSignature:
    r: int
    s: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        rd = Reader(SIGNATURE, data)
        rd.expect_size(SIGNATURE_SIZE)
        rd.zeros("reserved", 2 * COMPONENT_SIZE, SIGNATURE_SIZE - 2 * COMPONENT_SIZE)
        return cls(rd.uint("r", 0, COMPONENT_SIZE), rd.uint("s", COMPONENT_SIZE, COMPONENT_SIZE))

    def to_bytes(self) -> bytes:
        r = le_bytes(self.r, COMPONENT_SIZE, structure=SIGNATURE, field="r")
        s = le_bytes(self.s, COMPONENT_SIZE, structure=SIGNATURE, field="s")
        return r + s + bytes(SIGNATURE_SIZE - 2 * COMPONENT_SIZE)

    @property
    def is_zero(self) -> bool:
        return self.r == 0 and self.s == 0


@dataclass(frozen=True)
class EcdsaPublicKey:
    """``curve`` 2 is P-384; an all-zero key (curve 0) stands for "no key"."""

    curve: int
    qx: int
    qy: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        rd = Reader(PUBLIC_KEY, data)
        rd.expect_size(PUBLIC_KEY_SIZE)
        end = 4 + 2 * COMPONENT_SIZE
        rd.zeros("reserved", end, PUBLIC_KEY_SIZE - end)
        return cls(
            rd.u32("curve", 0),
            rd.uint("qx", 4, COMPONENT_SIZE),
            rd.uint("qy", 4 + COMPONENT_SIZE, COMPONENT_SIZE),
        )

    def to_bytes(self) -> bytes:
        head = le_bytes(self.curve, 4, structure=PUBLIC_KEY, field="curve")
        qx = le_bytes(self.qx, COMPONENT_SIZE, structure=PUBLIC_KEY, field="qx")
        qy = le_bytes(self.qy, COMPONENT_SIZE, structure=PUBLIC_KEY, field="qy")
        body = head + qx + qy
        return body + bytes(PUBLIC_KEY_SIZE - len(body))

    @property
    def is_zero(self) -> bool:
        return self.curve == 0 and self.qx == 0 and self.qy == 0
