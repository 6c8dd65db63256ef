"""The SNP CPUID table the hypervisor fills and the firmware validates (QEMU's
``SnpCpuidInfo``, Linux ``snp_cpuid_table``): ``u32 count ‖ u32 ‖ u64`` then 64 entries of
``{u32 eax_in, ecx_in; u64 xcr0_in, xss_in; u32 eax, ebx, ecx, edx; u64 reserved}`` (48 bytes
each), in a 4 KiB page whose rest is zero."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader

STRUCTURE = "SNP CPUID table"
MAX_ENTRIES = 64
HEADER_SIZE = 16
ENTRY_SIZE = 48
TABLE_SIZE = HEADER_SIZE + MAX_ENTRIES * ENTRY_SIZE
PAGE_SIZE = 4096
_ENTRY = struct.Struct("<IIQQIIIIQ")


@dataclass(frozen=True)
class CpuidEntry:
    eax_in: int
    ecx_in: int = 0
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0
    xcr0_in: int = 0
    xss_in: int = 0

    def to_bytes(self) -> bytes:
        return _ENTRY.pack(
            self.eax_in,
            self.ecx_in,
            self.xcr0_in,
            self.xss_in,
            self.eax,
            self.ebx,
            self.ecx,
            self.edx,
            0,
        )

    def registers(self) -> tuple[int, int, int, int]:
        return (self.eax, self.ebx, self.ecx, self.edx)


@dataclass(frozen=True)
class CpuidTable:
    entries: tuple[CpuidEntry, ...]

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_ENTRIES:
            raise Reader(STRUCTURE, b"").fail(
                "count", 0, f"at most {MAX_ENTRIES} entries", len(self.entries)
            )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """A table page (4096 bytes) or the table alone (3088 bytes)."""
        r = Reader(STRUCTURE, data)
        if len(data) not in (TABLE_SIZE, PAGE_SIZE):
            raise r.fail("length", None, f"expected {TABLE_SIZE} or {PAGE_SIZE} bytes", len(data))
        count = r.u32("count", 0)
        if count > MAX_ENTRIES:
            raise r.fail("count", 0, f"at most {MAX_ENTRIES} entries", count)
        r.zeros("reserved", 4, 12)
        entries = []
        for index in range(count):
            off = HEADER_SIZE + index * ENTRY_SIZE
            eax_in, ecx_in, xcr0, xss, eax, ebx, ecx, edx, rsvd = _ENTRY.unpack_from(data, off)
            if rsvd:
                raise r.fail("entry.reserved", off + 40, "reserved bytes must be zero", rsvd)
            entries.append(CpuidEntry(eax_in, ecx_in, eax, ebx, ecx, edx, xcr0, xss))
        return cls(tuple(entries))

    def to_bytes(self) -> bytes:
        head = struct.pack("<IIQ", len(self.entries), 0, 0)
        return head + b"".join(e.to_bytes() for e in self.entries)

    def to_page(self) -> bytes:
        table = self.to_bytes()
        return table + bytes(PAGE_SIZE - len(table))
