"""The parsed configuration's small helpers."""

from __future__ import annotations

from sevlaunch.vmm.cmdline.config import DeviceConfig


def test_a_device_reads_its_properties() -> None:
    device = DeviceConfig("virtio-blk-pci", "d", "pci.1", (("drive", "n"), ("bootindex", 1)))
    assert (device.prop("drive"), device.prop("bootindex"), device.prop("addr")) == ("n", 1, None)
