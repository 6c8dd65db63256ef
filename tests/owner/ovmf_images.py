"""Synthetic OVMF images for the guest-owner tests: any body, a real footer table at the end."""

from __future__ import annotations

from sevlaunch.formats import FooterEntry, OvmfFooterTable
from sevlaunch.formats.ovmf import (
    RESET_VECTOR_SIZE,
    SEV_ES_RESET_BLOCK_GUID,
    SEV_HASH_TABLE_GUID,
    SEV_SECRET_BLOCK_GUID,
)

#: Where current AmdSev builds put the two areas (firmware-API doc §8).
SECRET_AREA = (0x810000, 0xC00)
HASHES_AREA = (0x810C00, 0x400)


def area_data(base: int, size: int) -> bytes:
    return base.to_bytes(4, "little") + size.to_bytes(4, "little")


def footer(
    hashes: tuple[int, int] | None = HASHES_AREA, secret: tuple[int, int] | None = SECRET_AREA
) -> bytes:
    """The footer table as it ends an image (entries, length, GUID, then the reset vector)."""
    entries = [FooterEntry(SEV_ES_RESET_BLOCK_GUID, (0x80B004).to_bytes(4, "little"))]
    if secret is not None:
        entries.append(FooterEntry(SEV_SECRET_BLOCK_GUID, area_data(*secret)))
    if hashes is not None:
        entries.append(FooterEntry(SEV_HASH_TABLE_GUID, area_data(*hashes)))
    return OvmfFooterTable(tuple(entries)).to_bytes() + bytes(RESET_VECTOR_SIZE)


def image(
    body: bytes = b"\x90" * 8192,
    *,
    hashes: tuple[int, int] | None = HASHES_AREA,
    secret: tuple[int, int] | None = SECRET_AREA,
) -> bytes:
    """An OVMF-like image: ``body`` then the footer table (AmdSev layout by default)."""
    return body + footer(hashes, secret)


def debian_image(body: bytes = b"\x90" * 8192) -> bytes:
    """Like Debian's OvmfPkgX64 build: both areas present, with base 0 and size 0."""
    return image(body, hashes=(0, 0), secret=(0, 0))
