"""The modelled devices written into ``<devices>`` in place: disks (with ``<boot order>`` and
``<address>``), controllers, serial ports and the memory balloon."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.host.domxml.checks import words
from sevlaunch.host.domxml.devices import (
    Address,
    BalloonConfig,
    ControllerConfig,
    DiskConfig,
    PciAddress,
    SerialConfig,
)
from sevlaunch.host.domxml.xmledit import ensure, insert, set_attr, set_text, sync_list

if TYPE_CHECKING:
    from sevlaunch.host.domxml.model import Domain

DEV_ORDER = words(
    "emulator disk filesystem controller lease hostdev redirdev smartcard interface "
    "input sound audio video graphics parallel serial console channel tpm memballoon"
)
_DISK_ORDER = words("driver source backingStore target iotune boot readonly shareable address")
_SERIAL_ORDER = words("source protocol log target alias address")
_CONTROLLER_ORDER = words("model driver target alias address")


def write_devices(root: etree._Element, dom: Domain, devices: etree._Element | None) -> None:
    """The modelled devices into ``<devices>`` (``None`` when the domain has none to write)."""
    if devices is None:
        devices = root.find("devices")
        if devices is None:
            return
    set_text(devices, "emulator", dom.emulator, DEV_ORDER)
    sync_list(devices, "disk", dom.disks, _write_disk, DEV_ORDER)
    sync_list(devices, "controller", dom.controllers, _write_controller, DEV_ORDER)
    sync_list(devices, "serial", dom.serials, _write_serial, DEV_ORDER)
    _write_memballoon(devices, dom.memballoon)


def _write_disk(el: etree._Element, disk: DiskConfig) -> None:
    el.set("type", disk.type)
    el.set("device", disk.device)
    if disk.driver_type is not None:
        driver = el.find("driver")
        if driver is None:
            driver = etree.Element("driver", name="qemu")
            insert(el, driver, _DISK_ORDER)
        driver.set("type", disk.driver_type)
    else:
        driver = el.find("driver")
        if driver is not None:
            driver.attrib.pop("type", None)
    _write_disk_source(el, disk)
    target = ensure(el, "target", _DISK_ORDER)
    target.set("dev", disk.target_dev)
    set_attr(target, "bus", disk.target_bus)
    if disk.readonly and el.find("readonly") is None:
        insert(el, etree.Element("readonly"), _DISK_ORDER)
    elif not disk.readonly:
        set_text(el, "readonly", None, _DISK_ORDER)
    boot = set_text(el, "boot", None if disk.boot_order is None else "", _DISK_ORDER)
    if boot is not None:
        boot.text = None
        boot.set("order", str(disk.boot_order))
    write_address(el, disk.address, _DISK_ORDER)


def _write_disk_source(el: etree._Element, disk: DiskConfig) -> None:
    source = el.find("source")
    if disk.type not in ("file", "block"):
        return
    if disk.source is None:
        if source is not None:
            source.attrib.pop("file", None)
            source.attrib.pop("dev", None)
        return
    if source is None:
        source = etree.Element("source")
        insert(el, source, _DISK_ORDER)
    keep, drop = ("file", "dev") if disk.type == "file" else ("dev", "file")
    source.attrib.pop(drop, None)
    source.set(keep, disk.source)


def _write_serial(el: etree._Element, serial: SerialConfig) -> None:
    el.set("type", serial.type)
    source = el.find("source")
    if serial.path is None:
        if source is not None:
            source.attrib.pop("path", None)
    else:
        if source is None:
            source = etree.Element("source")
            el.insert(0, source)
        source.set("path", serial.path)
    if source is not None:
        if serial.append is None:
            source.attrib.pop("append", None)
        else:
            source.set("append", "on" if serial.append else "off")
    _write_serial_log(el, serial)
    target = el.find("target")
    if serial.port is not None:
        ensure(el, "target", _SERIAL_ORDER).set("port", str(serial.port))
    elif target is not None:
        target.attrib.pop("port", None)


def _write_serial_log(el: etree._Element, serial: SerialConfig) -> None:
    log = el.find("log")
    if serial.log_file is None:
        if log is not None:
            el.remove(log)
        return
    if log is None:
        log = etree.Element("log")
        insert(el, log, _SERIAL_ORDER)
    log.set("file", serial.log_file)
    if serial.log_append is None:
        log.attrib.pop("append", None)
    else:
        log.set("append", "on" if serial.log_append else "off")


def _write_controller(el: etree._Element, controller: ControllerConfig) -> None:
    el.set("type", controller.type)
    el.set("index", str(controller.index))
    set_attr(el, "model", controller.model)
    target = el.find("target")
    if controller.chassis is None and controller.port is None:
        if target is not None:
            target.attrib.pop("chassis", None)
            target.attrib.pop("port", None)
    else:
        target = ensure(el, "target", _CONTROLLER_ORDER)
        set_attr(target, "chassis", None if controller.chassis is None else str(controller.chassis))
        set_attr(target, "port", None if controller.port is None else f"{controller.port:#x}")
    write_address(el, controller.address, _CONTROLLER_ORDER)


def _write_memballoon(devices: etree._Element, balloon: BalloonConfig | None) -> None:
    if balloon is None:
        set_text(devices, "memballoon", None, DEV_ORDER)
        return
    el = ensure(devices, "memballoon", DEV_ORDER)
    el.set("model", balloon.model)
    write_address(el, balloon.address, ("address",))


def write_address(el: etree._Element, address: Address | None, order: tuple[str, ...]) -> None:
    """libvirt's formatter: PCI numbers in hex (``0x0000``, ``0x00``), drive numbers decimal."""
    old = el.find("address")
    if old is not None:
        el.remove(old)
    if address is None:
        return
    if isinstance(address, PciAddress):
        new = etree.Element(
            "address",
            type="pci",
            domain=f"0x{address.domain:04x}",
            bus=f"0x{address.bus:02x}",
            slot=f"0x{address.slot:02x}",
            function=f"0x{address.function:x}",
        )
        if address.multifunction is not None:
            new.set("multifunction", "on" if address.multifunction else "off")
    else:
        new = etree.Element(
            "address",
            type="drive",
            controller=str(address.controller),
            bus=str(address.bus),
            target=str(address.target),
            unit=str(address.unit),
        )
    insert(el, new, order)
