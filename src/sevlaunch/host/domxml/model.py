"""The domain and its ``<os>`` and ``<cpu>`` as frozen dataclasses, checked on construction."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml.checks import (
    BOOT_DEVICES,
    CLOCK_OFFSETS,
    CPU_MODEL_NAME,
    CPU_MODES,
    MACHINE_NAME,
    MAX_MEMORY_BYTES,
    OS_TYPES,
    U32,
    VIRT_TYPES,
    check_choice,
    check_name,
    check_path,
    check_text,
    xml_error,
)
from sevlaunch.host.domxml.devices import BalloonConfig, ControllerConfig, DiskConfig, SerialConfig
from sevlaunch.host.domxml.security import LaunchSecurity


@dataclass(frozen=True, kw_only=True)
class Loader:
    """``<os><loader>``: firmware image path; ``type`` is ``rom`` (QEMU ``-bios``) or ``pflash``."""

    path: str | None = None
    readonly: bool | None = None
    type: str | None = None
    stateless: bool | None = None

    def __post_init__(self) -> None:
        check_path("os/loader", self.path)
        check_choice("os/loader/@type", self.type, ("rom", "pflash"))


@dataclass(frozen=True, kw_only=True)
class Nvram:
    """``<os><nvram>``: the per-guest variable store (breaks SEV measurement; kept for others)."""

    path: str | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        check_path("os/nvram", self.path)
        check_path("os/nvram/@template", self.template)


@dataclass(frozen=True, kw_only=True)
class OsConfig:
    """``<os>``: guest type, machine, firmware and direct kernel boot."""

    type: str = "hvm"
    arch: str | None = None
    machine: str | None = None
    firmware: str | None = None
    loader: Loader | None = None
    nvram: Nvram | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    boot_devs: tuple[str, ...] = ()  # <boot dev=...>, in order

    def __post_init__(self) -> None:
        check_choice("os/type", self.type, sorted(OS_TYPES))
        if self.machine is not None and not MACHINE_NAME.fullmatch(self.machine):
            raise xml_error(
                f"invalid machine type '{self.machine}': expected letters, digits, '_', '.', '-'",
                field="os/type/@machine",
                value=self.machine,
            )
        if self.arch is not None and not re.fullmatch(r"[a-z0-9_]+", self.arch):
            raise xml_error(f"unknown architecture '{self.arch}'", field="os/type/@arch")
        check_choice("os/@firmware", self.firmware, ("bios", "efi"))
        check_path("os/kernel", self.kernel)
        check_path("os/initrd", self.initrd)
        check_text("os/cmdline", self.cmdline)
        for dev in self.boot_devs:
            check_choice("os/boot/@dev", dev, BOOT_DEVICES)


@dataclass(frozen=True, kw_only=True)
class CpuConfig:
    """``<cpu>``: only the mode and model reach the QEMU ``-cpu`` option."""

    mode: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        check_choice("cpu/@mode", self.mode, sorted(CPU_MODES))
        if self.model is not None and not CPU_MODEL_NAME.fullmatch(self.model):
            # What reaches -cpu is a bare model name: ',' '=' '+' would be QEMU options.
            raise DomainXMLError(
                "unsupported configuration",
                f"CPU model {self.model} is not supported by hypervisor",
                field="cpu/model",
                value=self.model,
            )


@dataclass(frozen=True)
class FwCfgEntry:
    """``<sysinfo type='fwcfg'><entry name=...>``: a blob QEMU hands the guest (``-fw_cfg``),
    its text or a file's content; libvirt wants names under ``opt/``."""

    name: str
    value: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        check_text("sysinfo/entry/@name", self.name)
        if not self.name.startswith("opt/"):
            raise DomainXMLError(
                "unsupported configuration",
                f"Unsupported fwcfg entry name '{self.name}': names must start with 'opt/'",
                field="sysinfo/entry/@name",
                value=self.name,
            )
        if (self.value is None) == (self.file is None):
            raise xml_error(
                f"Firmware entry '{self.name}' must have either value or 'file' attribute",
                field="sysinfo/entry",
                value=self.name,
            )
        check_text("sysinfo/entry", self.value)
        check_path("sysinfo/entry/@file", self.file)


@dataclass(frozen=True, kw_only=True)
class Domain:
    """A libvirt domain. ``template`` is the document it was parsed from (not compared)."""

    name: str
    memory_kib: int
    type: str = "kvm"
    uuid: uuid.UUID | None = None
    current_memory_kib: int | None = None
    vcpus: int = 1
    os: OsConfig = field(default_factory=OsConfig)
    cpu: CpuConfig | None = None
    launch_security: LaunchSecurity | None = None
    fw_cfg: tuple[FwCfgEntry, ...] = ()  # <sysinfo type='fwcfg'>
    emulator: str | None = None
    disks: tuple[DiskConfig, ...] = ()
    serials: tuple[SerialConfig, ...] = ()
    controllers: tuple[ControllerConfig, ...] = ()
    memballoon: BalloonConfig | None = None
    acpi: bool = False  # <features><acpi/>
    clock_offset: str | None = None  # <clock offset=...>; libvirt's default is utc
    template: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.type not in VIRT_TYPES:
            raise xml_error(
                f"Invalid value for attribute 'type' in element 'domain': '{self.type}'. "
                f"Expected one of: {', '.join(sorted(VIRT_TYPES))}",
                field="domain/@type",
                value=self.type,
            )
        check_name(self.name)
        for name, kib in (("memory", self.memory_kib), ("currentMemory", self.current_memory_kib)):
            if kib is not None and not 0 < kib * 1024 <= MAX_MEMORY_BYTES:
                raise xml_error(
                    f"Memory size must be specified via <memory> or in the <numa> "
                    f"configuration: <{name}> of {kib} KiB is out of range",
                    field=name,
                    value=kib,
                )
        if self.current_memory_kib is not None and self.current_memory_kib > self.memory_kib:
            raise xml_error(
                f"currentMemory ({self.current_memory_kib} KiB) exceeds memory "
                f"({self.memory_kib} KiB); libvirt would clamp it, give at most memory",
                field="currentMemory",
                value=self.current_memory_kib,
            )
        if not 0 < self.vcpus <= U32:
            raise xml_error(
                f"maximum vcpus count must be an integer greater than 0, got {self.vcpus}",
                field="vcpu",
                value=self.vcpus,
            )
        check_text("devices/emulator", self.emulator)
        check_choice("clock/@offset", self.clock_offset, sorted(CLOCK_OFFSETS))

    def device_elements(self) -> tuple[tuple[str, str | None], ...]:
        """Every element under ``<devices>`` as (tag, type attribute), the unmodelled ones too,
        in document order: what define-time validation looks at."""
        if self.template is None:
            modelled = [("disk", d.type) for d in self.disks]
            modelled += [("controller", c.type) for c in self.controllers]
            modelled += [("serial", s.type) for s in self.serials]
            if self.memballoon is not None:
                modelled.append(("memballoon", self.memballoon.model))
            return tuple(modelled)
        from sevlaunch.host.domxml.xmlutil import parse_document

        devices = parse_document(self.template, "domain", error=xml_error).find("devices")
        if devices is None:
            return ()
        return tuple(
            (str(el.tag), el.get("model") if el.tag == "memballoon" else el.get("type"))
            for el in devices
            if isinstance(el.tag, str)
        )

    @property
    def is_sev(self) -> bool:
        """True when the guest is an SEV (or SEV-ES) guest."""
        return self.launch_security is not None and self.launch_security.type == "sev"

    @classmethod
    def from_xml(cls, data: str | bytes) -> Domain:
        """Parse a domain document; raise :class:`DomainXMLError` as libvirt would."""
        from sevlaunch.host.domxml.parse import parse_domain  # parse builds this class
        from sevlaunch.host.domxml.xmlutil import parse_document

        root = parse_document(data, "domain", error=xml_error)
        return parse_domain(root)

    def to_xml(self) -> str:
        """Write the domain, starting from the parsed document when there is one."""
        if self.template is not None:
            from sevlaunch.host.domxml.xmlutil import parse_document

            root = parse_document(self.template, "domain", error=xml_error)
        else:
            root = etree.Element("domain")
        from sevlaunch.host.domxml.write import write_domain  # the writer reads this class

        write_domain(root, self)
        etree.indent(root, space="  ")
        return str(etree.tostring(root, encoding="unicode")) + "\n"
