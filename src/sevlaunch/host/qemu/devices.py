"""The devices of the command line, in libvirt 9.0's order and JSON: PCIe root ports, the USB
controller, an i440fx's AHCI controller, each disk's ``-blockdev`` pair and ``-device``, the
serial ports' chardevs and ``isa-serial`` devices, ``-audiodev none`` and the balloon."""

from __future__ import annotations

from pathlib import PurePosixPath

from sevlaunch.host.domxml import Domain
from sevlaunch.host.logs import CONSOLE_LOG, serial_outputs, serial_ports
from sevlaunch.host.qemu.layout import Layout, PlacedDisk
from sevlaunch.host.qemu.pci import addr_text
from sevlaunch.host.qemu.plan import compact_json, esc


def device_args(domain: Domain, layout: Layout, log_dir: str | None) -> list[str]:
    argv: list[str] = []
    for port in layout.root_ports:
        props: dict[str, object] = {
            "driver": "pcie-root-port",
            "port": port.port,
            "chassis": port.chassis,
            "id": f"pci.{port.index}",
            "bus": "pcie.0",
        }
        if port.multifunction:
            props["multifunction"] = True
        props["addr"] = addr_text(port.address)
        argv += ["-device", compact_json(props)]
    if layout.usb is not None:
        driver, place = layout.usb
        usb = {"driver": driver, "id": "usb"}
        if place is not None:
            usb |= {"bus": place.bus, "addr": place.addr}
        argv += ["-device", compact_json(usb)]
    for sata_id, place in layout.sata:
        argv += [
            "-device",
            compact_json({"driver": "ahci", "id": sata_id, "bus": place.bus, "addr": place.addr}),
        ]
    for disk in layout.disks:
        argv += disk_args(disk)
    argv += serial_args(domain, log_dir)
    argv += ["-audiodev", compact_json({"id": "audio1", "driver": "none"})]
    if layout.balloon is not None:
        balloon = {"driver": "virtio-balloon-pci", "id": "balloon0"}
        argv += [
            "-device",
            compact_json(balloon | {"bus": layout.balloon.bus, "addr": layout.balloon.addr}),
        ]
    return argv


def blockdev_pair(
    node: str, path: str, *, read_only: bool, driver: str = "file", fmt: str = "raw"
) -> list[str]:
    """libvirt's protocol node (``NODE-storage``) and format node (``NODE-format``)."""
    storage = {
        "driver": driver,
        "filename": path,
        "node-name": f"{node}-storage",
        "auto-read-only": True,
        "discard": "unmap",
    }
    top = {
        "node-name": f"{node}-format",
        "read-only": read_only,
        "driver": fmt,
        "file": f"{node}-storage",
    }
    return ["-blockdev", compact_json(storage), "-blockdev", compact_json(top)]


def disk_args(placed: PlacedDisk) -> list[str]:
    disk = placed.disk
    driver = "host_device" if disk.type == "block" else "file"  # libvirt 9.0: cdroms too
    read_only = disk.readonly or disk.device == "cdrom"
    argv = blockdev_pair(
        placed.node,
        disk.source or "",
        read_only=read_only,
        driver=driver,
        fmt=disk.driver_type or "raw",
    )
    if placed.bus == "virtio":
        props: dict[str, object] = {"driver": "virtio-blk-pci"}
        if placed.pci is not None:
            props |= {"bus": placed.pci.bus, "addr": placed.pci.addr}
    else:
        props = {"driver": "ide-cd" if disk.device == "cdrom" else "ide-hd", "bus": placed.qemu_bus}
        if placed.unit is not None:
            props["unit"] = placed.unit
    props |= {"drive": f"{placed.node}-format", "id": placed.qdev_id}
    if placed.bootindex is not None:
        props["bootindex"] = placed.bootindex
    return [*argv, "-device", compact_json(props)]


def serial_args(domain: Domain, log_dir: str | None) -> list[str]:
    """Each port a ``charserialN`` chardev logged where :mod:`sevlaunch.host.logs` says, and
    an ``isa-serial`` with the port's ``<target port>`` as index. A domain without a port gets
    one logged to its console file (libvirt gives it none) when a log directory is known."""
    logs = PurePosixPath(log_dir) if log_dir is not None else None
    serials = serial_ports(domain)
    if logs is not None and not serials:
        console = f"logfile={esc(str(logs / CONSOLE_LOG))},logappend=on"
        return ["-chardev", f"null,id=charserial0,{console}", *_isa_serial(0, 0)]
    outputs = serial_outputs(domain, logs) if logs is not None else None
    argv: list[str] = []
    for index, serial in enumerate(serials):
        opts = [serial.type, f"id=charserial{index}"]
        if serial.type == "file" and serial.path:
            opts.append(f"path={esc(serial.path)}")
            if serial.append is not None:
                opts.append(f"append={'on' if serial.append else 'off'}")
        log: str | None = serial.log_file
        append = bool(serial.log_append)
        if outputs is not None:
            log, append = outputs[index].log, outputs[index].log_append
        if log is not None:
            opts += [f"logfile={esc(log)}", f"logappend={'on' if append else 'off'}"]
        argv += ["-chardev", ",".join(opts), *_isa_serial(index, serial.port or 0)]
    return argv


def _isa_serial(index: int, port: int) -> list[str]:
    props = {
        "driver": "isa-serial",
        "chardev": f"charserial{index}",
        "id": f"serial{index}",
        "index": port,
    }
    return ["-device", compact_json(props)]
