"""``<devices>`` children read into the model: disks, serial ports, controllers, the memory
balloon, and the ``<address>`` and ``<boot order>`` each may carry, as libvirt reads them."""

from __future__ import annotations

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.host.domxml.checks import (
    CHARDEV_TYPES,
    CONTROLLER_TYPES,
    DISK_BUSES,
    DISK_DEVICES,
    DISK_TYPES,
    MEMBALLOON_MODELS,
    xml_error,
)
from sevlaunch.host.domxml.devices import (
    Address,
    BalloonConfig,
    ControllerConfig,
    DiskConfig,
    DriveAddress,
    PciAddress,
    SerialConfig,
)
from sevlaunch.host.domxml.xmlutil import parse_uint, prop_choice, prop_onoff

ADDRESS_TYPES = ("pci", "drive", "virtio-serial", "ccid", "usb", "spapr-vio", "ccw", "isa")


def parse_disk(el: etree._Element) -> DiskConfig:
    disk_type = prop_choice(el, "type", sorted(DISK_TYPES)) or "file"
    source_el = el.find("source")
    source = None
    if source_el is not None and disk_type in ("file", "block"):
        source = source_el.get("file" if disk_type == "file" else "dev")
    target = el.find("target")
    target_dev = None if target is None else target.get("dev")
    if not target_dev:
        raise xml_error(
            f"missing target information for device {source or '<disk>'}: add "
            "<target dev='vda' bus='virtio'/>",
            field="disk/target/@dev",
        )
    driver = el.find("driver")
    boot = el.find("boot")
    return DiskConfig(
        type=disk_type,
        device=prop_choice(el, "device", sorted(DISK_DEVICES)) or "disk",
        source=source,
        target_dev=target_dev,
        target_bus=prop_choice(target, "bus", sorted(DISK_BUSES)) if target is not None else None,
        driver_type=None if driver is None else driver.get("type"),
        readonly=el.find("readonly") is not None,
        boot_order=None if boot is None else _uint(boot, "order", "disk/boot/@order"),
        address=parse_address(el.find("address")),
    )


def parse_serial(el: etree._Element) -> SerialConfig:
    chardev = prop_choice(el, "type", sorted(CHARDEV_TYPES)) or "null"
    source = el.find("source")
    log = el.find("log")
    target = el.find("target")
    return SerialConfig(
        type=chardev,
        path=None if source is None else source.get("path"),
        append=prop_onoff(source, "append"),
        log_file=None if log is None else log.get("file"),
        log_append=prop_onoff(log, "append"),
        port=None
        if target is None or target.get("port") is None
        else _uint(target, "port", "serial/target/@port"),
    )


def parse_controller(el: etree._Element) -> ControllerConfig:
    kind = prop_choice(el, "type", sorted(CONTROLLER_TYPES), required=True) or "pci"
    target = el.find("target")
    address = parse_address(el.find("address"))
    if address is not None and not isinstance(address, PciAddress):
        raise xml_error(
            f"controller '{kind}' index {el.get('index', '0')} needs a PCI address",
            field="controller/address",
        )
    return ControllerConfig(
        type=kind,
        index=0 if el.get("index") is None else _uint(el, "index", "controller/@index"),
        model=el.get("model"),
        address=address,
        chassis=_target_uint(target, "chassis"),
        port=_target_uint(target, "port"),
    )


def parse_memballoon(el: etree._Element | None) -> BalloonConfig | None:
    if el is None:
        return None
    model = prop_choice(el, "model", sorted(MEMBALLOON_MODELS), required=True) or "virtio"
    address = parse_address(el.find("address"))
    if address is not None and not isinstance(address, PciAddress):
        raise xml_error("memballoon needs a PCI address", field="memballoon/address")
    return BalloonConfig(model=model, address=address)


def parse_address(el: etree._Element | None) -> Address | None:
    """libvirt's ``<address>``: ``pci`` (hex or decimal numbers) or ``drive``."""
    if el is None:
        return None
    kind = prop_choice(el, "type", ADDRESS_TYPES, required=True)
    if kind == "pci":
        return PciAddress(
            domain=_address_number(el, "domain"),
            bus=_address_number(el, "bus"),
            slot=_address_number(el, "slot"),
            function=_address_number(el, "function"),
            multifunction=prop_onoff(el, "multifunction"),
        )
    if kind == "drive":
        return DriveAddress(
            controller=_address_number(el, "controller"),
            bus=_address_number(el, "bus"),
            target=_address_number(el, "target"),
            unit=_address_number(el, "unit"),
        )
    raise xml_error(
        f"address type '{kind}' is not supported here: use type 'pci' or 'drive'",
        field="address/@type",
        value=kind,
    )


def _address_number(el: etree._Element, name: str) -> int:
    text = el.get(name)
    if text is None:
        return 0
    value = parse_uint(text, base=16 if text.lower().startswith("0x") else 10)
    if value is None:
        raise xml_error(f"Cannot parse <address> '{name}' attribute", field=f"address/@{name}")
    return value


def _uint(el: etree._Element, name: str, where: str) -> int:
    text = el.get(name) or ""
    value = parse_uint(text)
    if value is None:
        raise xml_error(f"Cannot parse {where} '{text}'", field=where, value=text)
    return value


def _target_uint(target: etree._Element | None, name: str) -> int | None:
    if target is None or target.get(name) is None:
        return None
    text = target.get(name) or ""
    value = parse_uint(text, base=16 if text.lower().startswith("0x") else 10)
    if value is None:
        raise xml_error(f"Invalid target {name} '{text}'", field=f"controller/target/@{name}")
    return value
