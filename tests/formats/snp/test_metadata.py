"""OVMF SEV metadata: the AmdSev fixture lists the sections sev-snp-measure finds; the plain
OvmfX64 build has no kernel-hashes section; generated tables round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import SectionType, SevMetadata
from tests.snp_strategies import metadata
from tests.strategies import parse_or_error


def fixture(vectors: Path, name: str) -> bytes:
    return (vectors / "snp" / "sev-snp-measure" / "fixtures" / name).read_bytes()


def test_amdsev_sections(vectors: Path) -> None:
    found = SevMetadata.from_image(fixture(vectors, "ovmf_AmdSev_suffix.bin"))
    assert found is not None
    assert [(s.gpa, s.size, s.section_type) for s in found.sections] == [
        (0x800000, 0x9000, 1),
        (0x80A000, 0x3000, 1),
        (0x80D000, 0x1000, 2),
        (0x80E000, 0x1000, 3),
        (0x80F000, 0x1000, 4),
        (0x810000, 0x1000, 0x10),
        (0x811000, 0xF000, 1),
    ]
    assert found.find(SectionType.SNP_KERNEL_HASHES) is not None


def test_ovmfx64_lacks_kernel_hashes(vectors: Path) -> None:
    found = SevMetadata.from_image(fixture(vectors, "ovmf_OvmfX64_suffix.bin"))
    assert found is not None
    assert found.find(SectionType.SNP_KERNEL_HASHES) is None


@given(metadata)
def test_round_trip(table: SevMetadata) -> None:
    assert SevMetadata.from_bytes(table.to_bytes()) == table
    assert SevMetadata.from_bytes(table.to_bytes() + b"rest of image") == table


@given(metadata)
def test_truncations(table: SevMetadata) -> None:
    raw = table.to_bytes()
    for cut in range(0, len(raw), 7):
        with pytest.raises(FormatError):
            SevMetadata.from_bytes(raw[:cut])


def test_refusals() -> None:
    with pytest.raises(FormatError, match="signature"):
        SevMetadata.from_bytes(b"XSEV" + bytes(12))
    with pytest.raises(FormatError, match="version"):
        SevMetadata.from_bytes(
            b"ASEV" + (16).to_bytes(4, "little") + (2).to_bytes(4, "little") + bytes(4)
        )


@given(st.binary(max_size=64))
def test_fuzz_only_format_errors(raw: bytes) -> None:
    parsed = parse_or_error(lambda: SevMetadata.from_bytes(b"ASEV" + raw))
    assert isinstance(parsed, (FormatError, SevMetadata))
