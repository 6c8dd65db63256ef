"""OVMF's SEV metadata ("ASEV" table), which lists the pages QEMU pre-validates for an SNP
guest (sev-snp.md §3.4). The footer table entry dc886566-… holds its offset from the end of
the image; each section is ``u32 gpa ‖ u32 size ‖ u32 type``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader
from sevlaunch.formats.ovmf import SEV_SNP_METADATA_GUID, OvmfFooterTable

STRUCTURE = "OVMF SEV metadata"
SIGNATURE = b"ASEV"
HEADER_SIZE = 16
SECTION_SIZE = 12


class SectionType(enum.IntEnum):
    SNP_SEC_MEM = 1
    SNP_SECRETS = 2
    CPUID = 3
    SVSM_CAA = 4
    SNP_KERNEL_HASHES = 0x10


@dataclass(frozen=True)
class MetadataSection:
    gpa: int
    size: int
    section_type: int  # a SectionType value, or an unknown one (measured as ZERO by QEMU)

    @property
    def kind(self) -> SectionType | None:
        try:
            return SectionType(self.section_type)
        except ValueError:
            return None


@dataclass(frozen=True)
class SevMetadata:
    sections: tuple[MetadataSection, ...]
    version: int = 1

    @classmethod
    def from_image(cls, image: bytes, footer: OvmfFooterTable | None = None) -> Self | None:
        """The metadata of a whole OVMF image (or a suffix holding it), None if it has none."""
        table = footer if footer is not None else OvmfFooterTable.from_image(image)
        entry = table.find(SEV_SNP_METADATA_GUID)
        if entry is None:
            return None
        offset = Reader(STRUCTURE, entry).u32("offset", 0)
        if not HEADER_SIZE <= offset <= len(image):
            raise Reader(STRUCTURE, entry).fail(
                "offset", 0, f"points outside the {len(image)}-byte image", offset
            )
        return cls.from_bytes(image[len(image) - offset :])

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse from the start of ``data`` (trailing bytes are the rest of the image)."""
        r = Reader(STRUCTURE, data)
        r.expect_at_least(HEADER_SIZE)
        if (sig := r.raw("signature", 0, 4)) != SIGNATURE:
            raise r.fail("signature", 0, f"expected {SIGNATURE!r}", sig)
        size, version, count = r.u32("size", 4), r.u32("version", 8), r.u32("num_items", 12)
        if version != 1:
            raise r.fail("version", 8, "only version 1 exists", version)
        if size != HEADER_SIZE + SECTION_SIZE * count:
            raise r.fail("size", 4, f"{count} sections need {HEADER_SIZE + 12 * count}", size)
        sections = tuple(
            MetadataSection(
                r.u32("section.gpa", off),
                r.u32("section.size", off + 4),
                r.u32("section.type", off + 8),
            )
            for off in range(HEADER_SIZE, size, SECTION_SIZE)
        )
        return cls(sections, version)

    def to_bytes(self) -> bytes:
        head = SIGNATURE + (HEADER_SIZE + SECTION_SIZE * len(self.sections)).to_bytes(4, "little")
        head += self.version.to_bytes(4, "little") + len(self.sections).to_bytes(4, "little")
        return head + b"".join(
            s.gpa.to_bytes(4, "little")
            + s.size.to_bytes(4, "little")
            + s.section_type.to_bytes(4, "little")
            for s in self.sections
        )

    def find(self, kind: SectionType) -> MetadataSection | None:
        return next((s for s in self.sections if s.section_type == kind), None)
