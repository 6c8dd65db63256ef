"""``-device``: the device models libvirt puts in an SEV guest, the buses they plug into and
make, and what the guest model needs from them (its disks and serial ports).

Machines bring their buses: q35 ``pcie.0`` and the six ports of its built-in AHCI (``ide.0`` ..
``ide.5``), i440fx ``pci.0`` and two IDE channels of two units. Devices add more
(``pcie-root-port`` its own, ``ahci`` six ports, USB controllers ``ID.0``). Nothing is emulated
beyond that bookkeeping: a disk is an image the guest model reads, a serial port a chardev it
writes to. Messages are QEMU's (qdev-monitor.c, hw/pci/pci.c, hw/ide/qdev.c).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline.block import image_file
from sevlaunch.vmm.cmdline.builder import Builder
from sevlaunch.vmm.cmdline.config import DeviceConfig, DiskImage, SerialPort
from sevlaunch.vmm.cmdline.opts import Props, opt_str, opt_uint, parse_props, take_str

PCI, PCIE, IDE, USB, ISA = "PCI", "PCIE", "IDE", "usb-bus", "ISA"


@dataclass(frozen=True)
class Model:
    """A device model: the bus kinds it plugs into (None: the machine's own, e.g. ISA) and the
    buses it makes (``(suffix, kind, units)``; an empty suffix names the bus after the id)."""

    plugs: tuple[str, ...] | None
    makes: tuple[tuple[str, str, int], ...] = ()
    disk: bool = False


MODELS: dict[str, Model] = {
    "pcie-root-port": Model((PCIE,), (("", PCIE, 1),)),
    "pci-bridge": Model((PCI, PCIE), (("", PCI, 32),)),
    "qemu-xhci": Model((PCI, PCIE), ((".0", USB, 15),)),
    "piix3-usb-uhci": Model((PCI, PCIE), ((".0", USB, 2),)),
    "ahci": Model((PCI, PCIE), tuple((f".{n}", IDE, 1) for n in range(6))),
    "virtio-blk-pci": Model((PCI, PCIE), disk=True),
    # libvirt places virtio on PCIe root ports only when these types exist (model
    # 'virtio-non-transitional'/'virtio-transitional' name them as drivers)
    "virtio-blk-pci-non-transitional": Model((PCI, PCIE), disk=True),
    "virtio-blk-pci-transitional": Model((PCI, PCIE), disk=True),
    "virtio-balloon-pci": Model((PCI, PCIE)),
    "ide-hd": Model((IDE,), disk=True),
    "ide-cd": Model((IDE,), disk=True),
    "isa-serial": Model(None),
}
MAX_ISA_SERIAL = 4


@dataclass
class Bus:
    name: str
    kind: str
    units: int
    used: dict[int, str] = field(default_factory=dict)


def device(b: Builder, arg: str) -> None:
    props, typed = parse_props(arg, "driver")
    driver = take_str(props, "driver")
    if driver not in MODELS:
        raise ValueError(f"'{driver}' is not a valid device model name")
    did = opt_str(props, "id")
    if did is not None and any(d.id == did for d in b.devices):
        raise ValueError(f"Duplicate ID '{did}' for device")
    bus = opt_str(props, "bus")
    for key in ("bus", "id"):
        props.pop(key, None)
    checked = _typed_props(props, typed)
    b.devices.append(DeviceConfig(driver, did, bus, tuple(checked.items())))


def _typed_props(props: Props, typed: bool) -> Props:
    """The integer properties as integers, whichever syntax gave them."""
    out = dict(props)
    for name in ("index", "bootindex", "unit", "port", "chassis"):
        value = opt_uint(props, name, typed, 32)
        if value is not None:
            out[name] = value
    return out


def machine_buses(machine: str | None) -> dict[str, Bus]:
    """The buses a machine type brings (``q35``/``pc-q35-*``, ``pc``/``pc-i440fx-*``)."""
    name = machine or "pc"
    if name == "q35" or name.startswith("pc-q35"):
        root = Bus("pcie.0", PCIE, 32, {0: "mch", 0x1F * 8: "ICH9-LPC", 0x1F * 8 + 2: "ich9-ahci"})
        root.used[0x1F * 8 + 3] = "ICH9-SMB"
        buses = [root] + [Bus(f"ide.{n}", IDE, 1) for n in range(6)]
    elif name == "pc" or name.startswith("pc-"):
        root = Bus("pci.0", PCI, 32, {0: "i440FX", 8: "PIIX3", 9: "piix3-ide", 11: "PIIX4_PM"})
        buses = [root, Bus("ide.0", IDE, 2), Bus("ide.1", IDE, 2)]
    else:
        buses = []
    return {bus.name: bus for bus in buses}


def resolve_devices(b: Builder) -> tuple[list[DiskImage], list[SerialPort]]:
    """Plug every device in order; return the disks and serial ports the guest sees."""
    buses = machine_buses(b.cfg.machine_type)
    disks: list[DiskImage] = []
    serials: list[SerialPort] = []
    for dev in b.devices:
        where = f"-device {dev.driver}" + (f",id={dev.id}" if dev.id else "")
        try:
            _plug(dev, buses)
            if MODELS[dev.driver].disk:
                disk = _disk(b, dev)
                if disk is not None:
                    disks.append(disk)
            elif dev.driver == "isa-serial":
                serials.append(_serial(b, dev, serials))
        except ValueError as exc:
            raise CommandLineError(where, str(exc), value=dev.id or dev.driver) from exc
    return disks, serials


def _plug(dev: DeviceConfig, buses: dict[str, Bus]) -> None:
    model = MODELS[dev.driver]
    if model.plugs is not None:
        bus = _find_bus(dev, model.plugs, buses)
        _take_slot(dev, bus)
    for suffix, kind, units in model.makes:
        name = (dev.id or dev.driver) + suffix
        buses[name] = Bus(name, kind, units)


def _find_bus(dev: DeviceConfig, kinds: tuple[str, ...], buses: dict[str, Bus]) -> Bus:
    if dev.bus is None:
        for bus in buses.values():
            if bus.kind in kinds and len(bus.used) < bus.units:
                return bus
        raise ValueError(f"No '{kinds[0]}' bus found for device '{dev.driver}'")
    named = buses.get(dev.bus)
    if named is None:
        raise ValueError(f"Bus '{dev.bus}' not found")
    if named.kind not in kinds:
        raise ValueError(f"Device '{dev.driver}' can't go on {named.kind} bus")
    return named


def _take_slot(dev: DeviceConfig, bus: Bus) -> None:
    """PCI slot/function from ``addr``, an IDE unit from ``unit``; each used once."""
    label = f"{dev.driver},id={dev.id}" if dev.id else dev.driver
    if bus.kind in (PCI, PCIE):
        slot, function = _pci_addr(dev.prop("addr"), bus)
        key = slot * 8 + function
        if key in bus.used:
            raise ValueError(
                f"PCI: slot {slot} function {function} not available for {dev.driver}, in use "
                f"by {bus.used[key]}"
            )
    else:
        unit = dev.prop("unit")
        key = (
            min(set(range(bus.units)) - set(bus.used), default=bus.units) if unit is None else unit
        )
        if key >= bus.units:
            raise ValueError(
                f"Can't create IDE unit {key}, bus supports only {bus.units} units"
                if bus.kind == IDE
                else f"Bus '{bus.name}' is full"
            )
        if key in bus.used:
            raise ValueError(f"IDE unit {key} is in use")
    bus.used[key] = label


def _pci_addr(addr: object, bus: Bus) -> tuple[int, int]:
    """``addr=SLOT[.FUNCTION]`` in hex, or the first slot with no function in use."""
    if addr is None:
        taken = {key // 8 for key in bus.used}
        slot = next((n for n in range(bus.units) if n not in taken), None)
        if slot is None:
            raise ValueError(f"PCI: no slot/function available for bus {bus.name}, all in use")
        return slot, 0
    text = str(addr)
    slot_text, _, function_text = text.partition(".")
    try:
        slot = int(slot_text, 16)
        function = int(function_text, 16) if function_text else 0
    except ValueError:
        raise ValueError(f"Property 'addr' doesn't take value '{text}'") from None  # QEMU's text
    if not (0 <= slot < 32 and 0 <= function < 8):
        raise ValueError(f"Property 'addr' doesn't take value '{text}'")
    if slot >= bus.units:
        raise ValueError(f"PCI: slot {slot} not available for bus {bus.name}")
    return slot, function


def _disk(b: Builder, dev: DeviceConfig) -> DiskImage | None:
    node = dev.prop("drive")
    if node is None:
        if dev.driver == "ide-cd":
            return None  # an empty tray
        raise ValueError("drive property not set")
    drive = next((d for d in b.cfg.drives if d.id == node and d.interface == "none"), None)
    if drive is not None:
        return DiskImage(drive.file, dev.driver, drive.format, drive.readonly, dev.id)
    try:
        filename, top = image_file(b, str(node))
    except ValueError as exc:
        raise ValueError(f"Property '{dev.driver}.drive' can't find value '{node}'") from exc
    return DiskImage(
        file=filename,
        driver=dev.driver,
        format=top.driver if top.file is not None else "raw",
        readonly=top.read_only,
        id=dev.id,
        bootindex=dev.prop("bootindex"),
    )


def _serial(b: Builder, dev: DeviceConfig, ports: list[SerialPort]) -> SerialPort:
    cid = dev.prop("chardev")
    chardev = b.chardevs.get(str(cid)) if cid is not None else None
    if chardev is None:
        raise ValueError(f"Property 'isa-serial.chardev' can't find value '{cid}'")
    index = dev.prop("index")
    index = len(ports) if index is None else index
    if index >= MAX_ISA_SERIAL:
        raise ValueError(f"Max. supported number of ISA serial ports is {MAX_ISA_SERIAL}.")
    if any(p.index == index for p in ports):
        raise ValueError(f"isa-serial index {index} is in use")
    return SerialPort(index, chardev)
