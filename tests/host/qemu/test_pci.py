"""libvirt's PCI address assignment for the devices an SEV guest has."""

from __future__ import annotations

from sevlaunch.host.domxml.devices import PciAddress
from sevlaunch.host.qemu.pci import RootPort, addr_text, assign, bus_name


def test_i440fx_devices_take_slots_from_two() -> None:
    result = assign("pc", [None, PciAddress(slot=3), None], (), 0)
    assert [addr_text(a) for a in result.addresses] == ["0x2", "0x3", "0x4"]
    assert result.root_ports == ()


def test_q35_gives_each_device_a_root_port_and_one_spare() -> None:
    result = assign("q35", [None, None], (), 0)
    assert [(a.bus, addr_text(a)) for a in result.addresses] == [(1, "0x0"), (2, "0x0")]
    assert [(p.index, p.chassis, p.port, addr_text(p.address), p.multifunction) for p in result.root_ports] == [
        (1, 1, 8, "0x1", True), (2, 2, 9, "0x1.0x1", False), (3, 3, 10, "0x1.0x2", False),
    ]  # fmt: skip


def test_q35_with_nothing_to_place_adds_no_port() -> None:
    assert assign("q35", [], (), 0).root_ports == ()


def test_the_ninth_port_opens_slot_two() -> None:
    ports = assign("q35", [None] * 8, (), 0).root_ports
    assert [addr_text(p.address) for p in ports][-2:] == ["0x1.0x7", "0x2"]
    assert ports[-1].port == 16
    assert not ports[-1].multifunction


def test_given_ports_and_addresses_are_kept_and_reused() -> None:
    given = (RootPort(1, 1, 8, PciAddress(slot=1, function=0, multifunction=True)),
             RootPort(2, 2, 9, PciAddress(slot=1, function=1)))  # fmt: skip
    result = assign("q35", [PciAddress(bus=1), None], given, 2)
    assert [a.bus for a in result.addresses] == [1, 2]
    assert result.root_ports == given  # nothing added: a free given port took the device


def test_bus_names() -> None:
    assert (bus_name("q35", 0), bus_name("pc", 0), bus_name("q35", 3)) == (
        "pcie.0",
        "pci.0",
        "pci.3",
    )
