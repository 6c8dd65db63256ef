"""Attestation report: real reports round-trip byte for byte, every generated report
round-trips, unknown versions are parsed by the common prefix and flagged, and mutated bytes
give either a report that re-encodes to them or a FormatError, nothing else."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import AttestationReport, Generation, TcbLayout
from tests.snp_strategies import reports
from tests.snp_vectors import PARSE_ONLY, SIGNED
from tests.strategies import mutated, parse_or_error


def all_reports(vectors: Path) -> list[bytes]:
    return [v.report_bytes(vectors) for v in SIGNED] + [
        (vectors / "snp" / p).read_bytes() for p in PARSE_ONLY
    ]


def test_vectors_round_trip(vectors: Path) -> None:
    for data in all_reports(vectors):
        report = AttestationReport.from_bytes(data)
        assert report.to_bytes() == data
        assert report.known_version


def test_vector_fields(vectors: Path) -> None:
    go = AttestationReport.from_bytes(SIGNED[1].report_bytes(vectors))
    assert go.version == 2
    assert go.policy == 0xB0000
    assert go.report_data[:5] == bytes.fromhex("0102030405")
    assert go.tcb("reported_tcb").components() == {
        "bootloader": 2,
        "tee": 0,
        "snp": 5,
        "microcode": 0x44,
    }
    assert go.generation is None  # v2 with a 64-byte chip id: Milan or Genoa
    milan = AttestationReport.from_bytes(SIGNED[3].report_bytes(vectors))
    assert (milan.cpuid_fam_id, milan.cpuid_mod_id, milan.cpuid_step) == (0x19, 1, 1)
    assert milan.generation is Generation.MILAN
    assert milan.tcb("reported_tcb").microcode == 0xDB
    genoa = AttestationReport.from_bytes(SIGNED[4].report_bytes(vectors))
    assert genoa.generation is Generation.GENOA
    virtee = AttestationReport.from_bytes(SIGNED[0].report_bytes(vectors))
    assert virtee.measurement.hex().startswith("7a1e5c26")
    assert virtee.measurement.hex().endswith("841f")
    assert virtee.report_id_ma == b"\xff" * 32


@given(reports())
@settings(max_examples=200, deadline=None)
def test_round_trip(report: AttestationReport) -> None:
    data = report.to_bytes()
    assert len(data) == 0x4A0
    assert AttestationReport.from_bytes(data) == report
    assert report.signed_bytes() == data[:0x2A0]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutations_only_format_errors(vectors: Path, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(all_reports(vectors)))
    raw = data.draw(mutated(base))
    parsed = parse_or_error(lambda: AttestationReport.from_bytes(raw))
    if isinstance(parsed, FormatError):
        assert parsed.structure == "SNP attestation report"
    else:
        assert parsed.to_bytes() == raw


def test_unknown_version_is_flagged(vectors: Path) -> None:
    raw = bytearray(SIGNED[3].report_bytes(vectors))
    raw[0:4] = (6).to_bytes(4, "little")
    raw[0x210] = 0xAA  # reserved in v5, unknown in v6: kept, not refused
    report = AttestationReport.from_bytes(bytes(raw))
    assert not report.known_version
    assert report.extension[0x210 - 0x208] == 0xAA
    assert report.to_bytes() == bytes(raw)
    assert report.cpuid_fam_id == 0x19


@pytest.mark.parametrize(
    ("version", "offset", "field"),
    [
        (2, 0x188, "reserved_188"),
        (3, 0x18B, "reserved_18b"),
        (3, 0x4C, "reserved_4c"),
        (3, 0x1EB, "reserved_1eb"),
        (3, 0x1EF, "reserved_1ef"),
        (3, 0x1F8, "reserved_tail"),
        (4, 0x208, "reserved_tail"),
        (5, 0x208, "reserved_tail"),
        (5, 0x29F, "reserved_tail"),
    ],
)
def test_reserved_bytes_are_refused(vectors: Path, version: int, offset: int, field: str) -> None:
    raw = bytearray(SIGNED[3].report_bytes(vectors))
    raw[0:4] = version.to_bytes(4, "little")
    if version == 2:
        raw[0x188:0x18B] = bytes(3)
    raw[offset] = 1
    with pytest.raises(FormatError) as info:
        AttestationReport.from_bytes(bytes(raw))
    assert info.value.field == field
    assert info.value.offset == offset


def test_v5_fields_and_v4_as_v3(vectors: Path) -> None:
    base = AttestationReport.from_bytes(SIGNED[3].report_bytes(vectors))
    v5 = dataclasses.replace(base, version=5, launch_mit_vector=3, current_mit_vector=7)
    assert AttestationReport.from_bytes(v5.to_bytes()).current_mit_vector == 7
    v4 = dataclasses.replace(base, version=4, current_mit_vector=1)
    assert AttestationReport.from_bytes(v4.to_bytes()) == v4
    assert v4.known_version
    with pytest.raises(FormatError, match="from version 4"):
        dataclasses.replace(base, launch_mit_vector=1)
    with pytest.raises(FormatError, match="from version 3"):
        dataclasses.replace(base, version=2)


@pytest.mark.parametrize("size", [0, 1183, 1185])
def test_wrong_length(size: int) -> None:
    with pytest.raises(FormatError, match="expected 1184 bytes"):
        AttestationReport.from_bytes(bytes(size))


def test_version_below_2() -> None:
    with pytest.raises(FormatError) as info:
        AttestationReport.from_bytes(bytes(0x4A0))
    assert info.value.field == "version"


def test_tcb_layout_follows_generation(vectors: Path) -> None:
    report = AttestationReport.from_bytes(SIGNED[3].report_bytes(vectors))
    turin = dataclasses.replace(report, cpuid_fam_id=0x1A, cpuid_mod_id=0x02)
    assert turin.generation is Generation.TURIN
    assert turin.tcb("reported_tcb").layout is TcbLayout.TURIN
    with pytest.raises(ValueError, match="not a TCB field"):
        report.tcb("policy")


def test_as_dict_is_json_ready(vectors: Path) -> None:
    report = AttestationReport.from_bytes(SIGNED[0].report_bytes(vectors))
    out = report.as_dict()
    assert out["measurement"] == report.measurement.hex()
    assert out["version"] == 2
