"""libvirt's post-parse before a command line: disk order, drive addresses, boot indexes,
default controllers and balloon."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu.layout import disk_index, layout, sorted_disks
from tests.host.qemu.cases import LIBVIRT_CASES, NO_DEFAULTS, SEV_CASES, disk, domain


def test_disk_names_to_indexes() -> None:
    assert [disk_index(n) for n in ("vda", "vdz", "vdaa", "hdc", "sdb", "xvdb")] == [
        0,
        25,
        26,
        2,
        1,
        1,
    ]


def test_disks_sort_within_their_bus_as_virdomaindiskinsert_does() -> None:
    d = Domain.from_xml(
        domain(
            devices=disk("hda", "ide", "/a") + disk("sda", "sata", "/b") + disk("hdc", "ide", "/c"),
            machine="pc",
        )
    )
    assert [x.target_dev for x in sorted_disks(d.disks)] == ["hda", "hdc", "sda"]
    d = Domain.from_xml(
        domain(
            devices=disk("vdb", "virtio", "/b")
            + disk("vda", "virtio", "/a")
            + disk("sdb", "sata", "/s")
        )
    )
    assert [x.target_dev for x in sorted_disks(d.disks)] == ["vda", "vdb", "sdb"]


def test_ids_buses_and_nodes_of_each_bus() -> None:
    placed = layout(Domain.from_xml(LIBVIRT_CASES["pc-ide-sata-cdrom"])).disks
    assert [(p.node, p.qdev_id, p.qemu_bus, p.unit) for p in placed] == [
        ("libvirt-3", "ide0-0-0", "ide.0", 0), ("libvirt-2", "ide0-1-0", "ide.1", 0),
        ("libvirt-1", "sata0-0-0", "sata0.0", None),
    ]  # fmt: skip
    q35 = layout(Domain.from_xml(LIBVIRT_CASES["q35-boot-cdrom-first"])).disks
    assert [(p.qdev_id, p.qemu_bus, p.bootindex) for p in q35] == [
        ("virtio-disk0", "pci.2", 2), ("sata0-0-2", "ide.2", 1),
    ]  # fmt: skip


def test_defaults_libvirt_adds() -> None:
    q35 = layout(Domain.from_xml(domain()))
    assert q35.usb is not None
    assert q35.usb[0] == "qemu-xhci"
    assert q35.balloon is not None
    assert len(q35.root_ports) == 3  # USB, balloon, spare
    pc = layout(Domain.from_xml(domain(machine="pc-i440fx-7.2", devices=disk("sda", "sata", "/s"))))
    assert pc.usb is not None
    assert (pc.usb[0], pc.usb[1]) == ("piix3-usb-uhci", pc.usb[1])
    assert [s[0] for s in pc.sata] == ["sata0"]
    bare = layout(Domain.from_xml(domain(devices=NO_DEFAULTS)))
    assert (bare.usb, bare.balloon, bare.root_ports) == (None, None, ())


def test_an_sev_guest_from_libvirts_tests_keeps_its_drive_address() -> None:
    (placed,) = layout(Domain.from_xml(SEV_CASES["sev-ide-block"])).disks
    assert (placed.qdev_id, placed.qemu_bus, placed.unit, placed.bootindex) == (
        "ide0-0-0",
        "ide.0",
        0,
        1,
    )


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            domain(devices="".join(disk(f"sd{c}", "sata", f"/{c}") for c in "abcdefg")),
            "second SATA controller",
        ),
        (
            domain(machine="pc", devices=disk("hde", "ide", "/e")),
            "beyond the PIIX3's two IDE buses",
        ),
        (
            domain(devices="<controller type='pci' index='1' model='pcie-root-port'/>"),
            "pcie-root-port index 1 has no <address>",
        ),
    ],
)
def test_what_one_controller_cannot_hold_is_refused(xml: str, message: str) -> None:
    with pytest.raises(DomainXMLError, match=message):
        layout(Domain.from_xml(xml))
