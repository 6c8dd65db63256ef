"""The GUIDed footer table at the end of an OVMF image (QEMU ``pc_system_ovmf_table``).

The footer GUID sits 48 bytes before the end of the image (the last 32 bytes hold the reset
vector), preceded by a u16 total length that counts the footer entry itself. Entries are
walked backwards from there, each laid out as ``data ‖ u16 length (data + 18) ‖ GUID``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, le_bytes

STRUCTURE = "OVMF footer table"
FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_ES_RESET_BLOCK_GUID = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
SEV_SECRET_BLOCK_GUID = uuid.UUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")
SEV_HASH_TABLE_GUID = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_SNP_METADATA_GUID = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
RESET_VECTOR_SIZE = 32
TAIL_SIZE = 4096  # QEMU: "we know the table is within the last 4k"
_ENTRY_OVERHEAD = 18


@dataclass(frozen=True)
class FooterEntry:
    guid: uuid.UUID
    data: bytes

    def to_bytes(self) -> bytes:
        size = le_bytes(
            len(self.data) + _ENTRY_OVERHEAD, 2, structure=STRUCTURE, field="entry.length"
        )
        return self.data + size + self.guid.bytes_le


@dataclass(frozen=True)
class Area:
    """A guest-physical region named by the footer table (secret area, hashes area)."""

    base: int
    size: int


@dataclass(frozen=True)
class OvmfFooterTable:
    """Entries in the order QEMU finds them: nearest the footer first."""

    entries: tuple[FooterEntry, ...]

    @classmethod
    def from_image(cls, image: bytes) -> Self:
        """Read the table from a whole image or from its tail (at least the last 4 KiB)."""
        tail = image[-TAIL_SIZE:]
        r = Reader(STRUCTURE, tail)
        r.expect_at_least(48 + 2)
        guid_off = len(tail) - 48
        if (found := r.guid("footer.guid", guid_off)) != FOOTER_GUID:
            raise r.fail(
                "footer.guid",
                guid_off,
                f"no OVMF footer table: expected GUID {FOOTER_GUID} 48 bytes before the end, "
                f"found {found}; is this an OVMF image?",
                found,
            )
        total = r.u16("footer.length", guid_off - 2)
        body_len = total - _ENTRY_OVERHEAD
        if body_len < 0 or body_len > guid_off - 2:
            raise r.fail(
                "footer.length", guid_off - 2, f"table length {total} does not fit the image", total
            )
        return cls.from_bytes(tail[guid_off - 2 - body_len : guid_off - 2])

    @classmethod
    def from_bytes(cls, body: bytes) -> Self:
        """Parse the entries region (everything before the footer's own length and GUID)."""
        r = Reader(STRUCTURE, body)
        entries = []
        end = len(body)
        while end >= _ENTRY_OVERHEAD:
            guid = r.guid("entry.guid", end - 16)
            length = r.u16("entry.length", end - 18)
            if length < _ENTRY_OVERHEAD or length > end:
                raise r.fail(
                    "entry.length", end - 18, f"must be within {_ENTRY_OVERHEAD}..{end}", length
                )
            entries.append(FooterEntry(guid, body[end - length : end - _ENTRY_OVERHEAD]))
            end -= length
        if end:
            raise r.fail(
                "entries", 0, f"{end} bytes before the first entry do not form an entry", end
            )
        return cls(tuple(entries))

    def to_bytes(self) -> bytes:
        """The entries region followed by the footer's length and GUID (no reset vector)."""
        body = b"".join(e.to_bytes() for e in reversed(self.entries))
        total = le_bytes(len(body) + _ENTRY_OVERHEAD, 2, structure=STRUCTURE, field="footer.length")
        return body + total + FOOTER_GUID.bytes_le

    def find(self, guid: uuid.UUID) -> bytes | None:
        for entry in self.entries:
            if entry.guid == guid:
                return entry.data
        return None

    def _area(self, guid: uuid.UUID, field: str) -> Area | None:
        data = self.find(guid)
        if data is None:
            return None
        r = Reader(STRUCTURE, data)
        r.expect_at_least(8)
        return Area(r.u32(f"{field}.base", 0), r.u32(f"{field}.size", 4))

    @property
    def secret_area(self) -> Area | None:
        return self._area(SEV_SECRET_BLOCK_GUID, "sev_secret_block")

    @property
    def hashes_area(self) -> Area | None:
        return self._area(SEV_HASH_TABLE_GUID, "sev_hash_table")

    @property
    def sev_es_reset_address(self) -> int | None:
        data = self.find(SEV_ES_RESET_BLOCK_GUID)
        if data is None:
            return None
        r = Reader(STRUCTURE, data)
        r.expect_at_least(4)
        return r.u32("sev_es_reset_block.address", 0)
