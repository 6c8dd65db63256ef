"""Devices written back as libvirt's formatter writes them: hex PCI addresses, the boot order,
controller targets, the balloon."""

from __future__ import annotations

import dataclasses

from sevlaunch.host.domxml import Domain
from sevlaunch.host.domxml.devices import BalloonConfig, ControllerConfig, DriveAddress, PciAddress
from tests.host.qemu.cases import DUMPED_DEVICES, disk, domain


def test_dumped_devices_round_trip() -> None:
    d = Domain.from_xml(domain(devices=DUMPED_DEVICES))
    again = Domain.from_xml(d.to_xml())
    assert again == d
    assert (
        '<address type="pci" domain="0x0000" bus="0x02" slot="0x00" function="0x0"/>' in d.to_xml()
    )


def test_edits_write_addresses_boot_orders_and_controllers() -> None:
    d = Domain.from_xml(domain(devices=disk("sda", "sata", "/s")))
    edited = dataclasses.replace(
        d,
        disks=(dataclasses.replace(d.disks[0], boot_order=2, address=DriveAddress(unit=3)),),
        controllers=(
            ControllerConfig(
                type="pci",
                index=1,
                model="pcie-root-port",
                chassis=1,
                port=8,
                address=PciAddress(slot=1, multifunction=True),
            ),
        ),
        memballoon=BalloonConfig(model="none"),
    )
    xml = edited.to_xml()
    assert '<boot order="2"/>' in xml
    assert '<address type="drive" controller="0" bus="0" target="0" unit="3"/>' in xml
    assert '<target chassis="1" port="0x8"/>' in xml
    assert 'multifunction="on"' in xml
    assert '<memballoon model="none"/>' in xml
    assert Domain.from_xml(xml) == edited
    dropped = Domain.from_xml(dataclasses.replace(edited, memballoon=None, controllers=()).to_xml())
    assert (dropped.memballoon, dropped.controllers) == (None, ())
