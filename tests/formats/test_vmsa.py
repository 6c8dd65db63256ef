"""The VMSA page: sevctl's VMSAs rebuilt byte for byte, its field dump, exact round trips."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import FormatError, UsageError
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.formats.vmsa import (
    BSP_EIP,
    GENERATION_MODELS,
    QEMU_CPU_MODELS,
    VMSA_SIZE,
    CpuSignature,
    Segment,
    Vmsa,
    modelled_ranges,
    qemu_cpu_option,
    qemu_cpu_signature,
    reset_vmsa,
    reset_vmsas,
)

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
MILAN = CpuSignature(25, 1, 1)


def _page(vectors: Path, index: int) -> bytes:
    return (vectors / f"sevctl/vmsa{index}.bin").read_bytes()


def test_legacy_vmsas_for_family_25_model_1_stepping_1_are_sevctls(vectors: Path) -> None:
    ap_reset = OvmfFooterTable.from_image((vectors / OVMF).read_bytes()).sev_es_reset_address
    assert ap_reset == 0x0080B004
    pages = reset_vmsas(4, MILAN, ap_reset, legacy=True)
    assert pages == (_page(vectors, 0), _page(vectors, 1), _page(vectors, 1), _page(vectors, 1))


@pytest.mark.parametrize("index", [0, 1])
def test_parsed_fields_match_sevctls_dump(vectors: Path, index: int) -> None:
    """Every field named in ``vmsaN-show.txt`` that we model has the dumped value."""
    shown: dict[str, Any] = json.loads((vectors / f"sevctl/vmsa{index}-show.txt").read_text())
    vmsa = Vmsa.from_bytes(_page(vectors, index))
    names = {f.name for f in dataclasses.fields(Vmsa)}
    compared = 0
    for name, value in shown.items():
        if name not in names:
            continue
        ours = getattr(vmsa, name)
        expected = Segment(**value) if isinstance(value, dict) else value
        assert ours == expected, name
        compared += 1
    assert compared >= 50
    assert vmsa.rdx == 10489617
    assert vmsa.cs.base == (0xFFFF0000 if index == 0 else 0x800000)
    assert not any(vmsa.reserved)


@pytest.mark.parametrize("index", [0, 1])
def test_vector_pages_round_trip(vectors: Path, index: int) -> None:
    page = _page(vectors, index)
    assert Vmsa.from_bytes(page).to_bytes() == page


@given(st.binary(min_size=VMSA_SIZE, max_size=VMSA_SIZE))
def test_any_page_round_trips_exactly(page: bytes) -> None:
    vmsa = Vmsa.from_bytes(page)
    assert vmsa.to_bytes() == page
    assert Vmsa.from_bytes(vmsa.to_bytes()) == vmsa


@given(st.binary(max_size=VMSA_SIZE + 16).filter(lambda b: len(b) != VMSA_SIZE))
def test_a_page_of_another_size_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError, match="expected 4096 bytes"):
        Vmsa.from_bytes(data)


def test_layout_covers_each_field_once_inside_the_page() -> None:
    ranges = sorted(modelled_ranges(), key=lambda r: r[1])
    for (name, offset, size), (after, next_offset, _) in itertools.pairwise(ranges):
        assert offset + size <= next_offset, f"{name} overlaps {after}"
    assert ranges[-1][1] + ranges[-1][2] <= VMSA_SIZE
    names = [name for name, _, _ in ranges]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(Vmsa) if f.name != "reserved")


@pytest.mark.parametrize(
    ("field", "offset", "size"),
    [
        ("cs", 0x10, 16), ("ldtr", 0x70, 16), ("tr", 0x90, 16), ("efer", 0xD0, 8),
        ("cr4", 0x148, 8), ("cr0", 0x158, 8), ("dr7", 0x160, 8), ("dr6", 0x168, 8),
        ("rflags", 0x170, 8), ("rip", 0x178, 8), ("g_pat", 0x268, 8), ("rdx", 0x310, 8),
        ("sev_features", 0x3B0, 8), ("xcr0", 0x3E8, 8), ("mxcsr", 0x408, 4),
        ("x87_fcw", 0x410, 2),
    ],
)  # fmt: skip
def test_offsets_of_the_firmware_api_doc(field: str, offset: int, size: int) -> None:
    assert (field, offset, size) in set(modelled_ranges())


def test_a_field_lands_at_its_offset_little_endian() -> None:
    page = Vmsa(sev_features=0x0102, mxcsr=0x1F80, tr=Segment(1, 0x8B, 0xFFFF, 2)).to_bytes()
    assert page[0x3B0:0x3B8] == bytes([2, 1, 0, 0, 0, 0, 0, 0])
    assert page[0x408:0x40C] == bytes([0x80, 0x1F, 0, 0])
    assert page[0x90:0xA0] == bytes.fromhex("01008b00ffff00000200000000000000")


def test_modelled_bytes_in_reserved_do_not_count() -> None:
    noisy = bytearray(VMSA_SIZE)
    noisy[0x310] = 0xAA  # rdx: the field, not the reserved copy, decides
    noisy[0x800] = 0x55  # unmodelled: kept
    vmsa = Vmsa(reserved=bytes(noisy))
    assert vmsa.to_bytes()[0x310] == 0
    assert vmsa.to_bytes()[0x800] == 0x55
    assert vmsa == Vmsa(reserved=bytes(noisy[:0x310]) + b"\0" + bytes(noisy[0x311:]))


def test_value_too_wide_for_its_field_is_refused() -> None:
    with pytest.raises(FormatError, match="field mxcsr"):
        Vmsa(mxcsr=1 << 32).to_bytes()
    with pytest.raises(FormatError, match=r"field cs\.selector"):
        Vmsa(cs=Segment(selector=1 << 16)).to_bytes()


def test_init2_adds_only_the_fpu_reset_state() -> None:
    legacy = reset_vmsa(BSP_EIP, MILAN, legacy=True)
    init2 = reset_vmsa(BSP_EIP, MILAN, legacy=False)
    assert legacy.differences(init2) == ["mxcsr", "x87_fcw"]
    assert (init2.mxcsr, init2.x87_fcw) == (0x1F80, 0x37F)


def test_ap_reset_address_splits_into_cs_base_and_ip() -> None:
    ap = reset_vmsa(0x0080B004, MILAN, legacy=True)
    assert (ap.cs.selector, ap.cs.base, ap.rip) == (0xF000, 0x800000, 0xB004)


def test_more_than_one_vcpu_needs_the_ap_reset_address() -> None:
    assert len(reset_vmsas(1, MILAN, None, legacy=True)) == 1
    with pytest.raises(FormatError, match="SEV-ES reset address"):
        reset_vmsas(2, MILAN, None, legacy=True)
    with pytest.raises(UsageError, match="at least one vCPU"):
        reset_vmsas(0, MILAN, 0x80B004, legacy=True)


@pytest.mark.parametrize(
    ("name", "signature"),
    [
        ("EPYC", 0x00800F12), ("EPYC-v4", 0x00800F12), ("EPYC-IBPB", 0x00800F12),
        ("EPYC-Rome", 0x00830F10), ("EPYC-Rome-v3", 0x00830F10),
        ("EPYC-Milan", 0x00A00F11), ("EPYC-Milan-v2", 0x00A00F11),
        ("EPYC-Genoa", 0x00A10F10), ("EPYC-Turin", 0x00B00F00), ("qemu64", 0x00060FB1),
    ],
)  # fmt: skip
def test_qemu_models_and_their_cpuid_signatures(name: str, signature: int) -> None:
    assert qemu_cpu_signature(name).to_int() == signature


def test_unknown_model_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UsageError, match="EPYC-Milan"):
        qemu_cpu_signature("Skylake-Server")


@given(
    st.integers(0, 0xF + 0xFF).filter(lambda f: f >= 0xF),
    st.integers(0, 0xFF),
    st.integers(0, 0xF),
)
def test_signature_round_trips(family: int, model: int, stepping: int) -> None:
    cpu = CpuSignature(family, model, stepping)
    assert CpuSignature.from_int(cpu.to_int()) == cpu


@pytest.mark.parametrize("value", [-1, 0x1000, 0x1_0000_0000, 0xF000_0F11])
def test_non_signatures_are_refused(value: int) -> None:
    with pytest.raises(UsageError, match="CPUID"):
        CpuSignature.from_int(value)


def test_cpu_option_properties_and_host() -> None:
    assert qemu_cpu_option("EPYC-Milan,+avx2,family=26,model=0x11") == CpuSignature(26, 17, 1)
    assert qemu_cpu_option("EPYC-Rome,-svm") == QEMU_CPU_MODELS["EPYC-Rome"]
    assert qemu_cpu_option("host", GENERATION_MODELS["genoa"]) == CpuSignature(25, 17, 0)
    with pytest.raises(UsageError, match="host CPU"):
        qemu_cpu_option("host")
    with pytest.raises(UsageError, match="not a number"):
        qemu_cpu_option("EPYC,stepping=x")
