"""The SEV certificate (0x824 bytes): OCA, PEK, PDH, CEK and the guest owner's GODH.

Layout (firmware-API doc §1): version, API version, key usage and algorithm, a 1028-byte
public-key union (RSA or ECC), then two signature slots of usage, algorithm and 512 bytes.
Both slots sign bytes ``[0, 0x414)``. Integers are little-endian throughout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self, TypeVar

from sevlaunch.errors import FormatError
from sevlaunch.formats._codec import Reader, le_bytes

STRUCTURE = "SEV certificate"
SIZE = 0x824
SIGNED_SIZE = 0x414
PUBKEY_OFFSET = 0x10
PUBKEY_SIZE = 0x404
SIG_SIZE = 0x200
SIG1_OFFSET = 0x414
SIG2_OFFSET = 0x61C
ECC_COORD_SIZE = 72
ECDSA_SIG_SIZE = 72
RSA_FIELD_SIZE = 512


class Usage(enum.IntEnum):
    """Key usage codes shared by SEV and AMD certificates."""

    ARK = 0x0000
    ASK = 0x0013
    INVALID = 0x1000
    OCA = 0x1001
    PEK = 0x1002
    PDH = 0x1003
    CEK = 0x1004


class Algorithm(enum.IntEnum):
    """Public-key and signature algorithm codes."""

    INVALID = 0x0
    RSA_SHA256 = 0x1
    ECDSA_SHA256 = 0x2
    ECDH_SHA256 = 0x3
    RSA_SHA384 = 0x101
    ECDSA_SHA384 = 0x102
    ECDH_SHA384 = 0x103

    @property
    def is_rsa(self) -> bool:
        return self in (Algorithm.RSA_SHA256, Algorithm.RSA_SHA384)

    @property
    def is_ecc(self) -> bool:
        return self in (
            Algorithm.ECDSA_SHA256,
            Algorithm.ECDSA_SHA384,
            Algorithm.ECDH_SHA256,
            Algorithm.ECDH_SHA384,
        )

    @property
    def hash_name(self) -> str:
        """``"sha256"`` or ``"sha384"``: the digest a signer with this algorithm uses."""
        if self is Algorithm.INVALID:
            raise FormatError(STRUCTURE, "algorithm", "INVALID has no digest", value=int(self))
        return "sha384" if self & 0x100 else "sha256"


class EccCurve(enum.IntEnum):
    """Curve identifiers of the ECC public-key union."""

    P256 = 1
    P384 = 2


E = TypeVar("E", bound=enum.IntEnum)


def _enum(cls: type[E], reader: Reader, field: str, offset: int, size: int = 4) -> E:
    raw = reader.uint(field, offset, size)
    try:
        return cls(raw)
    except ValueError as exc:
        raise reader.fail(field, offset, f"unknown {cls.__name__} code {raw:#x}", raw) from exc


@dataclass(frozen=True)
class EccPublicKey:
    """An ECDSA or ECDH public key: the curve and the affine point as integers."""

    curve: EccCurve
    qx: int
    qy: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data)
        r.expect_size(PUBKEY_SIZE)
        curve = _enum(EccCurve, r, "pub_key.curve", 0)
        qx = r.uint("pub_key.qx", 4, ECC_COORD_SIZE)
        qy = r.uint("pub_key.qy", 4 + ECC_COORD_SIZE, ECC_COORD_SIZE)
        r.zeros("pub_key.rmbz", 4 + 2 * ECC_COORD_SIZE, PUBKEY_SIZE - 4 - 2 * ECC_COORD_SIZE)
        return cls(curve, qx, qy)

    def to_bytes(self) -> bytes:
        body = (
            int(self.curve).to_bytes(4, "little")
            + le_bytes(self.qx, ECC_COORD_SIZE, structure=STRUCTURE, field="pub_key.qx")
            + le_bytes(self.qy, ECC_COORD_SIZE, structure=STRUCTURE, field="pub_key.qy")
        )
        return body.ljust(PUBKEY_SIZE, b"\0")


@dataclass(frozen=True)
class RsaPublicKey:
    """An RSA public key; ``modulus_size`` is in bits as the certificate stores it."""

    modulus_size: int
    exponent: int
    modulus: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data)
        r.expect_size(PUBKEY_SIZE)
        bits = r.u32("pub_key.modulus_size", 0)
        if bits not in (2048, 4096):
            raise r.fail("pub_key.modulus_size", 0, f"expected 2048 or 4096 bits, got {bits}", bits)
        exponent = r.uint("pub_key.pub_exp", 4, RSA_FIELD_SIZE)
        modulus = r.uint("pub_key.modulus", 4 + RSA_FIELD_SIZE, RSA_FIELD_SIZE)
        return cls(bits, exponent, modulus)

    def to_bytes(self) -> bytes:
        return (
            self.modulus_size.to_bytes(4, "little")
            + le_bytes(self.exponent, RSA_FIELD_SIZE, structure=STRUCTURE, field="pub_key.pub_exp")
            + le_bytes(self.modulus, RSA_FIELD_SIZE, structure=STRUCTURE, field="pub_key.modulus")
        )


PublicKey = EccPublicKey | RsaPublicKey


@dataclass(frozen=True)
class Signature:
    """One signature slot: who signed (usage), how (algorithm), and the 512-byte value.

    An empty slot has usage INVALID, algorithm INVALID and 512 zero bytes. ECDSA values hold
    ``r`` and ``s`` as 72-byte little-endian integers; RSA values one little-endian integer.
    """

    usage: Usage
    algorithm: Algorithm
    value: bytes = bytes(SIG_SIZE)

    @classmethod
    def empty(cls) -> Self:
        return cls(Usage.INVALID, Algorithm.INVALID)

    @classmethod
    def ecdsa(cls, usage: Usage, algorithm: Algorithm, r: int, s: int) -> Self:
        value = le_bytes(r, ECDSA_SIG_SIZE, structure=STRUCTURE, field="sig.r") + le_bytes(
            s, ECDSA_SIG_SIZE, structure=STRUCTURE, field="sig.s"
        )
        return cls(usage, algorithm, value.ljust(SIG_SIZE, b"\0"))

    @classmethod
    def rsa(cls, usage: Usage, algorithm: Algorithm, s: int) -> Self:
        return cls(usage, algorithm, le_bytes(s, SIG_SIZE, structure=STRUCTURE, field="sig.s"))

    @property
    def is_empty(self) -> bool:
        return self.usage is Usage.INVALID

    @property
    def ecdsa_rs(self) -> tuple[int, int]:
        """``(r, s)`` of an ECDSA slot."""
        return (
            int.from_bytes(self.value[:ECDSA_SIG_SIZE], "little"),
            int.from_bytes(self.value[ECDSA_SIG_SIZE : 2 * ECDSA_SIG_SIZE], "little"),
        )

    @property
    def rsa_s(self) -> int:
        return int.from_bytes(self.value, "little")

    @classmethod
    def parse(cls, data: bytes, slot: str, base: int) -> Self:
        r = Reader(STRUCTURE, data)
        usage = _enum(Usage, r, f"{slot}_usage", base)
        algorithm = _enum(Algorithm, r, f"{slot}_algo", base + 4)
        value = r.raw(slot, base + 8, SIG_SIZE)
        if usage is Usage.INVALID:
            if algorithm is not Algorithm.INVALID:
                raise r.fail(f"{slot}_algo", base + 4, "an empty slot must have algo 0", algorithm)
            r.zeros(slot, base + 8, SIG_SIZE)
        elif algorithm.is_ecc:
            r.zeros(f"{slot}.rmbz", base + 8 + 2 * ECDSA_SIG_SIZE, SIG_SIZE - 2 * ECDSA_SIG_SIZE)
        elif not algorithm.is_rsa:
            raise r.fail(
                f"{slot}_algo", base + 4, "a used slot needs an RSA or ECDSA algo", algorithm
            )
        return cls(usage, algorithm, value)

    def to_bytes(self) -> bytes:
        if len(self.value) != SIG_SIZE:
            raise FormatError(
                STRUCTURE, "sig", f"value must be {SIG_SIZE} bytes", value=len(self.value)
            )
        return (
            int(self.usage).to_bytes(4, "little")
            + int(self.algorithm).to_bytes(4, "little")
            + self.value
        )


def _parse_key(algorithm: Algorithm, data: bytes) -> PublicKey:
    """The key union, with error offsets made relative to the certificate."""
    try:
        if algorithm.is_ecc:
            return EccPublicKey.from_bytes(data)
        return RsaPublicKey.from_bytes(data)
    except FormatError as exc:
        off = None if exc.offset is None else exc.offset + PUBKEY_OFFSET
        raise FormatError(STRUCTURE, exc.field, exc.reason, offset=off, value=exc.value) from exc


@dataclass(frozen=True)
class SevCert:
    """An SEV certificate (version 1, 0x824 bytes), exact to the byte on round trip."""

    usage: Usage
    algorithm: Algorithm
    public_key: PublicKey
    sig1: Signature
    sig2: Signature
    api_major: int = 0
    api_minor: int = 0
    version: int = 1

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data)
        r.expect_size(SIZE)
        version = r.u32("version", 0)
        if version != 1:
            raise r.fail("version", 0, f"only version 1 exists, got {version}", version)
        r.zeros("reserved", 6, 2)
        usage = _enum(Usage, r, "pub_key_usage", 8)
        algorithm = _enum(Algorithm, r, "pub_key_algo", 0xC)
        key_bytes = r.raw("pub_key", PUBKEY_OFFSET, PUBKEY_SIZE)
        if not (algorithm.is_ecc or algorithm.is_rsa):
            raise r.fail(
                "pub_key_algo", 0xC, "a certificate key needs an RSA or ECC algo", algorithm
            )
        key = _parse_key(algorithm, key_bytes)
        if usage is Usage.INVALID:
            raise r.fail("pub_key_usage", 8, "a certificate cannot have usage INVALID", usage)
        return cls(
            usage=usage,
            algorithm=algorithm,
            public_key=key,
            sig1=Signature.parse(data, "sig1", SIG1_OFFSET),
            sig2=Signature.parse(data, "sig2", SIG2_OFFSET),
            api_major=r.u8("api_major", 4),
            api_minor=r.u8("api_minor", 5),
            version=version,
        )

    def signed_bytes(self) -> bytes:
        """The bytes both signature slots cover: ``[0, 0x414)``."""
        return (
            self.version.to_bytes(4, "little")
            + le_bytes(self.api_major, 1, structure=STRUCTURE, field="api_major")
            + le_bytes(self.api_minor, 1, structure=STRUCTURE, field="api_minor")
            + b"\0\0"
            + int(self.usage).to_bytes(4, "little")
            + int(self.algorithm).to_bytes(4, "little")
            + self.public_key.to_bytes()
        )

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.sig1.to_bytes() + self.sig2.to_bytes()

    @property
    def signatures(self) -> tuple[Signature, Signature]:
        return (self.sig1, self.sig2)

    @property
    def ecc_key(self) -> EccPublicKey:
        """The ECC public key, or a FormatError naming the certificate's usage."""
        if not isinstance(self.public_key, EccPublicKey):
            raise FormatError(
                STRUCTURE, "pub_key", f"{self.usage.name} key is not ECC", value=self.algorithm
            )
        return self.public_key

    def with_signature(self, slot: int, signature: Signature) -> SevCert:
        """A copy with ``signature`` placed in slot 1 or 2."""
        from dataclasses import replace

        if slot == 1:
            return replace(self, sig1=signature)
        if slot == 2:
            return replace(self, sig2=signature)
        raise FormatError(STRUCTURE, "slot", "slot must be 1 or 2", value=slot)
