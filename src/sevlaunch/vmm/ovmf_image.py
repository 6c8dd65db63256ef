"""Synthetic OVMF-like firmware images, so every SEV feature can be tried without edk2.

An image is deterministic filler (SHAKE-256 of a seed) ending in what QEMU reads from a real
AmdSev OVMF: the GUIDed footer table (SEV-ES reset block, SEV secret area, SEV hashes area)
just below the last 32 bytes, which hold a reset-vector stub as in a real flash image mapped
to end at 4 GiB. The area addresses are guest-physical and sit in OVMF's MEMFD (RAM at
0x800000), not in the flash: the default layout is that of the RHEL 9 AmdSev build whose
tail is in the sevctl vectors (reset block 0x80B004, secret 0x80C000/0xC00, hashes
0x80CC00/0x400). QEMU finds the table in the last 4 KiB, so the image must be at least that
big; 64 KiB is asked for to keep the filler meaningful.
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
    Area,
    FooterEntry,
    OvmfFooterTable,
)

PAGE = 4096
MIN_SIZE = 64 * 1024
DEFAULT_SIZE = 4 << 20
FOUR_GIB = 1 << 32
MAX_SIZE = 64 << 20  # QEMU maps -bios below 4 GiB; real OVMF images are 2-4 MiB

# The last 32 bytes: 12 x nop, the "VTF\0" volume-top-file tag, then at 0xFFFFFFF0 (the x86
# reset vector) cli; hlt; jmp back to the hlt, padded with nop.
RESET_VECTOR_STUB = b"\x90" * 12 + b"VTF\x00" + b"\xfa\xf4\xeb\xfd" + b"\x90" * 12
assert len(RESET_VECTOR_STUB) == RESET_VECTOR_SIZE


@dataclass(frozen=True)
class OvmfLayout:
    """Where the footer table points; any field may be None to leave that entry out."""

    sev_es_reset_address: int | None = 0x80B004
    secret_area: Area | None = Area(0x80C000, 0xC00)  # noqa: RUF009 - frozen value
    hashes_area: Area | None = Area(0x80CC00, 0x400)  # noqa: RUF009 - frozen value

    def footer_table(self) -> OvmfFooterTable:
        """Entries nearest the footer first, in the order the AmdSev build has them."""
        entries = []
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


def make_image(
    size: int = DEFAULT_SIZE, *, seed: bytes = b"", layout: OvmfLayout = RHEL9_2022
) -> bytes:
    """A ``size``-byte image: filler from ``seed``, footer table, reset-vector stub."""
    _check_size(size)
    table = layout.footer_table().to_bytes()
    filler_len = size - len(table) - RESET_VECTOR_SIZE
    filler = hashlib.shake_256(b"sevlaunch synthetic OVMF\x00" + seed).digest(filler_len)
    return filler + table + RESET_VECTOR_STUB


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
