"""The device dataclasses: addresses, disks, serial ports, controllers and the balloon."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import DiskConfig, SerialConfig
from sevlaunch.host.domxml.devices import BalloonConfig, ControllerConfig, DriveAddress, PciAddress


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PciAddress(slot=0x20), "Invalid PCI address slot 0x20, must be <= 0x1f"),
        (lambda: PciAddress(function=8), "Invalid PCI address function 0x8"),
        (lambda: DriveAddress(unit=-1), "invalid drive address unit"),
        (lambda: DiskConfig(target_dev="disk0"), "invalid disk target 'disk0'"),
        (lambda: DiskConfig(target_dev="vda", type="network", source="/x"), "has no file source"),
        (lambda: DiskConfig(target_dev="vda", driver_type="Raw!"), "unknown driver format value"),
        (lambda: SerialConfig(type="file"), "Missing source path attribute for char device"),
        (lambda: SerialConfig(type="pty", log_file="rel.log"), "must be an absolute path"),
        (
            lambda: ControllerConfig(type="floppy"),
            "Invalid value for attribute 'type' in element 'controller'",
        ),
        (
            lambda: BalloonConfig(model="hyperv"),
            "Invalid value for attribute 'model' in element 'memballoon'",
        ),
    ],
)
def test_refusals(build: object, message: str) -> None:
    with pytest.raises(DomainXMLError, match=message):
        build()  # type: ignore[operator]


def test_the_defaults_are_libvirts() -> None:
    assert DiskConfig(target_dev="vda").type == "file"
    assert BalloonConfig().model == "virtio"
    assert SerialConfig().type == "pty"
    assert PciAddress() == PciAddress(bus=0, slot=0, function=0, domain=0)
