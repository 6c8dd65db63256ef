"""The devices an SEV guest uses: ``<disk>`` and ``<serial>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sevlaunch.host.domxml.checks import (
    CHARDEV_TYPES,
    DISK_BUSES,
    DISK_DEVICES,
    DISK_TYPES,
    TARGET_DEV,
    check_choice,
    check_path,
    unsupported,
    xml_error,
)


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
