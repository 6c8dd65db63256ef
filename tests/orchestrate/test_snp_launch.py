"""SEV-SNP launches through the VM tool on one emulated Milan host and one broker: the guest
attests after boot and unlocks its disk while an SEV guest launched before it through the
same broker runs on the same platform; the report's launch digest is what ``sevlaunch owner snp digest``
prints for the same inputs; a tampered firmware and a newer-TCB workload are refused at step
10 with the broker's reason and the domain destroyed; ``sevlaunch launch`` takes an SNP domain
with --broker/--workload and refuses --owner-dir for it."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.broker.client import BrokerClient
from sevlaunch.cli import cli
from sevlaunch.errors import HostError
from sevlaunch.host.client import HostClient
from sevlaunch.host.domxml import Domain, FwCfgEntry
from sevlaunch.orchestrate import demo, snp_demo
from sevlaunch.orchestrate.services import Stack
from sevlaunch.orchestrate.snp_launch import snp_domain_xml
from sevlaunch.protocol.snp import FW_CFG_NAME, GuestAttestationConfig, SnpStep
from tests.orchestrate.stack import reap, unique

CONFIG = GuestAttestationConfig("unix:/run/broker.sock", "w")


@pytest.fixture(scope="module")
def snp_stack() -> Iterator[tuple[Stack, demo.Artifacts, demo.Artifacts]]:
    root = Path(tempfile.mkdtemp(prefix="sevlaunch-snp-"))
    stack = Stack(root, profile="milan", snp=True)
    try:
        stack.start()
        snp_art = snp_demo.make_snp_artifacts(root / "snp")
        snp_demo.register_snp_workloads(stack, snp_art)
        sev_art = demo.make_artifacts(root / "sev")
        demo.register_workload(stack, sev_art)
        yield stack, snp_art, sev_art
    finally:
        with contextlib.suppress(Exception):
            demo.destroy_all(stack)
        stack.stop()
        reap(str(root))
        shutil.rmtree(root, ignore_errors=True)


def test_the_domain_carries_the_attestation_config_as_fw_cfg() -> None:
    art = demo.Artifacts(*(Path(f"/img/{n}") for n in "ftkidp"))
    xml = snp_demo.snp_domain_xml("a", art, art.firmware)
    # a domain may come with an old entry: it is replaced, the others are kept
    old = (FwCfgEntry("opt/x", "keep"), FwCfgEntry(FW_CFG_NAME, "old"))
    with_old = dataclasses.replace(Domain.from_xml(xml), fw_cfg=old).to_xml()
    domain = Domain.from_xml(snp_domain_xml(with_old, "b", CONFIG))
    assert domain.name == "b"
    assert domain.fw_cfg == (FwCfgEntry("opt/x", "keep"), FwCfgEntry(FW_CFG_NAME, CONFIG.to_json()))
    with pytest.raises(HostError, match="needs <launchSecurity type='sev-snp'>"):
        snp_domain_xml(demo.domain_xml("s", art, art.firmware), "s", CONFIG)


def test_snp_and_sev_guests_side_by_side_through_one_broker(
    snp_stack: tuple[Stack, demo.Artifacts, demo.Artifacts],
) -> None:
    stack, snp_art, sev_art = snp_stack
    sev_name, snp_name = unique("sev"), unique("snp")
    # the SEV guest first: it leaves the platform's SEV side WORKING, where SNP_INIT cannot
    # run, so the stack must have brought SNP up before any guest (as Linux does)
    (sev_result,) = demo.run_launches(stack, sev_art, [sev_name], sev_art.firmware, lambda *_: None)
    snp_result = snp_demo.run_snp_launch(stack, snp_art, snp_name, snp_art.firmware)
    with HostClient(stack.host_uri) as host:
        states = {n: host.domain(n).state for n in (sev_name, snp_name)}
    assert states == {sev_name: "running", snp_name: "running"}
    assert sev_result.ok, sev_result.message
    assert snp_result.ok, snp_result.message + snp_result.console
    for console in (sev_result.console, snp_result.console):
        assert f"disk label '{demo.DISK_LABEL}'" in console
    assert [s.status for s in snp_result.steps] == ["ok"] * len(SnpStep)
    with BrokerClient(stack.broker_url, stack.owner_token.read_bytes().strip()) as broker:
        entries = [e for e in broker.audit() if e.action == "snp.attest"]
    released = [
        e.detail or {}
        for e in entries
        if (e.detail or {}).get("attestation") == snp_result.attestation
    ]
    (detail,) = released
    digest = CliRunner().invoke(
        cli,
        ["owner", "snp", "digest", "--ovmf", str(snp_art.firmware), "--vcpus", "1",
         "--vcpu-type", "EPYC-Milan", "--kernel", str(snp_art.kernel), "--initrd",
         str(snp_art.initrd), "--append", demo.CMDLINE, "--output-format", "hex"],
    )  # fmt: skip
    assert digest.exit_code == 0, digest.output
    assert detail["measurement"] == digest.output.strip()


@pytest.mark.parametrize(
    ("which", "workload", "reason"),
    [
        ("tampered", snp_demo.WORKLOAD, "measurement-mismatch"),
        ("firmware", snp_demo.NEWER_TCB_WORKLOAD, "tcb-too-old"),
    ],
)
def test_refused_guests_get_nothing_and_are_destroyed(
    snp_stack: tuple[Stack, demo.Artifacts, demo.Artifacts],
    which: str,
    workload: str,
    reason: str,
) -> None:
    stack, art, _ = snp_stack
    name = unique("refused")
    result = snp_demo.run_snp_launch(stack, art, name, getattr(art, which), workload)
    assert not result.ok
    assert (result.failed_step, result.reason) == (SnpStep.REPORT_VERIFIED, reason)
    assert "secrets released" not in result.console
    assert "unlocked" not in result.console
    with HostClient(stack.host_uri) as host:
        assert host.domain(name).state == "shut off"


def test_sevlaunch_launch_takes_an_snp_domain(
    snp_stack: tuple[Stack, demo.Artifacts, demo.Artifacts], tmp_path: Path
) -> None:
    stack, art, _ = snp_stack
    xml = tmp_path / "snp.xml"
    xml.write_text(snp_demo.snp_domain_xml(unique("cli"), art, art.firmware))
    common = ["launch", str(xml), "--host", stack.host_uri, "--broker", stack.broker_url]
    env = {"SEVLAUNCH_LAUNCHER_TOKEN_FILE": str(stack.launcher_token)}
    done = CliRunner().invoke(cli, [*common, "--workload", snp_demo.WORKLOAD, "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert '"snp": true' in done.output
    refused = CliRunner().invoke(cli, [*common, "--owner-dir", str(tmp_path)], env=env)
    assert refused.exit_code == 2
    assert "--owner-dir is for SEV launches" in refused.output
