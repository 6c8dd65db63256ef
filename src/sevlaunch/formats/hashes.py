"""QEMU's kernel-hashes table for measured direct kernel boot (firmware-API doc §11).

176 bytes once padded: table GUID, u16 length 168, then cmdline, initrd and kernel entries of
GUID ‖ u16 50 ‖ SHA-256, and 8 zero bytes of padding.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, check_len

STRUCTURE = "kernel-hashes table"
TABLE_GUID = uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
CMDLINE_GUID = uuid.UUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
INITRD_GUID = uuid.UUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
KERNEL_GUID = uuid.UUID("4de79437-abd2-427f-b835-d5b172d2045b")
ENTRY_SIZE = 50
TABLE_SIZE = 18 + 3 * ENTRY_SIZE  # 168
PADDED_SIZE = 176
_ENTRIES = (("cmdline", CMDLINE_GUID), ("initrd", INITRD_GUID), ("kernel", KERNEL_GUID))


@dataclass(frozen=True)
class KernelHashes:
    """The three SHA-256 digests; ``to_bytes`` gives the padded table QEMU measures."""

    cmdline: bytes
    initrd: bytes
    kernel: bytes

    def __post_init__(self) -> None:
        for name, _ in _ENTRIES:
            check_len(STRUCTURE, name, getattr(self, name), 32)

    def to_bytes(self) -> bytes:
        body = TABLE_GUID.bytes_le + TABLE_SIZE.to_bytes(2, "little")
        for name, guid in _ENTRIES:
            body += guid.bytes_le + ENTRY_SIZE.to_bytes(2, "little") + getattr(self, name)
        return body + bytes(PADDED_SIZE - TABLE_SIZE)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a padded (176-byte) or unpadded (168-byte) table."""
        r = Reader(STRUCTURE, data)
        if len(data) not in (TABLE_SIZE, PADDED_SIZE):
            raise r.fail(
                "length",
                None,
                f"expected {TABLE_SIZE} or {PADDED_SIZE} bytes, got {len(data)}",
                len(data),
            )
        _expect_guid(r, "guid", 0, TABLE_GUID)
        if (length := r.u16("length", 16)) != TABLE_SIZE:
            raise r.fail("length", 16, f"expected {TABLE_SIZE}, got {length}", length)
        digests = {}
        for i, (name, guid) in enumerate(_ENTRIES):
            off = 18 + i * ENTRY_SIZE
            _expect_guid(r, f"{name}.guid", off, guid)
            if (n := r.u16(f"{name}.length", off + 16)) != ENTRY_SIZE:
                raise r.fail(f"{name}.length", off + 16, f"expected {ENTRY_SIZE}, got {n}", n)
            digests[name] = r.raw(f"{name}.hash", off + 18, 32)
        r.zeros("padding", TABLE_SIZE, len(data) - TABLE_SIZE)
        return cls(**digests)


def _expect_guid(r: Reader, field: str, offset: int, expected: uuid.UUID) -> None:
    found = r.guid(field, offset)
    if found != expected:
        raise r.fail(field, offset, f"expected {expected}, got {found}", found)
