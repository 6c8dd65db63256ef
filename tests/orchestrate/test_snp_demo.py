"""The SNP demo's pieces: the owner's expected digest is ``sevlaunch owner snp digest``'s for
the demo's inputs (and the tampered firmware's differs), the domain is an SNP one the host
takes, and the outcome is good only with every expected result (each one missing fails it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.host.domxml import Domain
from sevlaunch.host.validate import validate_define
from sevlaunch.orchestrate import snp_demo
from sevlaunch.orchestrate.demo import CMDLINE, DISK_LABEL
from sevlaunch.orchestrate.snp_launch import SnpLaunchResult
from sevlaunch.protocol.snp import SnpStep


def test_the_expected_digest_is_the_owner_tools(tmp_path: Path) -> None:
    art = snp_demo.make_snp_artifacts(tmp_path)
    expected = snp_demo.expected_snp_digest(art)

    def owner_digest(firmware: Path) -> str:
        done = CliRunner().invoke(
            cli,
            ["owner", "snp", "digest", "--ovmf", str(firmware), "--vcpus", "1",
             "--vcpu-type", snp_demo.CPU_MODEL, "--kernel", str(art.kernel),
             "--initrd", str(art.initrd), "--append", CMDLINE, "--output-format", "hex"],
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        return done.output.strip()

    assert owner_digest(art.firmware) == expected.hex()
    assert owner_digest(art.tampered) != expected.hex()


def test_the_domain_is_an_snp_guest_the_host_defines(tmp_path: Path) -> None:
    art = snp_demo.make_snp_artifacts(tmp_path)
    domain = Domain.from_xml(snp_demo.snp_domain_xml("d", art, art.firmware))
    validate_define(domain)
    lsec = domain.launch_security
    assert lsec is not None
    assert (lsec.type, lsec.policy, lsec.kernel_hashes) == ("sev-snp", snp_demo.POLICY, True)


def test_the_outcome_needs_every_expected_result() -> None:
    booted = SnpLaunchResult("g", ok=True, console=f"disk label '{DISK_LABEL}'")
    tampered = SnpLaunchResult(
        "t", failed_step=SnpStep.REPORT_VERIFIED, reason="measurement-mismatch"
    )
    old = SnpLaunchResult("o", failed_step=SnpStep.REPORT_VERIFIED, reason="tcb-too-old")
    good = snp_demo.SnpDemoOutcome([booted], tampered, old)
    assert good.ok
    wrong = [
        dataclasses.replace(good, launches=[]),
        dataclasses.replace(good, launches=[dataclasses.replace(booted, console="")]),
        dataclasses.replace(good, tampered=None),
        dataclasses.replace(good, tampered=dataclasses.replace(tampered, reason="expired")),
        dataclasses.replace(good, old_tcb=dataclasses.replace(old, ok=True)),
    ]
    assert not any(o.ok for o in wrong)
