"""Synthetic OVMF-like firmware images, so every SEV feature can be tried without edk2.

An image is deterministic filler (SHAKE-256 of a seed) ending in what QEMU reads from a real
AmdSev OVMF: the GUIDed footer table (SEV-ES reset block, SEV secret area, SEV hashes area)
just below the last 32 bytes, which hold a reset-vector stub as in a real flash image mapped
to end at 4 GiB. The area addresses are guest-physical and sit in OVMF's MEMFD (RAM at
0x800000), not in the flash: the default layout is that of the RHEL 9 AmdSev build whose
tail is in the sevctl vectors (reset block 0x80B004, secret 0x80C000/0xC00, hashes
0x80CC00/0x400). QEMU finds the table in the last 4 KiB, so the image must be at least that
big; 64 KiB is asked for to keep the filler meaningful.

An SNP-capable image (:data:`AMDSEV_2024`) also carries OVMF's SEV metadata ("ASEV": the pages
QEMU pre-validates for SEV-SNP) just below the footer table, named by the footer entry
dc886566-…, laid out as edk2-stable202405's AmdSevX64 build (the sev-snp-measure fixture):
reset block 0x80B004, secret area 0x810000/0xC00, hashes 0x810C00/0x400, SNP_SEC_MEM at
0x800000/0x9000 and 0x80A000/0x3000, SECRETS 0x80D000, CPUID 0x80E000, SVSM_CAA 0x80F000,
SNP_KERNEL_HASHES 0x810000 and SNP_SEC_MEM 0x811000/0xF000.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sevlaunch.errors import UsageError
from sevlaunch.formats.ovmf import (
    RESET_VECTOR_SIZE,
    SEV_ES_RESET_BLOCK_GUID,
    SEV_HASH_TABLE_GUID,
    SEV_SECRET_BLOCK_GUID,
    SEV_SNP_METADATA_GUID,
    Area,
    FooterEntry,
    OvmfFooterTable,
)
from sevlaunch.formats.snp.metadata import MetadataSection, SectionType, SevMetadata

PAGE = 4096
MIN_SIZE = 64 * 1024
DEFAULT_SIZE = 4 << 20
FOUR_GIB = 1 << 32
MAX_SIZE = 64 << 20  # QEMU maps -bios below 4 GiB; real OVMF images are 2-4 MiB

# The last 32 bytes: 12 x nop, the "VTF\0" volume-top-file tag, then at 0xFFFFFFF0 (the x86
# reset vector) cli; hlt; jmp back to the hlt, padded with nop.
RESET_VECTOR_STUB = b"\x90" * 12 + b"VTF\x00" + b"\xfa\xf4\xeb\xfd" + b"\x90" * 12


@dataclass(frozen=True)
class OvmfLayout:
    """Where the footer table points; any field may be None to leave that entry out."""

    sev_es_reset_address: int | None = 0x80B004
    secret_area: Area | None = Area(0x80C000, 0xC00)  # noqa: RUF009 - frozen value
    hashes_area: Area | None = Area(0x80CC00, 0x400)  # noqa: RUF009 - frozen value
    snp_sections: tuple[MetadataSection, ...] = ()  # an SEV metadata table when not empty

    def footer_table(self, metadata_offset: int | None = None) -> OvmfFooterTable:
        """Entries nearest the footer first, in the order the AmdSev build has them."""
        entries = []
        if metadata_offset is not None:
            entries.append(
                FooterEntry(SEV_SNP_METADATA_GUID, metadata_offset.to_bytes(4, "little"))
            )
        if self.sev_es_reset_address is not None:
            entries.append(
                FooterEntry(
                    SEV_ES_RESET_BLOCK_GUID, self.sev_es_reset_address.to_bytes(4, "little")
                )
            )
        for guid, area in (
            (SEV_SECRET_BLOCK_GUID, self.secret_area),
            (SEV_HASH_TABLE_GUID, self.hashes_area),
        ):
            if area is not None:
                data = area.base.to_bytes(4, "little") + area.size.to_bytes(4, "little")
                entries.append(FooterEntry(guid, data))
        return OvmfFooterTable(tuple(entries))


RHEL9_2022 = OvmfLayout()
_S = SectionType
AMDSEV_2024 = OvmfLayout(
    secret_area=Area(0x810000, 0xC00),
    hashes_area=Area(0x810C00, 0x400),
    snp_sections=tuple(
        MetadataSection(gpa, size, kind)
        for gpa, size, kind in (
            (0x800000, 0x9000, _S.SNP_SEC_MEM),
            (0x80A000, 0x3000, _S.SNP_SEC_MEM),
            (0x80D000, 0x1000, _S.SNP_SECRETS),
            (0x80E000, 0x1000, _S.CPUID),
            (0x80F000, 0x1000, _S.SVSM_CAA),
            (0x810000, 0x1000, _S.SNP_KERNEL_HASHES),
            (0x811000, 0xF000, _S.SNP_SEC_MEM),
        )
    ),
)


def make_image(
    size: int = DEFAULT_SIZE, *, seed: bytes = b"", layout: OvmfLayout = RHEL9_2022
) -> bytes:
    """A ``size``-byte image: filler from ``seed``, footer table, reset-vector stub."""
    _check_size(size)
    metadata = SevMetadata(layout.snp_sections).to_bytes() if layout.snp_sections else b""
    if metadata:
        # the footer table's size does not depend on the offset's value: measure it first
        probe = layout.footer_table(0).to_bytes()
        offset = len(probe) + RESET_VECTOR_SIZE + len(metadata)
        table = layout.footer_table(offset).to_bytes()
    else:
        table = layout.footer_table().to_bytes()
    filler_len = size - len(metadata) - len(table) - RESET_VECTOR_SIZE
    filler = hashlib.shake_256(b"sevlaunch synthetic OVMF\x00" + seed).digest(filler_len)
    return filler + metadata + table + RESET_VECTOR_STUB


def flash_base(size: int) -> int:
    """The guest-physical address of the image's first byte when mapped to end at 4 GiB."""
    _check_size(size)
    return FOUR_GIB - size


def _check_size(size: int) -> None:
    if size < MIN_SIZE or size % PAGE or size > MAX_SIZE:
        raise UsageError(
            f"firmware image size {size} is not usable: it must be a multiple of {PAGE} "
            f"between {MIN_SIZE} and {MAX_SIZE} bytes (default {DEFAULT_SIZE})"
        )
