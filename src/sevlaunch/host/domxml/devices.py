"""The devices an SEV guest uses: ``<disk>``, ``<serial>``, ``<controller>``, ``<memballoon>``,
and the ``<address>`` libvirt gives each (a PCI slot, or a drive on a disk controller)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sevlaunch.host.domxml.checks import (
    CHARDEV_TYPES,
    CONTROLLER_TYPES,
    DISK_BUSES,
    DISK_DEVICES,
    DISK_TYPES,
    MEMBALLOON_MODELS,
    TARGET_DEV,
    U32,
    check_choice,
    check_path,
    unsupported,
    xml_error,
)


@dataclass(frozen=True, kw_only=True)
class PciAddress:
    """``<address type='pci' domain= bus= slot= function= multifunction=>``."""

    bus: int = 0
    slot: int = 0
    function: int = 0
    domain: int = 0
    multifunction: bool | None = None

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("domain", self.domain, 0xFFFF),
            ("bus", self.bus, 0xFF),
            ("slot", self.slot, 0x1F),
            ("function", self.function, 0x7),
        ):
            if not 0 <= value <= limit:
                raise xml_error(
                    f"Invalid PCI address {name} {value:#x}, must be <= {limit:#x}",
                    field=f"address/@{name}",
                    value=value,
                )


@dataclass(frozen=True, kw_only=True)
class DriveAddress:
    """``<address type='drive' controller= bus= target= unit=>``: a disk's place on its bus."""

    controller: int = 0
    bus: int = 0
    target: int = 0
    unit: int = 0

    def __post_init__(self) -> None:
        for name in ("controller", "bus", "target", "unit"):
            value = getattr(self, name)
            if not 0 <= value <= U32:
                raise xml_error(f"invalid drive address {name} '{value}'", field=f"address/@{name}")


Address = PciAddress | DriveAddress


@dataclass(frozen=True, kw_only=True)
class DiskConfig:
    """``<disk>``: for SEV guests a file-backed image (encrypted inside the guest)."""

    target_dev: str
    source: str | None = None
    type: str = "file"
    device: str = "disk"
    target_bus: str | None = None
    driver_type: str | None = None
    readonly: bool = False
    boot_order: int | None = None
    address: Address | None = None

    def __post_init__(self) -> None:
        check_choice("disk/@type", self.type, sorted(DISK_TYPES))
        check_choice("disk/@device", self.device, sorted(DISK_DEVICES))
        check_choice("disk/target/@bus", self.target_bus, sorted(DISK_BUSES))
        if not TARGET_DEV.fullmatch(self.target_dev):
            raise xml_error(
                f"invalid disk target '{self.target_dev}': expected a name such as 'vda'",
                field="disk/target/@dev",
                value=self.target_dev,
            )
        if self.source is not None and self.type not in ("file", "block"):
            raise unsupported(
                f"disk type '{self.type}' has no file source; use type 'file' or 'block'",
                field="disk/source",
            )
        check_path("disk/source", self.source)
        if self.driver_type is not None and not re.fullmatch(r"[a-z0-9]+", self.driver_type):
            raise xml_error(f"unknown driver format value '{self.driver_type}'")


@dataclass(frozen=True, kw_only=True)
class SerialConfig:
    """``<serial>``: the guest console, a pty or a file (``path``); ``log_file`` is libvirt's
    ``<log file=... append=...>``, a copy of everything the port sends."""

    type: str = "pty"
    path: str | None = None
    log_file: str | None = None
    log_append: bool | None = None
    port: int | None = None  # <target port=N>: the guest's ttySN
    append: bool | None = None  # <source append='on'>: a file port keeps what the file held

    def __post_init__(self) -> None:
        check_choice("serial/@type", self.type, sorted(CHARDEV_TYPES))
        check_path("serial/source/@path", self.path)
        check_path("serial/log/@file", self.log_file)
        if self.type == "file" and not self.path:
            raise xml_error(
                "Missing source path attribute for char device: a 'file' serial needs "
                "<source path='/var/log/...'/>",
                field="serial/source/@path",
            )


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """``<controller type= index= model=>``; a PCIe root port's ``<target chassis= port=>``."""

    type: str
    index: int = 0
    model: str | None = None
    address: PciAddress | None = None
    chassis: int | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        check_choice("controller/@type", self.type, sorted(CONTROLLER_TYPES))
        if not 0 <= self.index <= U32:
            raise xml_error(
                f"Cannot parse controller index {self.index}", field="controller/@index"
            )


@dataclass(frozen=True, kw_only=True)
class BalloonConfig:
    """``<memballoon model=>``: libvirt adds a virtio one when the domain has none."""

    model: str = "virtio"
    address: PciAddress | None = None

    def __post_init__(self) -> None:
        check_choice("memballoon/@model", self.model, sorted(MEMBALLOON_MODELS))
