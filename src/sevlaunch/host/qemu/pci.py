"""PCI addresses as libvirt assigns them (qemuDomainAssignPCIAddresses) for the devices an SEV
guest has, honouring every address the domain XML already gives.

i440fx (``pc``): devices sit on ``pci.0`` from slot 2 up (slot 0 is the host bridge, slot 1
the PIIX3, whose USB function libvirt's ``piix3-usb-uhci`` takes at ``0x1.0x2``). q35: each
PCIe device sits on a ``pcie-root-port`` of its own at ``0x0``; libvirt adds the ports it needs
plus one spare for hotplug, numbered after the highest PCI controller index, and puts them on
``pcie.0`` at slot 1 functions 0-7, then slot 2, ..., with ``multifunction`` on function 0 of a
slot that holds several; a port's ``chassis`` is its index and its ``port`` slot*8+function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sevlaunch.host.domxml.devices import PciAddress

ROOT_RESERVED = {
    "q35": {(0, 0), (0x1F, 0), (0x1F, 2), (0x1F, 3)},
    "pc": {(0, 0), (1, 0), (1, 1), (1, 3)},
}


@dataclass(frozen=True)
class RootPort:
    """A ``pcie-root-port`` controller: bus ``pci.INDEX``, placed on ``pcie.0``."""

    index: int
    chassis: int
    port: int
    address: PciAddress

    @property
    def multifunction(self) -> bool:
        return bool(self.address.multifunction)


@dataclass(frozen=True)
class Assignment:
    """The root ports (given and added) and one address per requested device, in order."""

    root_ports: tuple[RootPort, ...]
    addresses: tuple[PciAddress, ...]


def bus_name(family: str, bus: int) -> str:
    return ("pcie.0" if family == "q35" else "pci.0") if bus == 0 else f"pci.{bus}"


def addr_text(address: PciAddress) -> str:
    """``-device``'s ``addr``: ``0x2``, or ``0x1.0x2`` for a non-zero function."""
    slot = f"0x{address.slot:x}"
    return slot if address.function == 0 else f"{slot}.0x{address.function:x}"


def assign(
    family: str,
    wanted: Sequence[PciAddress | None],
    given_ports: Sequence[RootPort],
    highest_index: int,
) -> Assignment:
    """Addresses for devices in libvirt's order (``None``: libvirt picks one)."""
    taken = {(a.bus, a.slot, a.function) for a in wanted if a is not None}
    taken |= {(0, p.address.slot, p.address.function) for p in given_ports}
    taken |= {(0, slot, function) for slot, function in ROOT_RESERVED[family]}
    if family == "pc":
        return Assignment(tuple(given_ports), tuple(_on_root(wanted, taken)))
    return _on_root_ports(wanted, given_ports, highest_index, taken)


def _on_root(
    wanted: Sequence[PciAddress | None], taken: set[tuple[int, int, int]]
) -> list[PciAddress]:
    out = []
    for given in wanted:
        if given is not None:
            out.append(given)
            continue
        slot = next(s for s in range(2, 32) if not any((0, s, f) in taken for f in range(8)))
        taken.add((0, slot, 0))
        out.append(PciAddress(slot=slot))
    return out


def _on_root_ports(
    wanted: Sequence[PciAddress | None],
    given_ports: Sequence[RootPort],
    highest_index: int,
    taken: set[tuple[int, int, int]],
) -> Assignment:
    ports = {p.index: p for p in given_ports}
    busy = {a.bus for a in wanted if a is not None}
    new_indexes: list[int] = []
    out = []
    for given in wanted:
        if given is not None:
            out.append(given)
            continue
        free = next((i for i in sorted(ports) + new_indexes if i not in busy), None)
        if free is None:
            highest_index += 1
            free = highest_index
            new_indexes.append(free)
        busy.add(free)
        out.append(PciAddress(bus=free))
    if new_indexes:
        highest_index += 1
        new_indexes.append(highest_index)  # libvirt's spare port for hotplug
    for index, address in zip(new_indexes, _root_slots(len(new_indexes), taken), strict=True):
        ports[index] = RootPort(index, index, address.slot * 8 + address.function, address)
    return Assignment(tuple(ports[i] for i in sorted(ports)), tuple(out))


def _root_slots(count: int, taken: set[tuple[int, int, int]]) -> list[PciAddress]:
    """Free functions on ``pcie.0`` from slot 1 on; function 0 of a shared slot is multifunction."""
    free = [
        (slot, function)
        for slot in range(1, 32)
        for function in range(8)
        if (0, slot, function) not in taken
    ][:count]
    shared = {slot for slot, function in free if function > 0}
    return [
        PciAddress(
            slot=slot,
            function=function,
            multifunction=True if function == 0 and slot in shared else None,
        )
        for slot, function in free
    ]
