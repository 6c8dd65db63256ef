"""<devices> children read as libvirt reads them, dumpxml's addresses and targets included."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain
from sevlaunch.host.domxml.devices import BalloonConfig, ControllerConfig, DriveAddress, PciAddress
from tests.host.qemu.cases import DUMPED_DEVICES, domain


def test_libvirts_dumpxml_devices() -> None:
    d = Domain.from_xml(domain(devices=DUMPED_DEVICES))
    assert [x.address for x in d.disks] == [
        PciAddress(bus=2), DriveAddress(controller=0, bus=0, target=0, unit=0),
    ]  # fmt: skip
    assert d.controllers[0] == ControllerConfig(
        type="usb", model="qemu-xhci", address=PciAddress(bus=1)
    )
    ports = [c for c in d.controllers if c.model == "pcie-root-port"]
    assert [(c.index, c.chassis, c.port, c.address) for c in ports][:2] == [
        (1, 1, 8, PciAddress(slot=1, multifunction=True)), (2, 2, 9, PciAddress(slot=1, function=1)),
    ]  # fmt: skip
    assert d.memballoon == BalloonConfig(address=PciAddress(bus=3))
    assert d.serials[0].port == 0
    assert ("console", "pty") in d.device_elements()


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        (
            "<disk type='file'><source file='/a'/><target dev='vda'/><address type='usb'/></disk>",
            "address type 'usb' is not supported",
        ),
        (
            "<disk type='file'><source file='/a'/><target dev='vda'/><boot order='first'/></disk>",
            "Cannot parse disk/boot/@order",
        ),
        ("<controller type='usb'><address type='drive'/></controller>", "needs a PCI address"),
        ("<memballoon/>", "Missing required attribute 'model' in element 'memballoon'"),
        (
            "<controller type='pci' index='1' model='pcie-root-port'><target port='0xzz'/></controller>",
            "Invalid target port",
        ),
    ],
)
def test_refusals(devices: str, message: str) -> None:
    with pytest.raises(DomainXMLError, match=message):
        Domain.from_xml(domain(devices=devices))
