"""Field-level helpers shared by the format parsers.

A :class:`Reader` walks a fixed-size buffer and turns every problem into a
:class:`~sevlaunch.errors.FormatError` naming the structure, the field and its offset, so a
parser never leaks ``struct.error`` or ``IndexError`` on hostile bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sevlaunch.errors import FormatError


def le_int(data: bytes) -> int:
    """Little-endian unsigned integer, the SEV API's byte order."""
    return int.from_bytes(data, "little")


def le_bytes(value: int, size: int, *, structure: str, field: str) -> bytes:
    """Encode ``value`` little-endian in ``size`` bytes, or raise naming the field."""
    if value < 0 or value.bit_length() > size * 8:
        raise FormatError(structure, field, f"value does not fit in {size} bytes", value=value)
    return value.to_bytes(size, "little")


@dataclass(frozen=True)
class Reader:
    """Reads fields of one structure out of ``data``; offsets are relative to ``data``."""

    structure: str
    data: bytes

    def expect_size(self, size: int) -> None:
        if len(self.data) != size:
            raise FormatError(
                self.structure,
                "length",
                f"expected {size} bytes, got {len(self.data)}",
                value=len(self.data),
            )

    def expect_at_least(self, size: int) -> None:
        if len(self.data) < size:
            raise FormatError(
                self.structure,
                "length",
                f"expected at least {size} bytes, got {len(self.data)}",
                value=len(self.data),
            )

    def raw(self, field: str, offset: int, size: int) -> bytes:
        end = offset + size
        if offset < 0 or end > len(self.data):
            raise FormatError(
                self.structure,
                field,
                f"needs bytes [{offset:#x}, {end:#x}) but the buffer has {len(self.data)}",
                offset=offset,
            )
        return self.data[offset:end]

    def uint(self, field: str, offset: int, size: int) -> int:
        return le_int(self.raw(field, offset, size))

    def u8(self, field: str, offset: int) -> int:
        return self.uint(field, offset, 1)

    def u16(self, field: str, offset: int) -> int:
        return self.uint(field, offset, 2)

    def u32(self, field: str, offset: int) -> int:
        return self.uint(field, offset, 4)

    def u64(self, field: str, offset: int) -> int:
        return self.uint(field, offset, 8)

    def guid(self, field: str, offset: int) -> uuid.UUID:
        """A GUID stored in EFI mixed-endian order (``uuid.bytes_le``)."""
        return uuid.UUID(bytes_le=self.raw(field, offset, 16))

    def zeros(self, field: str, offset: int, size: int) -> None:
        """Check a must-be-zero region."""
        chunk = self.raw(field, offset, size)
        if chunk != bytes(size):  # a memcmp; any() would walk the bytes in Python
            first = next(i for i, b in enumerate(chunk) if b)
            raise FormatError(
                self.structure,
                field,
                f"reserved bytes must be zero (byte {offset + first:#x} is {chunk[first]:#04x})",
                offset=offset + first,
                value=chunk[first],
            )

    def fail(
        self, field: str, offset: int | None, reason: str, value: object = None
    ) -> FormatError:
        return FormatError(self.structure, field, reason, offset=offset, value=value)


def check_len(structure: str, field: str, value: bytes, size: int) -> None:
    """Raise unless a fixed-size byte field has exactly ``size`` bytes (used by constructors)."""
    if len(value) != size:
        raise FormatError(
            structure, field, f"expected {size} bytes, got {len(value)}", value=len(value)
        )
