"""SEV-ES for the owner: sevctl's SEV-ES measurement from VMSAs we build, and the diagnosis of
the usual SEV-ES mistakes (legacy-vm-type, vCPU count, CPU model) against that measurement."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sevlaunch.errors import FormatError, UnsuitableFirmwareError, UsageError
from sevlaunch.formats.vmsa import CpuSignature, Vmsa
from sevlaunch.owner.diagnosis import Mistake, es_variants
from sevlaunch.owner.launch_digest import MeasuredFirmware, measure_firmware
from sevlaunch.owner.measurement import LaunchInfo, diagnose, launch_info, validate
from sevlaunch.owner.vmsa import EsVmsas, es_pages, legacy_from_option, vcpu_type
from sevlaunch.vmm.ovmf_image import OvmfLayout, make_image

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
ES_BLOB = "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"


def _info() -> LaunchInfo:
    return launch_info(ES_BLOB, api_major=1, api_minor=49, build_id=6, policy=0x05)


def _tik(vectors: Path) -> bytes:
    return (vectors / "sevctl/measurement/tik1.bin").read_bytes()


def _firmware(vectors: Path) -> MeasuredFirmware:
    return measure_firmware((vectors / OVMF).read_bytes(), name="OVMF.amdsev.fd")


def _es(name: str = "EPYC-Milan", vcpus: int = 4, legacy: bool = True) -> EsVmsas:
    return EsVmsas(vcpus, cpu=vcpu_type(name=name), legacy=legacy)


def test_sevctl_sev_es_measurement_from_built_vmsas(vectors: Path) -> None:
    firmware = _firmware(vectors)
    pages = es_pages(firmware, _es())
    assert [hashlib.sha256(p).digest() for p in pages] == [
        hashlib.sha256((vectors / f"sevctl/vmsa{i}.bin").read_bytes()).digest()
        for i in (0, 1, 1, 1)
    ]
    validate(_info(), firmware.digest(vmsas=pages), _tik(vectors))  # raises on a mismatch


@pytest.mark.parametrize(
    "es",
    [
        EsVmsas(4, cpu=vcpu_type(sig=0xA00F11)),
        EsVmsas(4, cpu=vcpu_type(family=25, model=1, stepping=1)),
        EsVmsas(4, cpu=vcpu_type(name="EPYC-Milan-v2"), legacy=legacy_from_option("auto")),
    ],
    ids=["signature", "family-model-stepping", "auto-is-legacy"],
)
def test_every_way_of_naming_the_vcpu_gives_the_known_answer(vectors: Path, es: EsVmsas) -> None:
    firmware = _firmware(vectors)
    validate(_info(), firmware.digest(vmsas=es_pages(firmware, es)), _tik(vectors))


def test_explicit_pages_are_measured_as_given(vectors: Path) -> None:
    bsp, ap = ((vectors / f"sevctl/vmsa{i}.bin").read_bytes() for i in (0, 1))
    es = EsVmsas(4, bsp=bsp, ap=ap)
    assert es_pages(_firmware(vectors), es) == (bsp, ap, ap, ap)
    patched = es.with_legacy(False).pages(None)
    assert Vmsa.from_bytes(patched[1]).differences(Vmsa.from_bytes(ap)) == ["mxcsr", "x87_fcw"]


def test_vcpu_type_takes_exactly_one_form() -> None:
    with pytest.raises(UsageError, match="one way"):
        vcpu_type()
    with pytest.raises(UsageError, match="one way"):
        vcpu_type(name="EPYC", sig=0x800F12)
    with pytest.raises(UsageError, match="go together"):
        vcpu_type(family=25, model=1)
    assert vcpu_type(sig=0x830F10).signature == CpuSignature(23, 49, 0)


def test_es_inputs_are_checked() -> None:
    page = bytes(4096)
    with pytest.raises(UsageError, match="--vmsa-cpu1"):
        EsVmsas(2, bsp=page)
    with pytest.raises(FormatError, match="4096"):
        EsVmsas(1, bsp=page[:100])
    with pytest.raises(UsageError, match="either"):
        EsVmsas(1)
    with pytest.raises(UsageError, match="legacy-vm-type"):
        legacy_from_option("maybe")
    assert (legacy_from_option("on"), legacy_from_option("off")) == (True, False)


@pytest.mark.parametrize("address", [None, 0])
def test_a_firmware_without_reset_address_cannot_run_sev_es(address: int | None) -> None:
    image = make_image(64 * 1024, layout=OvmfLayout(sev_es_reset_address=address))
    with pytest.raises(UnsuitableFirmwareError, match="SEV-ES reset address"):
        es_pages(measure_firmware(image, name="no-es.fd"), _es(vcpus=1))


def test_es_variants_start_with_the_claim_and_cover_each_mistake() -> None:
    variants = list(es_variants(_es(vcpus=2)))
    assert variants[0] == ((), _es(vcpus=2))
    singles = {f[0].mistake for f, _ in variants if len(f) == 1}
    assert singles == {Mistake.LEGACY_VM_TYPE, Mistake.VCPU_COUNT, Mistake.VCPU_TYPE}
    counts = {v.vcpus for f, v in variants if [x.mistake for x in f] == [Mistake.VCPU_COUNT]}
    assert counts == {1, 3, 4, 5, 6, 7, 8}
    assert [len(f) for f, _ in variants] == sorted(len(f) for f, _ in variants)


@pytest.mark.parametrize(
    ("claimed", "mistakes"),
    [
        (_es(legacy=False), {Mistake.LEGACY_VM_TYPE}),
        (_es(vcpus=2), {Mistake.VCPU_COUNT}),
        (_es(name="EPYC-Rome"), {Mistake.VCPU_TYPE}),
        (_es(name="qemu64", vcpus=8, legacy=False), set(Mistake.__members__.values())),
    ],
    ids=["legacy-vm-type", "vcpu-count", "vcpu-type", "all-three"],
)
def test_diagnosis_names_the_es_mistake(
    vectors: Path, claimed: EsVmsas, mistakes: set[Mistake]
) -> None:
    firmware = _firmware(vectors)
    diagnosis = diagnose(_info(), tik=_tik(vectors), firmwares=[firmware], es=claimed)
    assert diagnosis.explained
    found = {f.mistake for f in diagnosis.explanations[0]}
    expected = mistakes & {Mistake.LEGACY_VM_TYPE, Mistake.VCPU_COUNT, Mistake.VCPU_TYPE}
    assert found == expected
    text = diagnosis.describe()
    if Mistake.VCPU_TYPE in found:
        assert "EPYC-Milan (family 25 model 1 stepping 1)" in text
    if Mistake.VCPU_COUNT in found:
        assert "the guest had 4 vCPUs" in text


def test_unexplained_es_diagnosis_says_what_was_tried(vectors: Path) -> None:
    diagnosis = diagnose(_info(), tik=bytes(16), firmwares=[_firmware(vectors)], es=_es())
    assert not diagnosis.explained
    assert "legacy-vm-type on/off, vCPU counts and QEMU CPU models" in diagnosis.describe()
    assert diagnosis.to_dict()["es"] is True
