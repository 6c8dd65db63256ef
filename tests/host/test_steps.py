"""An SEV-SNP domain through the host manager on the emulated platform: defined (libvirt 10.5
takes it), started paused with the ``sev-snp-guest`` object, its steps recorded in SNP's
words (SNP_LAUNCH_START at the start, the pages measured at the first resume), its launch
security info without a measurement (libvirt's behaviour: an SNP digest is only in a report),
and the node's SNP info (the sectypes and SNP_PLATFORM_STATUS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.host.domxml import Domain
from sevlaunch.host.manager import HostManager
from sevlaunch.host.steps import SEV_STEPS, SNP_STEPS, host_steps
from sevlaunch.protocol import SnpLaunchSecurityInfo, SnpStep, Step
from sevlaunch.vmm.ovmf_image import AMDSEV_2024, make_image
from tests.host.conftest import Media, Platform, sev_domain_xml
from tests.host.test_manager import run


def snp_xml(name: str, firmware: Path, policy: str = "") -> str:
    return (
        f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='q35'>hvm</type>"
        f"<loader readonly='yes' type='rom'>{firmware}</loader></os><devices/>"
        "<launchSecurity type='sev-snp'><cbitpos>51</cbitpos><reducedPhysBits>1</reducedPhysBits>"
        f"{policy}</launchSecurity></domain>"
    )


@pytest.fixture(scope="module")
def snp_firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snp") / "OVMF.amdsev.fd"
    path.write_bytes(make_image(1 << 20, seed=b"host snp", layout=AMDSEV_2024))
    return path


def test_each_launch_kind_has_its_own_step_words(media: Media, snp_firmware: Path) -> None:
    assert host_steps(Domain.from_xml(snp_xml("s", snp_firmware))) is SNP_STEPS
    assert host_steps(Domain.from_xml(sev_domain_xml("v", media, None))) is SEV_STEPS
    assert (int(SNP_STEPS.launched), int(SNP_STEPS.resumed), int(SNP_STEPS.booted)) == (6, 7, 12)
    assert SEV_STEPS.resumed == SEV_STEPS.booted == Step.RESUMED_BOOTED


def test_an_snp_domain_starts_and_reports_no_measurement(
    short_dir: Path, platform: Platform, snp_firmware: Path
) -> None:
    async def body(m: HostManager) -> None:
        await m.define(snp_xml("snp", snp_firmware, "<policy>0x00070000</policy>"))
        await m.start("snp", paused=True)
        info = await m.launch_security_info("snp")
        assert isinstance(info, SnpLaunchSecurityInfo)
        assert info.snp_policy == 0x70000
        assert "sev-measurement" not in info.to_wire()
        node = await m.node_snp_info()
        assert node.snp
        assert node.sectypes == ("sev", "sev-snp")
        assert node.state is not None
        assert node.current_tcb is not None
        await m.resume("snp")
        recorded = [(s["step"], s["name"], s["outcome"]) for s in m.timeline("snp")]
        for step in (SnpStep.SNP_GUEST_BUILT, SnpStep.STARTED_PAUSED, SnpStep.LAUNCH_STARTED):
            assert (int(step), step.title, "ok") in recorded
        assert (int(SnpStep.RESUMED), SnpStep.RESUMED.title, "ok") in recorded
        assert not any(s == int(Step.MEASUREMENT_READ) for s, _, _ in recorded)

    run(short_dir / "state", platform, body)


def test_an_snp_domain_without_a_policy_gets_qemus_default(
    short_dir: Path, platform: Platform, snp_firmware: Path
) -> None:
    async def body(m: HostManager) -> None:
        await m.define(snp_xml("snpd", snp_firmware))
        assert "<policy>" not in m.dumpxml("snpd")
        await m.start("snpd", paused=True)
        info = await m.launch_security_info("snpd")
        assert isinstance(info, SnpLaunchSecurityInfo)
        assert info.snp_policy == 0x30000

    run(short_dir / "state", platform, body)
