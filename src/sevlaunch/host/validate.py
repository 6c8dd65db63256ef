"""Define-time validation: what libvirt's QEMU driver refuses when a domain is defined, with its
error classes and words, plus what the sevlaunch host manager cannot run (said as libvirt says
a QEMU binary cannot).

libvirt checks a domain at define against the capabilities of its QEMU binary (qemuValidate*);
here the capabilities are the host manager's: SEV when the hypervisor's probe found it, the
devices :mod:`sevlaunch.host.qemu` builds a command line for. Refusing at define rather than at
start means a mistake shows when it is made, and a stored definition can always be started.
"""

from __future__ import annotations

from collections.abc import Iterable

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import DiskConfig, Domain

#: launchSecurity types the host manager can start, and libvirt's words for the others (lift a
#: type by adding it here once the command line and the launch support it).
LAUNCH_SECURITY_SUPPORTED = frozenset({"sev", "sev-snp"})
_LAUNCH_SECURITY_NAMES = {"sev": "SEV", "sev-snp": "SEV SNP", "s390-pv": "S390 PV"}

#: <devices> children the command line builds something for (or that need nothing: ps2 input)
DEVICE_TAGS = frozenset(
    {"emulator", "disk", "controller", "serial", "console", "input", "memballoon", "audio"}
)
CONTROLLERS = {"usb", "sata", "ide", "pci"}
USB_MODELS = {"q35": {"qemu-xhci", "none"}, "pc": {"piix3-uhci", "qemu-xhci", "none"}}
PCI_MODELS = {"pcie-root", "pci-root", "pcie-root-port"}
SERIAL_TYPES = ("pty", "file", "null")
DISK_BUSES = ("virtio", "sata", "ide")


def unsupported(detail: str, *, field: str, value: object = None) -> DomainXMLError:
    return DomainXMLError("unsupported configuration", detail, field=field, value=value)


def machine_family(domain: Domain) -> str:
    """``q35`` or ``pc`` (i440fx): the two machine types an SEV guest runs on."""
    machine = domain.os.machine or "pc"
    if machine == "q35" or machine.startswith("pc-q35"):
        return "q35"
    if machine == "pc" or machine.startswith(("pc-i440fx", "pc-")):
        return "pc"
    raise unsupported(
        f"machine type '{machine}' is not supported: use q35 (pc-q35-*) or pc (pc-i440fx-*)",
        field="os/type/@machine",
        value=machine,
    )


def validate_define(domain: Domain, *, no_sev: str | None = None) -> None:
    """Everything libvirt would refuse at define; ``no_sev``: why the hypervisor's probe found
    no SEV (``None``: it did)."""
    _check_driver(domain)
    family = machine_family(domain)
    _check_launch_security(domain, no_sev)
    _check_firmware(domain)
    _check_cpu(domain)
    _check_devices(domain, family)


def _check_driver(domain: Domain) -> None:
    if domain.type not in ("kvm", "qemu"):
        raise unsupported(
            f"domain type '{domain.type}' is not handled by the QEMU driver; use 'kvm' (or "
            "'qemu' for TCG)",
            field="domain/@type",
            value=domain.type,
        )
    if domain.os.type != "hvm":
        raise unsupported(
            f"OS type '{domain.os.type}' is not supported by the QEMU driver; use 'hvm'",
            field="os/type",
            value=domain.os.type,
        )
    if domain.os.arch not in (None, "x86_64"):
        raise unsupported(
            f"architecture '{domain.os.arch}' is not supported: SEV guests are x86_64",
            field="os/type/@arch",
            value=domain.os.arch,
        )


def _check_launch_security(domain: Domain, no_sev: str | None) -> None:
    lsec = domain.launch_security
    if lsec is None:
        return
    name = _LAUNCH_SECURITY_NAMES.get(lsec.type, lsec.type)
    # libvirt 9.0's qemuValidateDomainDef words: the binary's capabilities lack the type
    if lsec.type not in LAUNCH_SECURITY_SUPPORTED:
        raise unsupported(
            f"{name} launch security is not supported with this QEMU binary",
            field="launchSecurity/@type",
            value=lsec.type,
        )
    if no_sev is not None:
        raise unsupported(
            f"{name} launch security is not supported with this QEMU binary ({no_sev})",
            field="launchSecurity/@type",
            value=lsec.type,
        )


def _check_firmware(domain: Domain) -> None:
    loader = domain.os.loader
    if domain.os.firmware is not None:
        raise unsupported(
            f"firmware autoselection (<os firmware='{domain.os.firmware}'>) is not supported by "
            "the sevlaunch host manager: name the image, e.g. "
            "<loader type='rom'>/usr/share/OVMF/OVMF.amdsev.fd</loader>",
            field="os/@firmware",
            value=domain.os.firmware,
        )
    if loader is None:
        return
    if loader.path is None:
        raise DomainXMLError(  # libvirt's VIR_ERR_XML_DETAIL (qemuValidateDomainDefBoot)
            "XML error",
            "no loader path specified and firmware auto selection disabled",
            field="os/loader",
        )
    if loader.type == "pflash" and not domain.acpi:
        raise unsupported("UEFI requires ACPI on this architecture", field="features/acpi")


def _check_cpu(domain: Domain) -> None:
    cpu = domain.cpu
    if cpu is not None and cpu.mode == "host-passthrough" and domain.type == "qemu":
        raise unsupported(
            "CPU mode 'host-passthrough' for x86_64 qemu domain on x86_64 host is not supported "
            "by hypervisor",
            field="cpu/@mode",
            value=cpu.mode,
        )


def _check_devices(domain: Domain, family: str) -> None:
    for tag, kind in domain.device_elements():
        if tag not in DEVICE_TAGS:
            raise unsupported(
                f"device <{tag}> is not supported by the sevlaunch host manager: an SEV guest "
                f"here has {', '.join(sorted(DEVICE_TAGS - {'emulator', 'audio'}))}",
                field=f"devices/{tag}",
                value=kind,
            )
        if tag == "console" and kind not in (None, "pty"):
            raise unsupported(
                f"console type '{kind}' is not supported: use 'pty'",
                field="devices/console/@type",
                value=kind,
            )
    for controller in domain.controllers:
        _check_controller(controller.type, controller.model, family)
    _check_disks(domain.disks, family)
    for serial in domain.serials:
        if serial.type not in SERIAL_TYPES:
            raise unsupported(
                f"serial type '{serial.type}' is not supported: use "
                f"{', '.join(repr(t) for t in SERIAL_TYPES)}",
                field="devices/serial/@type",
                value=serial.type,
            )


def _check_controller(kind: str, model: str | None, family: str) -> None:
    if kind not in CONTROLLERS:
        raise unsupported(
            f"controller type '{kind}' is not supported by the sevlaunch host manager",
            field="devices/controller/@type",
            value=kind,
        )
    if kind == "ide" and family == "q35":
        raise unsupported(
            "IDE controllers are unsupported for this QEMU binary or machine type",
            field="devices/controller",
            value=kind,
        )
    allowed = USB_MODELS[family] if kind == "usb" else PCI_MODELS if kind == "pci" else None
    if allowed is not None and model is not None and model not in allowed:
        raise unsupported(
            f"{kind} controller model '{model}' is not supported on a {family} machine: use "
            f"{', '.join(sorted(allowed))}",
            field="devices/controller/@model",
            value=model,
        )


def _check_disks(disks: Iterable[DiskConfig], family: str) -> None:
    for disk in disks:
        where = f"devices/disk[@dev='{disk.target_dev}']"
        if disk.type not in ("file", "block"):
            raise unsupported(
                f"disk type '{disk.type}' is not supported: use 'file' or 'block'",
                field=where,
                value=disk.type,
            )
        if disk.device not in ("disk", "cdrom"):
            raise unsupported(
                f"disk device '{disk.device}' is not supported: use 'disk' or 'cdrom'",
                field=where,
                value=disk.device,
            )
        bus = disk_bus(disk)
        if bus not in DISK_BUSES:
            raise unsupported(
                f"disk bus '{bus}' is not supported: use {', '.join(DISK_BUSES)}",
                field=where,
                value=bus,
            )
        if bus == "ide" and family == "q35":
            raise unsupported(
                "IDE controllers are unsupported for this QEMU binary or machine type",
                field=where,
                value=bus,
            )
        if bus in ("sata", "ide") and disk.device == "disk" and disk.readonly:
            raise unsupported(f"readonly {bus} disks are not supported", field=where, value=bus)
        if bus == "virtio" and disk.device == "cdrom":
            raise unsupported(
                f"disk type of '{disk.target_dev}' does not support ejectable media",
                field=where,
                value=bus,
            )
        if disk.source is None:
            raise unsupported(
                f"disk '{disk.target_dev}' has no source: give <source file=...> or "
                "<source dev=...>",
                field=where,
            )


_BUS_BY_PREFIX = {"vd": "virtio", "sd": "scsi", "hd": "ide", "fd": "fdc", "xv": "xen", "ub": "uml"}


def disk_bus(disk: DiskConfig) -> str:
    """The disk's bus, or libvirt's default from its target name (``vda`` virtio, ``hda`` ide,
    ``sda`` scsi)."""
    return disk.target_bus or _BUS_BY_PREFIX.get(disk.target_dev.removeprefix("ioemu:")[:2], "ide")
