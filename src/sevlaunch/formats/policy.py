"""The 32-bit guest policy (firmware-API doc §5).

Byte 0 holds the flags (NODBG, NOKS, ES, NOSEND, DOMAIN, SEV), bits 6-15 are reserved and
must be zero, byte 2 is the minimum firmware API major and byte 3 the minimum API minor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError

STRUCTURE = "guest policy"
RESERVED_MASK = 0x0000_FFC0


class PolicyFlags(enum.IntFlag):
    NODBG = 1 << 0
    NOKS = 1 << 1
    ES = 1 << 2
    NOSEND = 1 << 3
    DOMAIN = 1 << 4
    SEV = 1 << 5


@dataclass(frozen=True)
class Policy:
    """A guest policy. ``reserved`` keeps bits 6-15 so that any u32 round-trips exactly."""

    flags: PolicyFlags = PolicyFlags(0)  # noqa: RUF009 (an immutable int flag)
    api_major: int = 0
    api_minor: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("api_major", self.api_major, 0xFF),
            ("api_minor", self.api_minor, 0xFF),
            ("flags", int(self.flags), 0x3F),
        ):
            if not 0 <= value <= limit:
                raise FormatError(STRUCTURE, name, f"must be within 0..{limit:#x}", value=value)
        if self.reserved & ~RESERVED_MASK:
            raise FormatError(
                STRUCTURE, "reserved", "only bits 6-15 are reserved", value=self.reserved
            )

    @classmethod
    def from_int(cls, value: int, *, allow_reserved: bool = False) -> Self:
        if not 0 <= value <= 0xFFFF_FFFF:
            raise FormatError(STRUCTURE, "policy", "must be a 32-bit unsigned integer", value=value)
        reserved = value & RESERVED_MASK
        if reserved and not allow_reserved:
            raise FormatError(
                STRUCTURE,
                "reserved",
                f"bits 6-15 must be zero, got {reserved:#x} in {value:#010x}",
                offset=0,
                value=value,
            )
        return cls(PolicyFlags(value & 0x3F), (value >> 16) & 0xFF, (value >> 24) & 0xFF, reserved)

    def to_int(self) -> int:
        return int(self.flags) | self.reserved | (self.api_major << 16) | (self.api_minor << 24)

    @classmethod
    def from_bytes(cls, data: bytes, *, allow_reserved: bool = False) -> Self:
        if len(data) != 4:
            raise FormatError(
                STRUCTURE, "length", f"expected 4 bytes, got {len(data)}", value=len(data)
            )
        return cls.from_int(int.from_bytes(data, "little"), allow_reserved=allow_reserved)

    def to_bytes(self) -> bytes:
        return self.to_int().to_bytes(4, "little")

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``0x5``, ``5`` or flag names such as ``nodbg,noks,es`` (``api=1.40`` too)."""
        text = text.strip()
        try:
            number = int(text, 0)
        except ValueError:
            pass
        else:
            return cls.from_int(number)
        flags = PolicyFlags(0)
        major = minor = 0
        for item in filter(None, (p.strip() for p in text.replace("|", ",").split(","))):
            if item.lower().startswith("api="):
                major, minor = _parse_api(item[4:])
                continue
            try:
                flags |= PolicyFlags[item.upper()]
            except KeyError as exc:
                names = ", ".join(f.name.lower() for f in PolicyFlags if f.name)
                raise FormatError(
                    STRUCTURE,
                    "flags",
                    f"unknown flag {item!r}; known flags: {names}, api=MAJOR.MINOR",
                    value=item,
                ) from exc
        return cls(flags, major, minor)

    def describe(self) -> str:
        names = [f.name.lower() for f in PolicyFlags if f in self.flags and f.name]
        parts = names or ["none"]
        if self.api_major or self.api_minor:
            parts.append(f"api>={self.api_major}.{self.api_minor}")
        return f"{self.to_int():#06x} ({','.join(parts)})"

    @property
    def requires_es(self) -> bool:
        return PolicyFlags.ES in self.flags

    @property
    def allows_debug(self) -> bool:
        return PolicyFlags.NODBG not in self.flags

    @property
    def allows_key_sharing(self) -> bool:
        return PolicyFlags.NOKS not in self.flags


def _parse_api(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in text.split("."))
    except ValueError as exc:
        raise FormatError(
            STRUCTURE, "api", f"expected MAJOR.MINOR, got {text!r}", value=text
        ) from exc
    return major, minor
