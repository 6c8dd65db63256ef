"""The extended-report certificate table (sev-snp.md §5.6): 24-byte entries ``GUID ‖ u32
offset ‖ u32 length`` ended by an all-zero entry, then the DER blobs. The host supplies it and
nothing authenticates it: a verifier chains whatever it holds to a pinned ARK.

GUIDs are stored in RFC 4122 byte order (``uuid.bytes``), not EFI's mixed order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader

STRUCTURE = "SNP certificate table"
ENTRY_SIZE = 24
PAGE_SIZE = 4096

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # ASK, or the ASVK
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
CRL_GUID = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea")  # virtee only (UNCONFIRMED)
NAMES = {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark", CRL_GUID: "crl"}


@dataclass(frozen=True)
class CertTableEntry:
    guid: uuid.UUID
    data: bytes

    @property
    def name(self) -> str:
        return NAMES.get(self.guid, str(self.guid))


@dataclass(frozen=True)
class CertTable:
    entries: tuple[CertTableEntry, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a table buffer; bytes after the last blob (page padding) are ignored."""
        r = Reader(STRUCTURE, data)
        headers: list[tuple[uuid.UUID, int, int, int]] = []
        pos = 0
        while True:
            raw = r.raw("entry", pos, ENTRY_SIZE)
            if raw == bytes(ENTRY_SIZE):
                break
            headers.append(
                (
                    uuid.UUID(bytes=raw[:16]),
                    r.u32("offset", pos + 16),
                    r.u32("length", pos + 20),
                    pos,
                )
            )
            pos += ENTRY_SIZE
        table_end = pos + ENTRY_SIZE
        entries = []
        for guid, offset, length, at in headers:
            if offset < table_end or offset + length > len(data):
                raise r.fail(
                    "offset",
                    at + 16,
                    f"blob [{offset:#x}, {offset + length:#x}) must lie after the table "
                    f"(ends {table_end:#x}) and within the {len(data)}-byte buffer",
                    offset,
                )
            entries.append(CertTableEntry(guid, data[offset : offset + length]))
        return cls(tuple(entries))

    def to_bytes(self, *, pad_to_page: bool = False) -> bytes:
        head_size = ENTRY_SIZE * (len(self.entries) + 1)
        head, body = bytearray(), bytearray()
        for entry in self.entries:
            offset = head_size + len(body)
            head += entry.guid.bytes + offset.to_bytes(4, "little")
            head += len(entry.data).to_bytes(4, "little")
            body += entry.data
        out = bytes(head) + bytes(ENTRY_SIZE) + bytes(body)
        if pad_to_page and len(out) % PAGE_SIZE:
            out += bytes(PAGE_SIZE - len(out) % PAGE_SIZE)
        return out

    def find(self, guid: uuid.UUID) -> bytes | None:
        for entry in self.entries:
            if entry.guid == guid:
                return entry.data
        return None
