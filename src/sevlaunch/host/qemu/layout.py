"""The guest's devices as libvirt's parser and address assignment leave them before it builds
a command line: disks in libvirt's order with their drive addresses and boot indexes, the USB
and SATA controllers and the memory balloon libvirt adds by default, and a PCI address for
every PCI device (:mod:`.pci`)."""

from __future__ import annotations

from dataclasses import dataclass

from sevlaunch.host.domxml import DiskConfig, Domain
from sevlaunch.host.domxml.devices import DriveAddress, PciAddress
from sevlaunch.host.qemu.pci import RootPort, addr_text, assign, bus_name
from sevlaunch.host.qemu.plan import unsupported
from sevlaunch.host.validate import disk_bus, machine_family

SATA_PORTS = 6  # per AHCI controller
IDE_UNITS = 2  # per IDE bus; two buses on the i440fx's PIIX3


@dataclass(frozen=True)
class PciDevice:
    """Where a PCI device goes on the command line: ``bus`` and ``addr``."""

    bus: str
    addr: str


@dataclass(frozen=True)
class PlacedDisk:
    """A disk as its ``-blockdev``/``-device`` pair needs it."""

    disk: DiskConfig
    bus: str  # virtio, sata or ide
    node: str  # libvirt-N
    qdev_id: str
    qemu_bus: str
    unit: int | None
    pci: PciDevice | None
    bootindex: int | None


@dataclass(frozen=True)
class Layout:
    family: str
    root_ports: tuple[RootPort, ...]
    usb: tuple[str, PciDevice | None] | None  # (driver, place) or none at all
    sata: tuple[tuple[str, PciDevice], ...]  # AHCI controllers an i440fx needs: (id, place)
    disks: tuple[PlacedDisk, ...]
    balloon: PciDevice | None


def disk_index(target_dev: str) -> int:
    """virDiskNameToIndex: ``vda`` 0, ``vdz`` 25, ``vdaa`` 26."""
    name = target_dev.removeprefix("ioemu:")
    suffix = name[3:] if name.startswith(("xvd", "ubd")) else name[2:]
    index = 0
    for char in suffix:
        if not "a" <= char <= "z":
            break
        index = index * 26 + (ord(char) - ord("a") + 1)
    return max(index - 1, 0)


def sorted_disks(disks: tuple[DiskConfig, ...]) -> list[DiskConfig]:
    """virDomainDiskInsert: disks of a bus together, by drive index, buses as they came."""
    out: list[DiskConfig] = []
    for disk in disks:
        at = -1
        for i in range(len(out) - 1, -1, -1):
            if disk_bus(out[i]) != disk_bus(disk):
                continue
            if disk_index(out[i].target_dev) > disk_index(disk.target_dev):
                at = i
            elif at == -1:
                at = i + 1
        out.insert(len(out) if at == -1 else at, disk)
    return out


def layout(domain: Domain) -> Layout:
    family = machine_family(domain)
    disks = sorted_disks(domain.disks)
    usb = _usb(domain, family)
    sata = family == "pc" and any(disk_bus(d) == "sata" for d in disks)
    wanted: list[PciAddress | None] = []
    if usb is not None and usb[1] is not _FIXED:
        wanted.append(usb[1])
    if sata:
        wanted.append(_controller_address(domain, "sata"))
    virtio = [d for d in disks if disk_bus(d) == "virtio"]
    wanted += [_pci_address(d) for d in virtio]
    balloon = domain.memballoon
    with_balloon = balloon is None or balloon.model != "none"
    if with_balloon:
        wanted.append(None if balloon is None else balloon.address)
    given = tuple(_root_ports(domain))
    highest = max((c.index for c in domain.controllers if c.type == "pci"), default=0)
    assigned = assign(family, wanted, given, highest)
    places = [PciDevice(bus_name(family, a.bus), addr_text(a)) for a in assigned.addresses]
    usb_place = None
    if usb is not None and usb[1] is not _FIXED:
        usb_place = places.pop(0)
    elif usb is not None:
        usb_place = PciDevice("pci.0", "0x1.0x2")
    sata_places = (("sata0", places.pop(0)),) if sata else ()
    virtio_places = {id(d): places.pop(0) for d in virtio}
    boot = _boot_indexes(domain, disks)
    placed = tuple(
        _place(family, disk, len(disks) - pos, virtio_places.get(id(disk)), boot.get(id(disk)))
        for pos, disk in enumerate(disks)
    )
    return Layout(
        family=family,
        root_ports=assigned.root_ports,
        usb=None if usb is None else (usb[0], usb_place),
        sata=sata_places,
        disks=placed,
        balloon=places.pop(0) if with_balloon else None,
    )


_FIXED = PciAddress(slot=1, function=2)  # the PIIX3's own USB function


def _usb(domain: Domain, family: str) -> tuple[str, PciAddress | None] | None:
    """libvirt's default USB controller (q35 qemu-xhci, i440fx piix3-uhci) unless model none."""
    found = next((c for c in domain.controllers if c.type == "usb" and c.index == 0), None)
    model = (found.model if found is not None else None) or (
        "qemu-xhci" if family == "q35" else "piix3-uhci"
    )
    if model == "none":
        return None
    driver = "piix3-usb-uhci" if model == "piix3-uhci" else model
    if driver == "piix3-usb-uhci":
        return driver, _FIXED
    return driver, None if found is None else found.address


def _controller_address(domain: Domain, kind: str) -> PciAddress | None:
    found = next((c for c in domain.controllers if c.type == kind and c.index == 0), None)
    return None if found is None else found.address


def _pci_address(disk: DiskConfig) -> PciAddress | None:
    return disk.address if isinstance(disk.address, PciAddress) else None


def _root_ports(domain: Domain) -> list[RootPort]:
    ports = []
    for c in domain.controllers:
        if c.type != "pci" or c.model != "pcie-root-port":
            continue
        if c.address is None:
            raise unsupported(
                f"pcie-root-port index {c.index} has no <address>: give its place on pcie.0 "
                "or leave the ports to the host manager",
                field="devices/controller",
                value=c.index,
            )
        port = c.port if c.port is not None else c.address.slot * 8 + c.address.function
        ports.append(RootPort(c.index, c.chassis or c.index, port, c.address))
    return ports


def _boot_indexes(domain: Domain, disks: list[DiskConfig]) -> dict[int, int]:
    """Per-device ``<boot order>``, else the first disk and cdrom by ``<os><boot dev>`` order
    (``hd`` when the domain names none)."""
    if any(d.boot_order is not None for d in disks):
        return {id(d): d.boot_order for d in disks if d.boot_order is not None}
    out: dict[int, int] = {}
    for position, dev in enumerate(domain.os.boot_devs or ("hd",), start=1):
        kind = {"hd": "disk", "cdrom": "cdrom"}.get(dev)
        first = next((d for d in disks if d.device == kind), None)
        if first is not None and id(first) not in out:
            out[id(first)] = position
    return out


def _place(
    family: str, disk: DiskConfig, number: int, pci: PciDevice | None, bootindex: int | None
) -> PlacedDisk:
    bus = disk_bus(disk)
    index = disk_index(disk.target_dev)
    node = f"libvirt-{number}"
    if bus == "virtio":
        return PlacedDisk(
            disk, bus, node, f"virtio-disk{index}", pci.bus if pci else "", None, pci, bootindex
        )
    drive = disk.address if isinstance(disk.address, DriveAddress) else None
    if bus == "sata":
        controller, unit = (drive.controller, drive.unit) if drive else divmod(index, SATA_PORTS)
        if controller != 0:
            raise unsupported(
                f"disk '{disk.target_dev}' needs a second SATA controller: at most "
                f"{SATA_PORTS} SATA disks are supported",
                field="devices/disk",
                value=disk.target_dev,
            )
        qemu_bus = f"ide.{unit}" if family == "q35" else f"sata0.{unit}"
        return PlacedDisk(disk, bus, node, f"sata0-0-{unit}", qemu_bus, None, None, bootindex)
    ide_bus, unit = (drive.bus, drive.unit) if drive else divmod(index, IDE_UNITS)
    if ide_bus > 1 or (drive is not None and drive.controller != 0):
        raise unsupported(
            f"disk '{disk.target_dev}' is beyond the PIIX3's two IDE buses (hda-hdd)",
            field="devices/disk",
            value=disk.target_dev,
        )
    return PlacedDisk(
        disk, bus, node, f"ide0-{ide_bus}-{unit}", f"ide.{ide_bus}", unit, None, bootindex
    )
