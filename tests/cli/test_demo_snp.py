"""``sevlaunch demo --snp`` end to end: exit 0, the SNP guest's console shows its attestation
and unlocked disk, the tampered firmware and the newer-TCB workload are refused with the
broker's reasons, nothing is left running; --snp with --es is a usage error."""

from __future__ import annotations

from sevlaunch.orchestrate.demo import DISK_LABEL
from tests.cli.test_demo import assert_cleaned_up, demo


def test_demo_snp_runs_and_cleans_up() -> None:
    done = demo("--snp")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "snp-1 serial console" in out
    assert "sevlaunch-attest: report from the AMD-SP (MSG_REPORT_RSP), 1184 bytes" in out
    assert out.count(f"disk label '{DISK_LABEL}'") == 1
    assert "refused at SNP step 10: the broker refused: measurement-mismatch" in out
    assert "refused at SNP step 10: the broker refused: tcb-too-old" in out
    assert "1/1 SNP guests attested and unlocked their disk" in out
    assert "every expected outcome happened" in out
    assert_cleaned_up(out)


def test_demo_snp_and_es_are_exclusive() -> None:
    done = demo("--snp", "--es")
    assert done.returncode == 2
    assert "--snp and --es are two kinds of guest" in done.stderr
