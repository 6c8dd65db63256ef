"""The SNP mismatch diagnosis names the one mistake behind a measurement: guest features,
vCPU count, vCPU type, kernel hashes off, command-line newline, another firmware; and says
so when none explains it."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from sevlaunch.owner.diagnosis import Mistake
from sevlaunch.owner.launch_digest import measure_direct_boot
from sevlaunch.owner.snp.diagnosis import SnpLaunch, claimed_digest, snp_diagnose
from sevlaunch.owner.vmsa import vcpu_type

CMDLINE = "console=ttyS0 loglevel=7"


@pytest.fixture
def launch(vectors: Path) -> SnpLaunch:
    folder = vectors / "snp" / "sev-snp-measure" / "fixtures"
    boot = measure_direct_boot(io.BytesIO(b""), io.BytesIO(b""), CMDLINE)
    return SnpLaunch(
        (
            ("OVMF.amdsev.fd", (folder / "ovmf_AmdSev_suffix.bin").read_bytes()),
            ("OVMF.fd", (folder / "ovmf_OvmfX64_suffix.bin").read_bytes()),
        ),
        vcpus=2,
        cpu=vcpu_type(name="EPYC-v4"),
        guest_features=0x1,
        boot=boot,
    )


def mistakes(launch: SnpLaunch, actual: SnpLaunch) -> list[list[Mistake]]:
    diagnosis = snp_diagnose(claimed_digest(actual), launch)
    assert diagnosis.explained
    return [[f.mistake for f in findings] for findings in diagnosis.explanations]


def test_as_given(launch: SnpLaunch) -> None:
    diagnosis = snp_diagnose(claimed_digest(launch), launch)
    assert diagnosis.explanations == ((),)
    assert "matches the inputs as given" in diagnosis.describe()


def test_single_mistakes(launch: SnpLaunch) -> None:
    assert mistakes(launch, dataclasses.replace(launch, guest_features=0x21)) == [
        [Mistake.GUEST_FEATURES]
    ]
    assert mistakes(launch, dataclasses.replace(launch, vcpus=4)) == [[Mistake.VCPU_COUNT]]
    milan = dataclasses.replace(launch, cpu=vcpu_type(name="EPYC-Milan"))
    assert mistakes(launch, milan) == [[Mistake.VCPU_TYPE]]
    assert mistakes(launch, dataclasses.replace(launch, boot=None)) == [[Mistake.KERNEL_HASHES_OFF]]
    assert launch.boot is not None
    newline = dataclasses.replace(launch.boot, cmdline=CMDLINE.encode() + b"\n")
    assert mistakes(launch, dataclasses.replace(launch, boot=newline)) == [
        [Mistake.CMDLINE_TRAILING_NEWLINE]
    ]
    other = dataclasses.replace(launch, firmwares=launch.firmwares[1:], boot=None)
    assert [Mistake.OTHER_FIRMWARE, Mistake.KERNEL_HASHES_OFF] in mistakes(launch, other)


def test_two_mistakes(launch: SnpLaunch) -> None:
    both = dataclasses.replace(launch, vcpus=1, guest_features=0x21)
    found = mistakes(launch, both)
    assert found == [[Mistake.VCPU_COUNT, Mistake.GUEST_FEATURES]]


def test_unexplained(launch: SnpLaunch) -> None:
    diagnosis = snp_diagnose(bytes(48), launch)
    assert not diagnosis.explained
    assert diagnosis.tried > 1000
    assert "Do not trust this guest" in diagnosis.describe()
    assert diagnosis.to_dict()["explained"] is False


@pytest.mark.parametrize(("tried", "words"), [(1, "(1 variant tried:"), (9, "(9 variants tried:")])
def test_an_unexplained_snp_mismatch_counts_its_variants_in_english(tried: int, words: str) -> None:
    from sevlaunch.owner.snp.diagnosis import SnpDiagnosis

    assert words in SnpDiagnosis((), tried).describe()
