"""LAUNCH_SECRET's packet header and the OVMF secret table the guest reads.

Header (52 bytes): FLAGS u32 ‖ IV[16] ‖ MAC[32]. The table (firmware-API doc §8): a header of
table GUID and u32 total length, then entries of GUID ‖ u32 length ‖ data, zero-padded to a
multiple of 16 as sevctl pads it. GUIDs are stored EFI mixed-endian (``bytes_le``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError
from sevlaunch.formats._codec import Reader, check_len

HEADER_STRUCTURE = "secret packet header"
HEADER_SIZE = 0x34
TABLE_STRUCTURE = "OVMF secret table"
FLAG_COMPRESSED = 0x1

SECRET_TABLE_GUID = uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b")
LUKS_KEY_GUID = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b")
#: Aliases accepted wherever a secret GUID is (libvirt's validator knows ``luks-key``).
WELL_KNOWN_GUIDS = {"luks-key": LUKS_KEY_GUID}
MAX_ENTRIES = 64  # Linux efi_secret


def resolve_guid(text: str) -> uuid.UUID:
    """A secret GUID from its text form or a well-known alias such as ``luks-key``."""
    alias = WELL_KNOWN_GUIDS.get(text.strip().lower())
    if alias is not None:
        return alias
    try:
        return uuid.UUID(text.strip())
    except ValueError as exc:
        known = ", ".join(WELL_KNOWN_GUIDS)
        raise FormatError(
            TABLE_STRUCTURE,
            "guid",
            f"{text!r} is neither a GUID nor a known alias ({known})",
            value=text,
        ) from exc


def guid_alias(guid: uuid.UUID) -> str:
    """The alias of a well-known GUID, or its text form."""
    for alias, known in WELL_KNOWN_GUIDS.items():
        if known == guid:
            return alias
    return str(guid)


@dataclass(frozen=True)
class SecretHeader:
    flags: int
    iv: bytes
    mac: bytes

    def __post_init__(self) -> None:
        check_len(HEADER_STRUCTURE, "iv", self.iv, 16)
        check_len(HEADER_STRUCTURE, "mac", self.mac, 32)
        if not 0 <= self.flags <= 0xFFFF_FFFF:
            raise FormatError(
                HEADER_STRUCTURE, "flags", "must be a u32", offset=0, value=self.flags
            )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(HEADER_STRUCTURE, data)
        r.expect_size(HEADER_SIZE)
        return cls(r.u32("flags", 0), r.raw("iv", 4, 16), r.raw("mac", 0x14, 32))

    def to_bytes(self) -> bytes:
        return self.flags.to_bytes(4, "little") + self.iv + self.mac


@dataclass(frozen=True)
class SecretEntry:
    guid: uuid.UUID
    data: bytes

    def to_bytes(self) -> bytes:
        return self.guid.bytes_le + (20 + len(self.data)).to_bytes(4, "little") + self.data


@dataclass(frozen=True)
class SecretTable:
    """The plaintext the guest finds in its secret area."""

    entries: tuple[SecretEntry, ...]

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_ENTRIES:
            raise FormatError(
                TABLE_STRUCTURE,
                "entries",
                f"at most {MAX_ENTRIES} entries",
                value=len(self.entries),
            )

    @property
    def length(self) -> int:
        """The header's length field: the table without padding."""
        return 20 + sum(20 + len(e.data) for e in self.entries)

    def to_bytes(self) -> bytes:
        body = SECRET_TABLE_GUID.bytes_le + self.length.to_bytes(4, "little")
        body += b"".join(e.to_bytes() for e in self.entries)
        return body + bytes(-len(body) % 16)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a table; bytes after the header's length (padding, the rest of the area) are ignored."""
        r = Reader(TABLE_STRUCTURE, data)
        guid = r.guid("header.guid", 0)
        if guid != SECRET_TABLE_GUID:
            raise r.fail("header.guid", 0, f"expected {SECRET_TABLE_GUID}, got {guid}", guid)
        length = r.u32("header.length", 16)
        if not 20 <= length <= len(data):
            raise r.fail("header.length", 16, f"must be within 20..{len(data)}", length)
        entries: list[SecretEntry] = []
        off = 20
        while off < length:
            if len(entries) == MAX_ENTRIES:
                raise r.fail("entries", off, f"more than {MAX_ENTRIES} entries")
            entry_guid = r.guid("entry.guid", off)
            entry_len = r.u32("entry.length", off + 16)
            if entry_len < 20 or off + entry_len > length:
                raise r.fail(
                    "entry.length", off + 16, f"must be within 20..{length - off}", entry_len
                )
            entries.append(SecretEntry(entry_guid, data[off + 20 : off + entry_len]))
            off += entry_len
        return cls(tuple(entries))

    def get(self, guid: uuid.UUID) -> bytes | None:
        for entry in self.entries:
            if entry.guid == guid:
                return entry.data
        return None
