"""-device: machine buses, the buses devices make, slots, and the disks and ports the guest
gets; libvirt 9.0's q35 and i440fx shapes are accepted, QEMU's mistakes refused."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import parse_cmdline
from sevlaunch.vmm.cmdline.devices import MODELS, machine_buses


def dev(**props: object) -> list[str]:
    return ["-device", json.dumps(props)]


def disk(node: str, path: str) -> list[str]:
    return [
        "-blockdev", json.dumps({"driver": "file", "filename": path, "node-name": f"{node}-s"}),
        "-blockdev", json.dumps({"node-name": node, "driver": "raw", "file": f"{node}-s"}),
    ]  # fmt: skip


def test_libvirts_i440fx_layout() -> None:
    cfg = parse_cmdline(
        [
            "-machine", "pc-i440fx-7.2",
            *dev(driver="piix3-usb-uhci", id="usb", bus="pci.0", addr="0x1.0x2"),
            *dev(driver="ahci", id="sata0", bus="pci.0", addr="0x2"),
            *disk("d3", "/a.img"), *dev(driver="ide-hd", bus="ide.0", unit=0, drive="d3", id="ide0-0-0", bootindex=1),
            *disk("d2", "/c.iso"), *dev(driver="ide-cd", bus="ide.1", unit=0, drive="d2", id="ide0-1-0"),
            *disk("d1", "/b.img"), *dev(driver="ide-hd", bus="sata0.0", drive="d1", id="sata0-0-0"),
            *disk("d0", "/v.img"),
            *dev(driver="virtio-blk-pci", bus="pci.0", addr="0x3", drive="d0", id="virtio-disk0"),
            *dev(driver="virtio-balloon-pci", id="balloon0", bus="pci.0", addr="0x4"),
        ]
    )  # fmt: skip
    assert [(d.file, d.driver, d.bootindex) for d in cfg.disks] == [
        ("/a.img", "ide-hd", 1), ("/c.iso", "ide-cd", None), ("/b.img", "ide-hd", None),
        ("/v.img", "virtio-blk-pci", None),
    ]  # fmt: skip
    assert len(cfg.devices) == 7


def test_nine_root_ports_fill_slot_one_then_two() -> None:
    argv = ["-machine", "pc-q35-7.2"]
    for n in range(9):
        addr = f"0x{1 + n // 8:x}" + (f".0x{n % 8:x}" if n % 8 else "")
        argv += dev(
            driver="pcie-root-port",
            port=8 + n,
            chassis=n + 1,
            id=f"pci.{n + 1}",
            bus="pcie.0",
            addr=addr,
        )
    for n in range(9):
        argv += disk(f"d{n}", f"/d{n}.img")
        argv += dev(driver="virtio-blk-pci", bus=f"pci.{n + 1}", addr="0x0", drive=f"d{n}")
    assert len(parse_cmdline(argv).disks) == 9


def test_devices_without_a_bus_find_one() -> None:
    cfg = parse_cmdline(
        ["-machine", "q35", *disk("d", "/d.img"), *dev(driver="virtio-blk-pci", drive="d")]
    )
    assert [d.file for d in cfg.disks] == ["/d.img"]


def test_an_empty_cdrom_tray_is_no_disk() -> None:
    assert parse_cmdline(["-machine", "pc", *dev(driver="ide-cd", bus="ide.1")]).disks == ()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (dev(driver="virtio-net-pci"), "'virtio-net-pci' is not a valid device model name"),
        (["-machine", "q35", *dev(driver="qemu-xhci", bus="pci.7")], "Bus 'pci.7' not found"),
        (["-machine", "pc", *dev(driver="pcie-root-port", bus="pci.0")], "can't go on PCI bus"),
        (["-machine", "q35", *dev(driver="ide-hd", bus="pcie.0", drive="x")], "can't go on PCIE bus"),
        (["-machine", "q35", *dev(driver="virtio-blk-pci", drive="nope")], "can't find value 'nope'"),
        (["-machine", "q35", *dev(driver="virtio-blk-pci")], "drive property not set"),
        (["-machine", "q35", *dev(driver="qemu-xhci", addr="0x1f.0x2")], "slot 31 function 2 not available"),
        (["-machine", "q35", *dev(driver="qemu-xhci", addr="zz")], "Property 'addr' doesn't take value 'zz'"),
        (["-machine", "pc", *dev(driver="ide-cd", bus="ide.0", unit=2)], "Can't create IDE unit 2"),
        (["-machine", "pc", *dev(driver="ide-cd", bus="ide.0", unit=0) * 2], "IDE unit 0 is in use"),
        (["-machine", "none", *dev(driver="qemu-xhci")], "No 'PCI' bus found for device 'qemu-xhci'"),
        (dev(driver="isa-serial", chardev="c"), "Property 'isa-serial.chardev' can't find value 'c'"),
        (dev(driver="qemu-xhci", id="u") + dev(driver="qemu-xhci", id="u"), "Duplicate ID 'u' for device"),
    ],
)  # fmt: skip
def test_refusals(argv: list[str], message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        parse_cmdline(argv)


def test_machines_bring_their_buses() -> None:
    assert sorted(machine_buses("pc-q35-7.2")) == [
        "ide.0",
        "ide.1",
        "ide.2",
        "ide.3",
        "ide.4",
        "ide.5",
        "pcie.0",
    ]
    assert sorted(machine_buses("pc-i440fx-7.2")) == ["ide.0", "ide.1", "pci.0"]
    assert machine_buses("none") == {}


_values = st.one_of(st.none(), st.booleans(), st.integers(-2, 40), st.text(max_size=8))


@given(
    st.lists(
        st.fixed_dictionaries(
            {"driver": st.sampled_from(sorted(MODELS))},
            optional=dict.fromkeys(
                ("id", "bus", "addr", "drive", "chardev", "unit", "index"), _values
            ),
        ),
        max_size=6,
    )
)
def test_hostile_devices_only_raise_command_line_errors(devices: list[dict[str, object]]) -> None:
    argv = ["-machine", "q35"]
    for props in devices:
        argv += ["-device", json.dumps(props)]
    with contextlib.suppress(CommandLineError):
        parse_cmdline(argv)
