"""The same host manager code driving Debian's real ``qemu-system-x86_64`` (TCG, no SEV).

``.ci/run`` installs ``qemu-system-x86`` and ``ovmf``; elsewhere these tests skip.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from sevlaunch.errors import HostError
from sevlaunch.host import driver
from sevlaunch.host.manager import HostManager
from tests.host.conftest import Media, Platform, owner_session, sev_domain_xml

QEMU = shutil.which("qemu-system-x86_64")
OVMF = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
pytestmark = pytest.mark.skipif(
    QEMU is None,
    reason="qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 ovmf)",
)
T = TypeVar("T")


def run(state: Path, body: Callable[[HostManager], Awaitable[T]]) -> T:
    async def main() -> T:
        assert QEMU is not None
        manager = HostManager(state, qemu=QEMU)
        await manager.startup()
        try:
            return await body(manager)
        finally:
            for row in manager.list_domains():
                await manager.destroy(row.uuid)
            await manager.close()

    return asyncio.run(main())


def plain_xml(name: str, os_extra: str = "") -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64' machine='q35'>hvm</type>{os_extra}</os>"
        "<features><acpi/></features><devices><serial type='null'/></devices></domain>"
    )


def full_xml(short_dir: Path) -> str:
    """Every device form the driver emits, as libvirt 9.0 would: pflash code + NVRAM copy, a
    virtio disk, a SATA disk and CD-ROM, a file serial and a pty one, the default USB
    controller and balloon and their root ports, a CPU model, two vCPUs, a UUID."""
    vars_copy, disk = short_dir / "VARS.fd", short_dir / "disk.img"
    sata, cdrom = short_dir / "sata.img", short_dir / "cd.iso"
    shutil.copyfile(OVMF.with_name("OVMF_VARS_4M.fd"), vars_copy)
    for image in (disk, sata, cdrom):
        image.write_bytes(bytes(1 << 20))
    return (
        "<domain type='qemu'><name>plain</name><uuid>8d1f0bd2-3c1e-4d6b-9f1a-2b8e7c6d5a4f</uuid>"
        "<memory unit='MiB'>128</memory><vcpu>2</vcpu>"
        "<os><type arch='x86_64' machine='q35'>hvm</type>"
        f"<loader readonly='yes' type='pflash'>{OVMF}</loader><nvram>{vars_copy}</nvram></os>"
        "<features><acpi/></features><cpu mode='custom'><model>qemu64</model></cpu><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk>"
        f"<disk type='file' device='disk'><source file='{sata}'/><target dev='sda' bus='sata'/>"
        "</disk>"
        f"<disk type='file' device='cdrom'><source file='{cdrom}'/><target dev='sdb' bus='sata'/>"
        "</disk>"
        f"<serial type='file'><source path='{short_dir / 'state/log/plain/serial0.log'}'/>"
        "</serial><serial type='pty'/>"
        "</devices></domain>"
    )


@pytest.mark.parametrize("firmware", ["seabios", "ovmf-pflash", "ovmf-nvram-disk-serial"])
def test_plain_domain_starts_paused_resumes_and_is_destroyed(
    short_dir: Path, firmware: str
) -> None:
    if firmware != "seabios" and not OVMF.exists():
        pytest.skip(f"{OVMF} is absent (apt-get install ovmf)")
    xml = {
        "seabios": lambda: plain_xml("plain"),
        "ovmf-pflash": lambda: plain_xml(
            "plain", f"<loader readonly='yes' type='pflash'>{OVMF}</loader>"
        ),
        "ovmf-nvram-disk-serial": lambda: full_xml(short_dir),
    }[firmware]()

    async def body(m: HostManager) -> None:
        await m.define(xml)
        row = await m.start("plain", paused=True)
        assert (row.state, row.pid is not None) == ("paused", True)
        status = await driver.qmp_execute(m._runtime[row.uuid].client, "query-status")
        assert status["status"] == "prelaunch"
        await m.resume("plain")
        assert m.domain("plain").state == "running"
        status = await driver.qmp_execute(m._runtime[row.uuid].client, "query-status")
        assert status["running"] is True
        await m.suspend("plain")
        assert m.domain("plain").state == "paused"
        await m.destroy("plain")
        done = m.domain("plain")
        assert (done.state, done.reason, done.pid) == ("shutoff", "destroyed", None)
        assert not driver.pid_alive(row.pid)
        steps = {s["step"]: s["outcome"] for s in m.timeline("plain")}
        assert steps == {8: "ok", 13: "ok"}

    run(short_dir / "state", body)
    logs = sorted(p.name for p in (short_dir / "state/log/plain").iterdir())
    full = ["serial0.log", "serial1.log"]
    assert logs == (full if firmware == "ovmf-nvram-disk-serial" else ["console.log"])


def test_sev_domain_is_refused_at_define_naming_the_missing_sev_support(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    owner = owner_session(platform, short_dir / "owner")
    xml = sev_domain_xml("sev", media, owner, kernel=False, disk=False, virt="qemu")

    async def body(m: HostManager) -> HostError:
        with pytest.raises(HostError) as caught:
            await m.define(xml)
        assert m.list_domains(all_domains=True) == []
        return caught.value

    error = run(short_dir / "state", body)
    assert error.kind == "unsupported configuration"
    assert error.detail.startswith("SEV launch security is not supported with this QEMU binary")
    assert "QEMU does not support SEV guest" in str(error)
    # QEMU's own words: "KVM not enabled" under TCG, "SEV is not enabled in KVM" with KVM
    assert re.search(
        r"query-sev-capabilities: (KVM not enabled|SEV is not enabled in KVM)", str(error)
    )


def test_node_sev_info_is_qemu_does_not_support_sev_guest(short_dir: Path) -> None:
    async def body(m: HostManager) -> list[str]:
        messages = []
        for refresh in (False, False, True):  # the failed probe is cached, refresh re-probes
            with pytest.raises(HostError) as caught:
                await m.node_sev_info(refresh=refresh)
            assert caught.value.kind == "Operation not supported"
            messages.append(caught.value.detail)
        return messages

    messages = run(short_dir / "state", body)
    assert all(m.startswith("QEMU does not support SEV guest") for m in messages)
    assert len(set(messages)) == 1
