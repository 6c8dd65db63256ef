"""The SNP SECRETS page (4096 B) the firmware writes into the guest (sev-snp.md §5.4): the
VMPCKs that key guest messages, plus the OS area where Linux keeps its message counters.
0x140–0x15F is what an SVSM reads (Linux's and coconut-svsm's names); LAUNCH_MIT_VECTOR at
0x168 follows Project Oak's reading of the ABI (the only source seen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from sevlaunch.formats._codec import Reader, check_len, le_bytes

STRUCTURE = "SNP secrets page"
PAGE_SIZE = 4096
_TAIL = 0x170

# (name, offset, size); sizes above 8 are byte strings
_LAYOUT = (
    ("version", 0x00, 4),
    ("imien", 0x04, 4),
    ("fms", 0x08, 4),
    ("gosvw", 0x10, 16),
    ("vmpck0", 0x20, 32),
    ("vmpck1", 0x40, 32),
    ("vmpck2", 0x60, 32),
    ("vmpck3", 0x80, 32),
    ("os_area", 0xA0, 96),
    ("vmsa_tweak_bitmap", 0x100, 64),
    ("svsm_base", 0x140, 8),
    ("svsm_size", 0x148, 8),
    ("svsm_caa", 0x150, 8),
    ("svsm_max_version", 0x158, 4),
    ("svsm_guest_vmpl", 0x15C, 1),
    ("tsc_factor", 0x160, 4),
    ("launch_mit_vector", 0x168, 8),  # Project Oak's reading of the ABI's table (one source)
)
_BYTES = frozenset(n for n, _, s in _LAYOUT if s > 8)


@dataclass(frozen=True)
class SecretsPage:
    fms: int
    vmpck0: bytes = field(repr=False)
    vmpck1: bytes = field(repr=False)
    vmpck2: bytes = field(repr=False)
    vmpck3: bytes = field(repr=False)
    version: int = 3
    imien: int = 0
    gosvw: bytes = bytes(16)
    os_area: bytes = bytes(96)
    vmsa_tweak_bitmap: bytes = bytes(64)
    svsm_base: int = 0
    svsm_size: int = 0
    svsm_caa: int = 0
    svsm_max_version: int = 0
    svsm_guest_vmpl: int = 0
    tsc_factor: int = 0
    launch_mit_vector: int = 0

    def __post_init__(self) -> None:
        for name, _, size in _LAYOUT:
            value = getattr(self, name)
            if name in _BYTES:
                check_len(STRUCTURE, name, value, size)
            else:
                le_bytes(value, size, structure=STRUCTURE, field=name)

    def vmpck(self, index: int) -> bytes:
        if not 0 <= index <= 3:
            raise Reader(STRUCTURE, b"").fail("vmpck", None, "VMPCK index is 0..3", index)
        return bytes(getattr(self, f"vmpck{index}"))

    def msg_seqno(self, index: int) -> int:
        """Linux's stored sequence number for VMPCK ``index`` (u32s at the OS area's start)."""
        return int.from_bytes(self.os_area[4 * index : 4 * index + 4], "little")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data)
        r.expect_size(PAGE_SIZE)
        r.zeros("reserved_0c", 0x0C, 4)
        r.zeros("reserved_15d", 0x15D, 3)
        r.zeros("reserved_164", 0x164, 4)
        r.zeros("reserved", _TAIL, PAGE_SIZE - _TAIL)
        values = {
            n: r.raw(n, off, size) if n in _BYTES else r.uint(n, off, size)
            for n, off, size in _LAYOUT
        }
        return cls(**values)  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        out = bytearray(PAGE_SIZE)
        for name, off, size in _LAYOUT:
            value = getattr(self, name)
            out[off : off + size] = value if name in _BYTES else value.to_bytes(size, "little")
        return bytes(out)
