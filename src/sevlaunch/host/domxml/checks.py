"""The vocabulary of libvirt's domain XML and the checks every part of the model shares, with
libvirt's words: ``XML error: ...``, ``unsupported configuration: ...``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

from sevlaunch.errors import DomainXMLError

NS = "https://sevlaunch.dev/xmlns/domain/1"
NS_PREFIX = "sevlaunch"
MAX_DOCUMENT = 10 * 1024 * 1024
MAX_NAME_BYTES = 255 - len(".xml.new")
Item = TypeVar("Item")
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
MAX_MEMORY_BYTES = 2**63 - 1


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


VIRT_TYPES = frozenset(
    words("qemu kqemu kvm xen lxc uml openvz test vmware hyperv vbox phyp vz bhyve hvf")
)
OS_TYPES = frozenset(words("hvm xen linux exe uml xenpvh"))
LAUNCH_SECURITY_TYPES = tuple(words("sev sev-snp s390-pv"))
CPU_MODES = frozenset(words("custom host-model host-passthrough maximum"))
DISK_TYPES = frozenset(words("file block dir network volume nvme vhostuser"))
DISK_DEVICES = frozenset(words("floppy disk cdrom lun"))
DISK_BUSES = frozenset(words("ide fdc scsi virtio xen usb uml sata sd"))
CONTROLLER_TYPES = frozenset(words("ide fdc scsi sata virtio-serial ccid usb pci xenbus isa"))
MEMBALLOON_MODELS = frozenset(words("virtio xen none virtio-transitional virtio-non-transitional"))
CLOCK_OFFSETS = frozenset(words("utc localtime timezone variable absolute"))
BOOT_DEVICES = ("fd", "hd", "cdrom", "network")
CHARDEV_TYPES = frozenset(
    words("dev file pipe unix tcp udp null stdio vc pty spicevmc spiceport nmdm qemu-vdagent dbus")
)
TARGET_DEV = re.compile(r"(ioemu:)?(fd|hd|sd|vd|xvd|ubd)[a-zA-Z0-9_]+")
MACHINE_NAME = re.compile(r"[a-zA-Z0-9_.\-]+")
CPU_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # every QEMU x86 model name's shape
ABS_PATH = re.compile(r"(/|[a-zA-Z]:\\).+", re.DOTALL)
HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
XML_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_error(detail: str, *, field: str | None = None, value: object = None) -> DomainXMLError:
    return DomainXMLError("XML error", detail, field=field, value=value)


def unsupported(detail: str, *, field: str | None = None, value: object = None) -> DomainXMLError:
    return DomainXMLError("unsupported configuration", detail, field=field, value=value)


def check_choice(where: str, value: str | None, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        elem, _, attr = where.rpartition("/@")
        what = (
            f"Invalid value for attribute '{attr}' in element '{elem.rsplit('/', 1)[-1]}'"
            if attr and elem
            else f"Invalid value for element '{where}'"
        )
        raise xml_error(
            f"{what}: '{value}'. Expected one of: {', '.join(allowed)}", field=where, value=value
        )


def check_text(where: str, value: str | None) -> None:
    if value is not None and XML_BAD_CHARS.search(value):
        raise xml_error(
            f"{where} contains a character XML cannot carry (a control character)",
            field=where,
            value=value,
        )


def check_path(where: str, value: str | None) -> None:
    check_text(where, value)
    if value is not None and not ABS_PATH.fullmatch(value):
        raise xml_error(
            f"{where} must be an absolute path, got '{value}'", field=where, value=value
        )


def check_name(name: str) -> None:
    """libvirt's name rules: its own ('/' and newline refused) and those its config directory
    imposes (libvirt saves ``NAME.xml.new``, so '.', '..' and names over 247 bytes fail), plus
    a name that is only white space, which libvirt 9.0 takes and no tool can address."""
    if not name.strip():
        raise DomainXMLError(
            "missing name information",
            "the domain's <name> is empty or only white space",
            field="name",
            value=name,
        )
    check_text("name", name)
    if "\n" in name:
        raise xml_error("invalid char in name: \\n", field="name", value=name)
    if "/" in name:
        raise xml_error(f"name {name} cannot contain '/'", field="name", value=name)
    if name in (".", ".."):
        raise xml_error(
            f"name '{name}' cannot be used: libvirt keeps each domain in files named after it",
            field="name",
            value=name,
        )
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise xml_error(
            f"name of {size} bytes is too long: libvirt saves a domain as NAME.xml.new, a file "
            f"name of at most 255 bytes, so a name has at most {MAX_NAME_BYTES}",
            field="name",
            value=name[:64] + "...",
        )
