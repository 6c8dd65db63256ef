"""The SNP launch digest reproduces sev-snp-measure's QEMU known answers (1 vCPU, EPYC-v4,
features 0x1 and 0x21, with and without kernel hashes, seeded from an OVMF hash), its VMSA
intermediates, and refuses what sev-snp-measure refuses."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import UnsuitableFirmwareError, UsageError
from sevlaunch.formats.snp import PageInfo, PageType
from sevlaunch.formats.vmsa import CpuSignature
from sevlaunch.owner.launch_digest import measure_direct_boot
from sevlaunch.owner.snp.launch_digest import extend, ovmf_hash, snp_launch_digest, vmsa_pages

EPYC_V4 = CpuSignature.from_int(0x800F12)


def facts(vectors: Path) -> dict[str, Any]:
    path = vectors / "snp" / "sev-snp-measure" / "expected_launch_digests.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def fixture(vectors: Path, name: str) -> bytes:
    return (vectors / "snp" / "sev-snp-measure" / "fixtures" / name).read_bytes()


def hashes_for(case: dict[str, Any]):  # type: ignore[no-untyped-def]
    if case.get("kernel") is None:
        return None
    initrd = io.BytesIO(b"") if case.get("initrd") is not None else None
    return measure_direct_boot(io.BytesIO(b""), initrd, case.get("cmdline") or None).hashes()


def test_ovmf_hash(vectors: Path) -> None:
    image = fixture(vectors, "ovmf_AmdSev_suffix.bin")
    assert ovmf_hash(image).hex() == facts(vectors)["ovmf_only_hash"]["ld"]


def test_known_answers(vectors: Path) -> None:
    cases = [c for c in facts(vectors)["cases"] if "ld" in c]
    assert len(cases) == 6
    for case in cases:
        digest = snp_launch_digest(
            fixture(vectors, case["ovmf"]),
            vcpus=case["vcpus"],
            cpu=EPYC_V4,
            guest_features=int(case["guest_features"], 16),
            hashes=hashes_for(case),
        )
        assert digest.hex() == case["ld"], case


def test_seeded_from_ovmf_hash(vectors: Path) -> None:
    for case in facts(vectors)["seeded_from_ovmf_hash"]:
        digest = snp_launch_digest(
            fixture(vectors, "ovmf_AmdSev_suffix.bin"),
            vcpus=case["vcpus"],
            cpu=EPYC_V4,
            guest_features=int(case["guest_features"], 16),
            hashes=hashes_for(case),
            seed=bytes.fromhex(case["seed_ld"]),
        )
        assert digest.hex() == case["ld"]


def test_kernel_hashes_need_the_section(vectors: Path) -> None:
    case = next(c for c in facts(vectors)["cases"] if "expect_error" in c)
    with pytest.raises(UnsuitableFirmwareError, match=case["expect_error"]):
        snp_launch_digest(
            fixture(vectors, case["ovmf"]), vcpus=1, cpu=EPYC_V4, hashes=hashes_for(case)
        )


def test_vmsa_intermediates(vectors: Path) -> None:
    derived = facts(vectors)["intermediates_derived"]
    for features in (0x1, 0x21):
        bsp, ap = vmsa_pages(2, EPYC_V4, features, 0x0080B004)
        assert hashlib.sha384(bsp).hexdigest() == derived[f"vmsa_sha384_bsp_features_{features:#x}"]
        assert hashlib.sha384(ap).hexdigest() == derived[f"vmsa_sha384_ap_features_{features:#x}"]


def test_more_vcpus_add_ap_vmsas(vectors: Path) -> None:
    image = fixture(vectors, "ovmf_AmdSev_suffix.bin")
    one = snp_launch_digest(image, vcpus=1, cpu=EPYC_V4)
    four = snp_launch_digest(image, vcpus=4, cpu=EPYC_V4)
    ap = hashlib.sha384(vmsa_pages(2, EPYC_V4, 1, 0x0080B004)[1]).digest()
    expected = one
    for _ in range(3):
        expected = extend(expected, PageType.VMSA, 0xFFFF_FFFF_F000, ap)
    assert four == expected


def test_extend_is_page_info() -> None:
    ld, contents = bytes(range(48)), bytes(range(48, 96))
    info = PageInfo(ld, contents, PageType.NORMAL, 0xFFFFF000)
    assert (
        extend(ld, PageType.NORMAL, 0xFFFFF000, contents)
        == hashlib.sha384(info.to_bytes()).digest()
    )


def test_refusals(vectors: Path) -> None:
    image = fixture(vectors, "ovmf_AmdSev_suffix.bin")
    with pytest.raises(UsageError, match="SNPActive"):
        snp_launch_digest(image, vcpus=1, cpu=EPYC_V4, guest_features=0x20)
    with pytest.raises(UsageError, match="at least one vCPU"):
        snp_launch_digest(image, vcpus=0, cpu=EPYC_V4)
    with pytest.raises(UsageError, match="4 KiB pages"):
        ovmf_hash(image[:100])
    with pytest.raises(UsageError, match="48 bytes"):
        snp_launch_digest(image, vcpus=1, cpu=EPYC_V4, seed=b"short")
