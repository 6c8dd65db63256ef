"""The 64-bit SNP guest policy, PLATFORM_INFO and KEY_INFO words (sev-snp.md §2.1–2.3).

Reserved bits are kept, not refused, so every u64 round-trips: whether a reserved bit makes a
report unacceptable is the verifier's decision (and it says which bit), not the parser's.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError
from sevlaunch.formats._codec import le_bytes

POLICY = "SNP guest policy"


class SnpPolicyFlags(enum.IntFlag):
    SMT = 1 << 16
    RESERVED_MBO = 1 << 17  # must be one
    MIGRATE_MA = 1 << 18
    DEBUG = 1 << 19
    SINGLE_SOCKET = 1 << 20
    CXL_ALLOW = 1 << 21
    MEM_AES_256_XTS = 1 << 22
    RAPL_DIS = 1 << 23
    CIPHERTEXT_HIDING = 1 << 24
    PAGE_SWAP_DISABLE = 1 << 25


POLICY_FLAG_MASK = sum(f.value for f in SnpPolicyFlags)
_POLICY_NAMES = tuple(
    (f.value, (f.name or "").lower())
    for f in SnpPolicyFlags
    if f is not SnpPolicyFlags.RESERVED_MBO
)
POLICY_RESERVED_MASK = ((1 << 64) - 1) & ~(POLICY_FLAG_MASK | 0xFFFF)
DEFAULT_POLICY = 0x30000


@dataclass(frozen=True)
class SnpPolicy:
    """``abi_major.abi_minor`` is the lowest firmware ABI the guest accepts."""

    abi_major: int = 0
    abi_minor: int = 0
    flags: SnpPolicyFlags = SnpPolicyFlags.SMT | SnpPolicyFlags.RESERVED_MBO
    reserved: int = 0  # bits 63:26 as found (must be zero on a valid policy)

    def __post_init__(self) -> None:
        for name in ("abi_major", "abi_minor"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise FormatError(POLICY, name, "one byte", value=getattr(self, name))
        if self.reserved & ~POLICY_RESERVED_MASK:
            raise FormatError(POLICY, "reserved", "only bits 63:26", value=self.reserved)

    @classmethod
    def from_int(cls, value: int) -> Self:
        if not 0 <= value < 1 << 64:
            raise FormatError(POLICY, "policy", "an SNP policy is a u64", value=value)
        return cls(
            abi_major=(value >> 8) & 0xFF,
            abi_minor=value & 0xFF,
            flags=_policy_flags(value & POLICY_FLAG_MASK),
            reserved=value & POLICY_RESERVED_MASK,
        )

    @classmethod
    def parse(cls, text: str) -> Self:
        """A number (``0x30000``, ``196608``), as sev-snp-measure's ``--policy`` takes."""
        try:
            return cls.from_int(int(text.strip(), 0))
        except ValueError as exc:
            raise FormatError(POLICY, "policy", f"not a number: {text!r}", value=text) from exc

    def to_int(self) -> int:
        return self.reserved | int(self.flags) | self.abi_major << 8 | self.abi_minor

    def to_bytes(self) -> bytes:
        return le_bytes(self.to_int(), 8, structure=POLICY, field="policy")

    def has(self, flag: SnpPolicyFlags) -> bool:
        return bool(int(self.flags) & flag.value)

    def problems(self) -> list[str]:
        """Why this policy is not a valid one (empty when valid)."""
        out = []
        if SnpPolicyFlags.RESERVED_MBO not in self.flags:
            out.append("bit 17 must be one")
        if self.reserved:
            out.append(f"reserved bits 63:26 must be zero (found {self.reserved:#x})")
        return out

    def describe(self) -> str:
        value = int(self.flags)
        names = [name for bit, name in _POLICY_NAMES if value & bit]
        text = ",".join([*names, f"abi>={self.abi_major}.{self.abi_minor}"])
        return f"{self.to_int():#x} ({text})"


class PlatformInfoFlags(enum.IntFlag):
    SMT_EN = 1 << 0
    TSME_EN = 1 << 1
    ECC_EN = 1 << 2
    RAPL_DIS = 1 << 3
    CIPHERTEXT_HIDING_EN = 1 << 4
    ALIAS_CHECK_COMPLETE = 1 << 5
    BIT6 = 1 << 6  # set on a real Turin report; meaning not published (sev-snp.md §2.2)
    TIO_EN = 1 << 7


@dataclass(frozen=True)
class PlatformInfo:
    """PLATFORM_INFO: the named bits plus any unknown ones (``unknown``, bits 63:8)."""

    flags: PlatformInfoFlags = PlatformInfoFlags(0)  # noqa: RUF009 - an immutable IntFlag
    unknown: int = 0

    @classmethod
    def from_int(cls, value: int) -> Self:
        if not 0 <= value < 1 << 64:
            raise FormatError("PLATFORM_INFO", "value", "a u64", value=value)
        return cls(_platform_flags(value & 0xFF), value & ~0xFF)

    def to_int(self) -> int:
        return int(self.flags) | self.unknown

    def describe(self) -> str:
        value = int(self.flags)
        names = [name for bit, name in _PLATFORM_NAMES if value & bit]
        return f"{self.to_int():#x} ({','.join(names) or 'none'})"


_PLATFORM_NAMES = tuple((f.value, (f.name or "").lower()) for f in PlatformInfoFlags)


@functools.lru_cache(maxsize=256)
def _platform_flags(value: int) -> PlatformInfoFlags:
    return PlatformInfoFlags(value)  # composite IntFlag values are slow to build; few exist


@functools.lru_cache(maxsize=1024)
def _policy_flags(value: int) -> SnpPolicyFlags:
    return SnpPolicyFlags(value)


class SigningKey(enum.IntEnum):
    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True)
class KeyInfo:
    """KEY_INFO: which key signed the report and whether an author key was used."""

    author_key_en: bool = False
    mask_chip_key: bool = False
    signing_key: int = 0  # SigningKey value, or a reserved 2..6
    reserved: int = 0  # bits 31:5

    @classmethod
    def from_int(cls, value: int) -> Self:
        if not 0 <= value < 1 << 32:
            raise FormatError("KEY_INFO", "value", "a u32", value=value)
        return cls(bool(value & 1), bool(value & 2), (value >> 2) & 7, value & ~0x1F)

    def to_int(self) -> int:
        return self.reserved | self.signing_key << 2 | self.mask_chip_key << 1 | self.author_key_en

    @property
    def signer(self) -> SigningKey | None:
        try:
            return SigningKey(self.signing_key)
        except ValueError:
            return None
