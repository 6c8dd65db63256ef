"""libvirt-style SEV domains started by the running host manager: the shapes of libvirt's own
SEV test domains (tests/qemuxml2argvdata/launch-security-sev*.xml) with a block disk on SATA
(q35) and on IDE (i440fx), a virtio disk, a CD-ROM and a pty serial console, each taken through
the whole attested launch; the guest unlocks every disk with the released key.

The block disk is a loop device over a copy of the sealed disk image (detached afterwards);
where loop devices cannot be made the test says why and skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.host.conftest import (
    DISK_LABEL,
    Daemon,
    Media,
    OwnerFiles,
    Platform,
    owner_session,
    wait_for,
)
from tests.host.test_cli import _validate_and_make_secret


@pytest.fixture
def block_disk(media: Media, short_dir: Path) -> Iterator[str]:
    """A loop device holding the sealed disk, padded to whole MiB as a real disk is."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root and losetup (util-linux)")
    image = short_dir / "block.img"
    data = media.disk.read_bytes()
    image.write_bytes(data + bytes(-len(data) % (1 << 20)))
    made = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"no loop device: {made.stderr.strip()}")
    device = made.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def sev_xml(name: str, owner: OwnerFiles, media: Media, *, machine: str, devices: str) -> str:
    """launch-security-sev-direct.xml's shape on this host's media: measured direct boot."""
    return (
        f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<vcpu placement='static'>1</vcpu><os>"
        f"<type arch='x86_64' machine='{machine}'>hvm</type>"
        f"<loader readonly='yes' type='rom'>{media.firmware}</loader>"
        f"<kernel>{media.kernel}</kernel><initrd>{media.initrd}</initrd>"
        f"<cmdline>{media.cmdline}</cmdline><boot dev='hd'/></os>"
        "<features><acpi/></features><clock offset='utc'/>"
        f"<devices>{devices}<serial type='pty'/><console type='pty'/></devices>"
        "<launchSecurity type='sev' kernelHashes='yes'><cbitpos>51</cbitpos>"
        "<reducedPhysBits>1</reducedPhysBits><policy>0x0001</policy>"
        f"<dhCert>{owner.godh.read_text().strip()}</dhCert>"
        f"<session>{owner.session.read_text().strip()}</session></launchSecurity></domain>"
    )


def disk(kind: str, dev: str, bus: str, path: str | Path, device: str = "disk") -> str:
    source = f"<source file='{path}'/>" if kind == "file" else f"<source dev='{path}'/>"
    return (
        f"<disk type='{kind}' device='{device}'><driver name='qemu' type='raw'/>{source}"
        f"<target dev='{dev}' bus='{bus}'/>{'<readonly/>' if device == 'cdrom' else ''}</disk>"
    )


def launch(daemon: Daemon, name: str, xml: str, owner: OwnerFiles, media: Media, out: Path) -> str:
    """Define, start paused, validate the measurement, inject the key, resume; the console."""
    path = out / f"{name}.xml"
    path.write_text(xml)
    daemon.host("define", str(path))
    daemon.host("start", name, "--paused")
    header, payload = _validate_and_make_secret(daemon, name, owner, media, out)
    daemon.host("domsetlaunchsecstate", name, "--secrethdr", str(header), "--secret", str(payload))
    daemon.host("resume", name)
    wait_for(lambda: "boot complete" in daemon.host("console", name).stdout, 60, "the guest boot")
    return daemon.host("console", name).stdout


def hypervisor_argv(daemon: Daemon, name: str) -> list[str]:
    with daemon.client() as c:
        pid = c.get(f"/v1/domains/{name}").json()
        uuid = pid["uuid"]
    cmdline = next(
        p / "cmdline"
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and (daemon.state / "run" / uuid).as_posix().encode() in _read(p / "cmdline")
    )
    return [a.decode() for a in cmdline.read_bytes().split(b"\0") if a]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_q35_sev_guest_with_a_sata_block_disk_a_virtio_disk_and_a_pty_console(
    platform: Platform,
    media: Media,
    start_daemon: Callable[..., Daemon],
    short_dir: Path,
    block_disk: str,
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    virtio = short_dir / "virtio.img"
    shutil.copyfile(media.disk, virtio)
    devices = disk("block", "sda", "sata", block_disk) + disk("file", "vda", "virtio", virtio)
    xml = sev_xml("q35-sata", owner, media, machine="pc-q35-7.2", devices=devices)
    console = launch(daemon, "q35-sata", xml, owner, media, short_dir)
    assert f"cryptsetup: sda: unlocked with luks-key; disk label '{DISK_LABEL}'" in console
    assert f"cryptsetup: vda: unlocked with luks-key; disk label '{DISK_LABEL}'" in console
    argv = hypervisor_argv(daemon, "q35-sata")
    devices_json = [json.loads(a) for a in argv if a.startswith('{"driver"')]
    assert {
        "driver": "ide-hd",
        "bus": "ide.0",
        "drive": "libvirt-2-format",
        "id": "sata0-0-0",
        "bootindex": 1,
    } in devices_json
    assert any(d["driver"] == "virtio-blk-pci" and d["id"] == "virtio-disk0" for d in devices_json)
    assert any(a.startswith("pty,id=charserial0,logfile=") for a in argv)
    assert "-no-shutdown" in argv
    daemon.host("destroy", "q35-sata")


def test_i440fx_sev_guest_with_an_ide_block_disk_a_cdrom_and_a_pty_console(
    platform: Platform,
    media: Media,
    start_daemon: Callable[..., Daemon],
    short_dir: Path,
    block_disk: str,
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    cdrom = short_dir / "boot.iso"
    cdrom.write_bytes(bytes(1 << 20))
    devices = disk("block", "hda", "ide", block_disk) + disk("file", "hdc", "ide", cdrom, "cdrom")
    xml = sev_xml("pc-ide", owner, media, machine="pc-i440fx-7.2", devices=devices)
    console = launch(daemon, "pc-ide", xml, owner, media, short_dir)
    assert f"cryptsetup: sda: unlocked with luks-key; disk label '{DISK_LABEL}'" in console
    argv = hypervisor_argv(daemon, "pc-ide")
    devices_json = [json.loads(a) for a in argv if a.startswith('{"driver"')]
    assert {
        "driver": "ide-hd",
        "bus": "ide.0",
        "unit": 0,
        "drive": "libvirt-2-format",
        "id": "ide0-0-0",
        "bootindex": 1,
    } in devices_json
    assert {
        "driver": "ide-cd",
        "bus": "ide.1",
        "unit": 0,
        "drive": "libvirt-1-format",
        "id": "ide0-1-0",
    } in devices_json
    assert {
        "driver": "piix3-usb-uhci",
        "id": "usb",
        "bus": "pci.0",
        "addr": "0x1.0x2",
    } in devices_json
    daemon.host("destroy", "pc-ide")


def test_libvirts_define_time_refusals_over_the_api(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    """What libvirt refuses at define, refused at define by the running service, in its words."""
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    good = sev_xml("refused", owner, media, machine="pc-q35-7.2", devices="")
    s390 = good.split("<launchSecurity")[0] + "<launchSecurity type='s390-pv'/></domain>"
    cases = {
        s390: "unsupported configuration: S390 PV launch security is not supported with this QEMU binary",
        good.replace(
            f"{media.firmware}</loader>", "</loader>"
        ): "no loader path specified and firmware auto selection disabled",
        good.replace(
            "<devices>", "<devices><interface type='user'/>"
        ): "unsupported configuration: device <interface> is not supported",
        good.replace(
            "<devices>", "<devices>" + disk("file", "hda", "ide", media.disk)
        ): "IDE controllers are unsupported for this QEMU binary or machine type",
    }
    with daemon.client() as c:
        for xml, message in cases.items():
            response = c.post(
                "/v1/domains", content=xml, headers={"Content-Type": "application/xml"}
            )
            assert response.status_code == 400, response.text
            assert message in response.json()["error"]["message"]
        assert c.get("/v1/domains", params={"all": True}).json() == []
