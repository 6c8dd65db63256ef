"""Synthetic OVMF images: the footer table reads back, and matches the real AmdSev layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.errors import UsageError
from sevlaunch.formats import Area, OvmfFooterTable
from sevlaunch.formats.ovmf import RESET_VECTOR_SIZE
from sevlaunch.vmm.ovmf_image import (
    DEFAULT_SIZE,
    RESET_VECTOR_STUB,
    RHEL9_2022,
    OvmfLayout,
    flash_base,
    make_image,
)
from tests.conftest import read_vector

REAL_OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"


def test_default_image_reads_back() -> None:
    image = make_image()
    assert len(image) == DEFAULT_SIZE
    table = OvmfFooterTable.from_image(image)
    assert table.sev_es_reset_address == 0x80B004
    assert table.secret_area == Area(0x80C000, 0xC00)
    assert table.hashes_area == Area(0x80CC00, 0x400)
    assert len(RESET_VECTOR_STUB) == RESET_VECTOR_SIZE == 32  # the stub ends at 4 GiB
    assert image[-32:] == RESET_VECTOR_STUB


def test_same_entries_as_the_real_amdsev_build(vectors: Path) -> None:
    real = OvmfFooterTable.from_image(read_vector(vectors, REAL_OVMF))
    ours = OvmfFooterTable.from_image(make_image(64 * 1024))
    # the real build also carries a TDX metadata entry, which SEV does not use
    assert ours.entries == real.entries[:3]


def test_filler_is_deterministic_per_seed() -> None:
    assert make_image(65536, seed=b"a") == make_image(65536, seed=b"a")
    assert make_image(65536, seed=b"a") != make_image(65536, seed=b"b")


def test_custom_layout_and_omitted_entries() -> None:
    layout = OvmfLayout(
        sev_es_reset_address=None, secret_area=Area(0x810000, 0xC00), hashes_area=None
    )
    table = OvmfFooterTable.from_image(make_image(65536, layout=layout))
    assert (table.sev_es_reset_address, table.secret_area, table.hashes_area) == (
        None,
        Area(0x810000, 0xC00),
        None,
    )
    assert OvmfLayout() == RHEL9_2022


@pytest.mark.parametrize("size", [0, 4096, 65536 + 1, 65536 - 4096, 128 << 20])
def test_unusable_sizes_are_refused(size: int) -> None:
    with pytest.raises(UsageError, match="multiple of 4096"):
        make_image(size)


def test_flash_ends_at_four_gib() -> None:
    assert flash_base(DEFAULT_SIZE) == 0xFFC00000
