"""SEV-ES through the whole flow: the owner registers an SEV-ES workload with the broker (the
digest computed client-side from the vCPU type), the VM tool launches a domain whose ``<vcpu>``
and ``<cpu><model>`` make the VMSAs, the guest boots with its secret; a domain with other vCPUs
is refused at the measurement; an SEV-ES policy on a platform without SEV-ES fails as QEMU does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.firmware import PROFILES, Firmware
from sevlaunch.orchestrate import demo
from sevlaunch.platform.state import StoredState
from sevlaunch.vmm.ovmf_image import make_image
from tests.orchestrate.stack import RunningStack, running_stack, unique
from tests.vmm.conftest import PlatformProcess, VmmProcess, short_tempdir

WORKLOAD = "es-milan"
POLICY = 0x5  # NODBG | ES
CPU = "EPYC-Milan"
VCPUS = 2
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def env() -> Iterator[RunningStack]:
    with running_stack("sevlaunch-es-") as running:
        yield running


def _es_xml(env: RunningStack, name: str, vcpus: int = VCPUS, cpu: str = CPU) -> str:
    shape = demo.GuestShape(POLICY, vcpus, cpu)
    return demo.domain_xml(name, env.art, env.art.firmware, shape)


def _register(env: RunningStack) -> dict[str, object]:
    """``sevlaunch broker workload add --es``: the SEV-ES digest is computed by the CLI."""
    art = env.art
    result = CliRunner().invoke(
        cli,
        [
            "broker", "workload", "add", WORKLOAD, "--policy", f"{POLICY:#x}",
            "--firmware", str(art.firmware), "--kernel", str(art.kernel),
            "--initrd", str(art.initrd), "--append", demo.CMDLINE,
            "--es", "--vcpus", str(VCPUS), "--vcpu-type", CPU,
            "--secret", f"luks-key:{art.passphrase}", "--json",
        ],
        env={
            "SEVLAUNCH_BROKER_URL": env.stack.broker_url,
            "SEVLAUNCH_OWNER_TOKEN_FILE": str(env.stack.owner_token),
        },
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.output)
    return shown


def test_an_es_guest_launches_attested_and_a_wrong_vcpu_count_is_refused(
    env: RunningStack,
) -> None:
    shown = _register(env)
    art = env.art
    digest = subprocess.run(
        [
            BIN / "sevlaunch", "owner", "digest", "-f", art.firmware, "-k", art.kernel,
            "-r", art.initrd, "-e", demo.CMDLINE, "--es", "--vcpus", str(VCPUS),
            "--vcpu-type", CPU,
        ],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert shown["digests"] == [digest]

    name = unique("es")
    good = env.launch(_es_xml(env, name), owner=env.owner(WORKLOAD))
    assert good.ok, good.error
    assert f"disk label '{demo.DISK_LABEL}'" in good.console
    with env.host() as host:
        assert host.domain(name).state == "running"
    env.destroy(name)

    other = unique("es4")
    bad = env.launch(_es_xml(env, other, vcpus=4), owner=env.owner(WORKLOAD))
    assert not bad.ok
    assert bad.failed_step == 11
    assert other not in env.running()


def test_an_es_policy_on_a_platform_without_es_fails_as_qemu_does() -> None:
    state = StoredState("rome", Firmware(PROFILES["rome"]).persistent_state()).to_bytes()
    platform = PlatformProcess(short_tempdir("sevles-p-")).start(state)
    work = short_tempdir("sevles-")
    try:
        init = subprocess.run(
            [BIN / "sevlaunch", "platform", "init", "--no-es", "--platform", platform.sock],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        firmware = work / "OVMF.fd"
        firmware.write_bytes(make_image(64 * 1024, seed=b"es-e2e"))
        sev = {
            "qom-type": "sev-guest", "id": "lsec0", "cbitpos": PROFILES["rome"].cbitpos,
            "reduced-phys-bits": 1, "policy": POLICY,
        }  # fmt: skip
        argv = [
            "-S", "-machine", "q35,confidential-guest-support=lsec0",
            "-object", json.dumps(sev), "-bios", str(firmware), "-m", "256",
            "-smp", "2", "-cpu", "EPYC-Rome", "-display", "none",
            "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off",
        ]  # fmt: skip
        done = VmmProcess(work, platform.sock).run(argv)
        assert done.returncode == 1
        assert (
            "sev_common_kvm_init: guest policy requires SEV-ES, but host SEV-ES support unavailable"
        ) in done.stderr
    finally:
        platform.stop()
        shutil.rmtree(work, ignore_errors=True)
