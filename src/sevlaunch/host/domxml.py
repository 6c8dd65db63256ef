"""libvirt domain XML for SEV guests: the parts we need as frozen dataclasses, the rest verbatim.

A :class:`Domain` parsed from XML remembers the document it came from (``template``);
:meth:`Domain.to_xml` writes the modelled values back into that document in place, so every
element we do not model (``<features>``, ``<clock>``, controllers, ...) survives a round trip
where it was. Values are normalised as libvirt's formatter does (memory in KiB, policy as
``0x%04x``, lower-case UUIDs).

libvirt has no XML for the 2017 design's second option (dhCert and session held as stored
secrets), and its schema admits foreign elements only inside ``<metadata>``. So the reference
is a sevlaunch extension there, one element in our namespace as libvirt's metadata API expects::

    <metadata>
      <sevlaunch:launchSecurity xmlns:sevlaunch="https://sevlaunch.dev/xmlns/domain/1">
        <sevlaunch:dhCertSecret uuid="..."/>
        <sevlaunch:sessionSecret uuid="..."/>
      </sevlaunch:launchSecurity>
    </metadata>

Errors read like libvirt's (``XML error: ...``, ``unsupported configuration: ...``) and are
:class:`~sevlaunch.errors.DomainXMLError`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError
from sevlaunch.formats.policy import Policy

NS = "https://sevlaunch.dev/xmlns/domain/1"
NS_PREFIX = "sevlaunch"
MAX_DOCUMENT = 10 * 1024 * 1024
MAX_NAME_BYTES = 255 - len(".xml.new")
_Item = TypeVar("_Item")
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_MAX_MEMORY_BYTES = 2**63 - 1


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


VIRT_TYPES = frozenset(
    _words("qemu kqemu kvm xen lxc uml openvz test vmware hyperv vbox phyp vz bhyve hvf")
)
OS_TYPES = frozenset(_words("hvm xen linux exe uml xenpvh"))
LAUNCH_SECURITY_TYPES = tuple(_words("sev sev-snp s390-pv"))
CPU_MODES = frozenset(_words("custom host-model host-passthrough maximum"))
DISK_TYPES = frozenset(_words("file block dir network volume nvme vhostuser"))
DISK_DEVICES = frozenset(_words("floppy disk cdrom lun"))
DISK_BUSES = frozenset(_words("ide fdc scsi virtio xen usb uml sata sd"))
CHARDEV_TYPES = frozenset(
    _words("dev file pipe unix tcp udp null stdio vc pty spicevmc spiceport nmdm qemu-vdagent dbus")
)
_TARGET_DEV = re.compile(r"(ioemu:)?(fd|hd|sd|vd|xvd|ubd)[a-zA-Z0-9_]+")
_MACHINE = re.compile(r"[a-zA-Z0-9_.\-]+")
_CPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # every QEMU x86 model name's shape
_ABS_PATH = re.compile(r"(/|[a-zA-Z]:\\).+", re.DOTALL)
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")
_XML_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# The order libvirt's formatter writes elements in; new elements go where libvirt puts them.
_TOP_ORDER = _words(
    "name uuid genid title description metadata maxMemory memory currentMemory "
    "blkiotune memtune memoryBacking vcpu vcpus iothreads iothreadids defaultiothread "
    "cputune numatune resource sysinfo bootloader bootloader_args os idmap features "
    "cpu clock on_poweroff on_reboot on_crash on_lockfailure pm perf devices seclabel "
    "keywrap launchSecurity"
)
_OS_ORDER = _words(
    "type firmware loader nvram kernel initrd cmdline shim dtb root boot bootmenu smbios bios acpi"
)
_DEV_ORDER = _words(
    "emulator disk filesystem controller lease hostdev redirdev smartcard interface "
    "input sound audio video graphics parallel serial console channel"
)
_LSEC_ORDER = _words("cbitpos reducedPhysBits policy handle dhCert session")
_DISK_ORDER = _words("driver source backingStore target readonly")
_SERIAL_ORDER = _words("source protocol log target")

# virScaleInteger's suffixes: bare or "iB" is binary, "B" decimal, "b"/"bytes" plain bytes.
_UNIT_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def _xml_error(detail: str, *, field: str | None = None, value: object = None) -> DomainXMLError:
    return DomainXMLError("XML error", detail, field=field, value=value)


def _unsupported(detail: str, *, field: str | None = None, value: object = None) -> DomainXMLError:
    return DomainXMLError("unsupported configuration", detail, field=field, value=value)


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True, kw_only=True)
class Loader:
    """``<os><loader>``: firmware image path; ``type`` is ``rom`` (QEMU ``-bios``) or ``pflash``."""

    path: str | None = None
    readonly: bool | None = None
    type: str | None = None
    stateless: bool | None = None

    def __post_init__(self) -> None:
        _check_path("os/loader", self.path)
        _check_choice("os/loader/@type", self.type, ("rom", "pflash"))


@dataclass(frozen=True, kw_only=True)
class Nvram:
    """``<os><nvram>``: the per-guest variable store (breaks SEV measurement; kept for others)."""

    path: str | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        _check_path("os/nvram", self.path)
        _check_path("os/nvram/@template", self.template)


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

    def __post_init__(self) -> None:
        _check_choice("os/type", self.type, sorted(OS_TYPES))
        if self.machine is not None and not _MACHINE.fullmatch(self.machine):
            raise _xml_error(
                f"invalid machine type '{self.machine}': expected letters, digits, '_', '.', '-'",
                field="os/type/@machine",
                value=self.machine,
            )
        if self.arch is not None and not re.fullmatch(r"[a-z0-9_]+", self.arch):
            raise _xml_error(f"unknown architecture '{self.arch}'", field="os/type/@arch")
        _check_choice("os/@firmware", self.firmware, ("bios", "efi"))
        _check_path("os/kernel", self.kernel)
        _check_path("os/initrd", self.initrd)
        _check_text("os/cmdline", self.cmdline)


@dataclass(frozen=True, kw_only=True)
class LaunchSecurity:
    """``<launchSecurity>``: SEV launch parameters (SEV-ES is SEV with policy bit 2 set).

    ``dh_cert``/``session`` are the guest owner's base64 blobs, kept as text exactly as given;
    ``dh_cert_secret``/``session_secret`` name stored secrets instead (sevlaunch extension).
    """

    type: str = "sev"
    policy: int | None = None
    kernel_hashes: bool | None = None
    cbitpos: int | None = None
    reduced_phys_bits: int | None = None
    dh_cert: str | None = None
    session: str | None = None
    dh_cert_secret: uuid.UUID | None = None
    session_secret: uuid.UUID | None = None

    def __post_init__(self) -> None:
        _check_choice("launchSecurity/@type", self.type, LAUNCH_SECURITY_TYPES)
        for name, number in (
            ("cbitpos", self.cbitpos),
            ("reducedPhysBits", self.reduced_phys_bits),
        ):
            if number is not None and not 0 <= number <= _U32:
                raise _xml_error(
                    f"invalid value for launch security {name}: {number} is not a 32-bit "
                    "unsigned integer",
                    field=f"launchSecurity/{name}",
                    value=number,
                )
        self._check_policy()
        self._check_blobs()

    def _check_policy(self) -> None:
        if self.type == "s390-pv":
            if self.policy is not None or self.cbitpos is not None:
                raise _unsupported(
                    "launch security type 's390-pv' takes no policy, cbitpos or reducedPhysBits",
                    field="launchSecurity",
                )
            return
        limit = _U64 if self.type == "sev-snp" else _U32
        if self.policy is None:
            raise _xml_error(
                "failed to get launch security policy: <policy> is required, e.g. "
                "<policy>0x0033</policy>",
                field="launchSecurity/policy",
            )
        if not 0 <= self.policy <= limit:
            raise _xml_error(
                f"failed to get launch security policy: {self.policy:#x} does not fit in "
                f"{limit.bit_length()} bits",
                field="launchSecurity/policy",
                value=self.policy,
            )

    def _check_blobs(self) -> None:
        pairs = (
            ("dhCert", self.dh_cert, self.dh_cert_secret),
            ("session", self.session, self.session_secret),
        )
        for name, inline, secret in pairs:
            _check_text(f"launchSecurity/{name}", inline)
            if (inline is not None or secret is not None) and self.type != "sev":
                raise _unsupported(
                    f"<{name}> is only valid for launch security type 'sev', not '{self.type}'",
                    field=f"launchSecurity/{name}",
                )
            if inline is not None and secret is not None:
                raise _unsupported(
                    f"launch security {name} is given both inline and as secret {secret}; "
                    "keep one of them",
                    field=f"launchSecurity/{name}",
                    value=str(secret),
                )

    @property
    def guest_policy(self) -> Policy:
        """The SEV policy as a :class:`~sevlaunch.formats.Policy` (reserved bits kept)."""
        if self.type != "sev" or self.policy is None:
            raise _unsupported(
                f"launch security type '{self.type}' has no SEV guest policy",
                field="launchSecurity/policy",
            )
        return Policy.from_int(self.policy, allow_reserved=True)

    @property
    def policy_text(self) -> str | None:
        """The policy as libvirt formats it: ``0x%04x`` for SEV, ``0x%08x`` for SEV-SNP."""
        if self.policy is None:
            return None
        width = 8 if self.type == "sev-snp" else 4
        return f"0x{self.policy:0{width}x}"


@dataclass(frozen=True, kw_only=True)
class CpuConfig:
    """``<cpu>``: only the mode and model reach the QEMU ``-cpu`` option."""

    mode: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        _check_choice("cpu/@mode", self.mode, sorted(CPU_MODES))
        if self.model is not None and not _CPU_MODEL.fullmatch(self.model):
            # What reaches -cpu is a bare model name: ',' '=' '+' would be QEMU options.
            raise DomainXMLError(
                "unsupported configuration",
                f"CPU model {self.model} is not supported by hypervisor",
                field="cpu/model",
                value=self.model,
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
        _check_choice("disk/@type", self.type, sorted(DISK_TYPES))
        _check_choice("disk/@device", self.device, sorted(DISK_DEVICES))
        _check_choice("disk/target/@bus", self.target_bus, sorted(DISK_BUSES))
        if not _TARGET_DEV.fullmatch(self.target_dev):
            raise _xml_error(
                f"invalid disk target '{self.target_dev}': expected a name such as 'vda'",
                field="disk/target/@dev",
                value=self.target_dev,
            )
        if self.source is not None and self.type not in ("file", "block"):
            raise _unsupported(
                f"disk type '{self.type}' has no file source; use type 'file' or 'block'",
                field="disk/source",
            )
        _check_path("disk/source", self.source)
        if self.driver_type is not None and not re.fullmatch(r"[a-z0-9]+", self.driver_type):
            raise _xml_error(f"unknown driver format value '{self.driver_type}'")


@dataclass(frozen=True, kw_only=True)
class SerialConfig:
    """``<serial>``: the guest console, a pty or a file (``path``); ``log_file`` is libvirt's
    ``<log file=... append=...>``, a copy of everything the port sends."""

    type: str = "pty"
    path: str | None = None
    log_file: str | None = None
    log_append: bool | None = None

    def __post_init__(self) -> None:
        _check_choice("serial/@type", self.type, sorted(CHARDEV_TYPES))
        _check_path("serial/source/@path", self.path)
        _check_path("serial/log/@file", self.log_file)
        if self.type == "file" and not self.path:
            raise _xml_error(
                "Missing source path attribute for char device: a 'file' serial needs "
                "<source path='/var/log/...'/>",
                field="serial/source/@path",
            )


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
    emulator: str | None = None
    disks: tuple[DiskConfig, ...] = ()
    serials: tuple[SerialConfig, ...] = ()
    template: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.type not in VIRT_TYPES:
            raise _xml_error(
                f"Invalid value for attribute 'type' in element 'domain': '{self.type}'. "
                f"Expected one of: {', '.join(sorted(VIRT_TYPES))}",
                field="domain/@type",
                value=self.type,
            )
        _check_name(self.name)
        for name, kib in (("memory", self.memory_kib), ("currentMemory", self.current_memory_kib)):
            if kib is not None and not 0 < kib * 1024 <= _MAX_MEMORY_BYTES:
                raise _xml_error(
                    f"Memory size must be specified via <memory> or in the <numa> "
                    f"configuration: <{name}> of {kib} KiB is out of range",
                    field=name,
                    value=kib,
                )
        if self.current_memory_kib is not None and self.current_memory_kib > self.memory_kib:
            raise _xml_error(
                f"currentMemory ({self.current_memory_kib} KiB) exceeds memory "
                f"({self.memory_kib} KiB); libvirt would clamp it, give at most memory",
                field="currentMemory",
                value=self.current_memory_kib,
            )
        if not 0 < self.vcpus <= _U32:
            raise _xml_error(
                f"maximum vcpus count must be an integer greater than 0, got {self.vcpus}",
                field="vcpu",
                value=self.vcpus,
            )
        _check_text("devices/emulator", self.emulator)

    @property
    def is_sev(self) -> bool:
        """True when the guest is an SEV (or SEV-ES) guest."""
        return self.launch_security is not None and self.launch_security.type == "sev"

    @classmethod
    def from_xml(cls, data: str | bytes) -> Domain:
        """Parse a domain document; raise :class:`DomainXMLError` as libvirt would."""
        root = parse_document(data, "domain", error=_xml_error)
        return _parse_domain(root)

    def to_xml(self) -> str:
        """Write the domain, starting from the parsed document when there is one."""
        if self.template is not None:
            root = parse_document(self.template, "domain", error=_xml_error)
        else:
            root = etree.Element("domain")
        _write_domain(root, self)
        etree.indent(root, space="  ")
        return str(etree.tostring(root, encoding="unicode")) + "\n"


# ---------------------------------------------------------------------------------------------
# Checks shared by the dataclasses


def _check_choice(where: str, value: str | None, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        elem, _, attr = where.rpartition("/@")
        what = (
            f"Invalid value for attribute '{attr}' in element '{elem.rsplit('/', 1)[-1]}'"
            if attr and elem
            else f"Invalid value for element '{where}'"
        )
        raise _xml_error(
            f"{what}: '{value}'. Expected one of: {', '.join(allowed)}", field=where, value=value
        )


def _check_text(where: str, value: str | None) -> None:
    if value is not None and _XML_BAD_CHARS.search(value):
        raise _xml_error(
            f"{where} contains a character XML cannot carry (a control character)",
            field=where,
            value=value,
        )


def _check_path(where: str, value: str | None) -> None:
    _check_text(where, value)
    if value is not None and not _ABS_PATH.fullmatch(value):
        raise _xml_error(
            f"{where} must be an absolute path, got '{value}'", field=where, value=value
        )


def _check_name(name: str) -> None:
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
    _check_text("name", name)
    if "\n" in name:
        raise _xml_error("invalid char in name: \\n", field="name", value=name)
    if "/" in name:
        raise _xml_error(f"name {name} cannot contain '/'", field="name", value=name)
    if name in (".", ".."):
        raise _xml_error(
            f"name '{name}' cannot be used: libvirt keeps each domain in files named after it",
            field="name",
            value=name,
        )
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise _xml_error(
            f"name of {size} bytes is too long: libvirt saves a domain as NAME.xml.new, a file "
            f"name of at most 255 bytes, so a name has at most {MAX_NAME_BYTES}",
            field="name",
            value=name[:64] + "...",
        )


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_document(
    data: str | bytes | bytearray,
    root_tag: str,
    *,
    error: Callable[[str], Exception] = _xml_error,
) -> etree._Element:
    """Parse untrusted XML safely (no DTDs, entities or network) and check the root element.

    ``error(detail)`` builds the exception to raise (a domain ``XML error`` by default).
    """
    make = error
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_DOCUMENT:
        raise make(f"document of {len(raw)} bytes exceeds the {MAX_DOCUMENT} byte limit")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise make(f"({root_tag}_definition):{exc.lineno}: {exc.msg}") from None
    if root is None or not isinstance(root.tag, str):
        raise make(f"({root_tag}_definition): no root element")
    if root.tag != root_tag:
        raise make(f"unexpected root element <{root.tag}>, expecting <{root_tag}>")
    if any(True for _ in root.iter(etree.Entity, etree.ProcessingInstruction)):
        raise make(f"({root_tag}_definition): entities and processing instructions are refused")
    return root


def _text(el: etree._Element | None) -> str | None:
    """libvirt's ``string(./x)``: all descendant text, or None when the element is absent."""
    if el is None:
        return None
    return "".join(el.itertext())


def _child(el: etree._Element | None, tag: str) -> etree._Element | None:
    return None if el is None else el.find(tag)


def _prop_choice(
    el: etree._Element, name: str, allowed: Sequence[str], *, required: bool = False
) -> str | None:
    value = el.get(name)
    if value is None:
        if required:
            raise _xml_error(
                f"Missing required attribute '{name}' in element '{el.tag}': expected one "
                f"of {', '.join(allowed)}",
                field=f"{el.tag}/@{name}",
            )
        return None
    if value not in allowed:
        raise _xml_error(
            f"Invalid value for attribute '{name}' in element '{el.tag}': '{value}'. "
            f"Expected one of: {', '.join(allowed)}",
            field=f"{el.tag}/@{name}",
            value=value,
        )
    return str(value)


def _prop_yesno(el: etree._Element | None, name: str) -> bool | None:
    if el is None:
        return None
    value = _prop_choice(el, name, ("yes", "no"))
    return None if value is None else value == "yes"


def _prop_onoff(el: etree._Element | None, name: str) -> bool | None:
    """libvirt's virTristateSwitch attributes (``append='on'``)."""
    if el is None:
        return None
    value = _prop_choice(el, name, ("on", "off"))
    return None if value is None else value == "on"


def _parse_uint(text: str, *, base: int = 10, limit: int = _U32) -> int | None:
    text = text.strip()
    if base == 16:
        match = _HEX.fullmatch(text)
        digits = match.group(1) if match else None
    else:
        digits = text if text.isdigit() and text.isascii() else None
    if digits is None:
        return None
    value = int(digits, base)
    return value if value <= limit else None


def _parse_uuid(text: str, where: str, error: type[DomainXMLError] = DomainXMLError) -> uuid.UUID:
    compact = text.strip().replace("-", "")
    if not re.fullmatch(r"[0-9a-fA-F]{32}", compact):
        raise error(
            "internal error",
            f"malformed uuid element: expected 32 hex digits such as "
            f"'c7a5fdbd-edaf-9455-926a-d65c16db1809', got '{text}'",
            field=where,
            value=text,
        )
    return uuid.UUID(compact)


def scale_to_bytes(value: str, unit: str | None, *, where: str, default_scale: int = 1024) -> int:
    """libvirt's virScaleInteger: ``value`` in ``unit`` (KiB when absent) as bytes."""
    number = _parse_uint(value, limit=_U64)
    if number is None:
        raise _xml_error(
            f"could not parse element {where}: expected a non-negative integer, got '{value}'",
            field=where,
            value=value,
        )
    scale = _unit_scale(unit, default_scale)
    total = number * scale
    if total > _MAX_MEMORY_BYTES:
        raise DomainXMLError(
            "numerical overflow",
            f"value too large: {value} {unit or 'KiB'} in {where}",
            field=where,
            value=value,
        )
    return total


def _unit_scale(unit: str | None, default_scale: int) -> int:
    if not unit:
        return default_scale
    low = unit.lower()
    if low in ("b", "byte", "bytes"):
        return 1
    power = _UNIT_POWERS.get(low[0])
    rest = low[1:]
    if power is not None and rest in ("", "ib"):
        return int(1024**power)
    if power is not None and rest == "b":
        return int(1000**power)
    raise DomainXMLError(
        "invalid argument",
        f"unknown suffix '{unit}': use b, KiB, MiB, GiB, TiB (or KB, MB, GB for powers of 1000)",
        field="@unit",
        value=unit,
    )


def _parse_memory(root: etree._Element, tag: str) -> int | None:
    el = root.find(tag)
    if el is None:
        return None
    total = scale_to_bytes(_text(el) or "", el.get("unit"), where=f"./{tag}[1]")
    return -(-total // 1024)


def _parse_domain(root: etree._Element) -> Domain:
    virt_type = _prop_choice(root, "type", sorted(VIRT_TYPES), required=True)
    name = _text(root.find("name"))
    if not name:
        raise _xml_error(
            "missing name information: the domain needs a <name> element", field="name"
        )
    uuid_text = _text(root.find("uuid"))
    memory = _parse_memory(root, "memory")
    if not memory:
        raise _xml_error(
            "Memory size must be specified via <memory> or in the <numa> configuration",
            field="memory",
        )
    current = _parse_memory(root, "currentMemory")
    return Domain(
        type=virt_type or "kvm",
        name=name,
        uuid=None if uuid_text is None else _parse_uuid(uuid_text, "uuid"),
        memory_kib=memory,
        current_memory_kib=None if not current or current > memory else current,
        vcpus=_parse_vcpus(root),
        os=_parse_os(root.find("os")),
        cpu=_parse_cpu(root.find("cpu")),
        launch_security=_parse_launch_security(root),
        emulator=_text(root.find("devices/emulator")),
        disks=tuple(_parse_disk(el) for el in root.iterfind("devices/disk")),
        serials=tuple(_parse_serial(el) for el in root.iterfind("devices/serial")),
        template=etree.tostring(root),
    )


def _parse_vcpus(root: etree._Element) -> int:
    text = _text(root.find("vcpu"))
    if text is None:
        return 1
    count = _parse_uint(text)
    if not count:
        raise _xml_error(
            f"maximum vcpus count must be an integer greater than 0, got '{text}'",
            field="vcpu",
            value=text,
        )
    return count


def _parse_os(el: etree._Element | None) -> OsConfig:
    type_el = _child(el, "type")
    os_type = _text(type_el)
    if el is None or type_el is None or not os_type:
        raise _xml_error(
            "an os <type> must be specified, e.g. <os><type arch='x86_64' "
            "machine='q35'>hvm</type></os>",
            field="os/type",
        )
    os_type = os_type.strip()
    if os_type not in OS_TYPES:
        raise DomainXMLError(
            "unknown OS type",
            f"'{os_type}': expected one of {', '.join(sorted(OS_TYPES))}",
            field="os/type",
            value=os_type,
        )
    loader_el = el.find("loader")
    nvram_el = el.find("nvram")
    return OsConfig(
        type=os_type,
        arch=type_el.get("arch"),
        machine=type_el.get("machine"),
        firmware=_prop_choice(el, "firmware", ("bios", "efi")),
        loader=None if loader_el is None else _parse_loader(loader_el),
        nvram=None
        if nvram_el is None
        else Nvram(path=_text(nvram_el) or None, template=nvram_el.get("template")),
        kernel=_text(el.find("kernel")),
        initrd=_text(el.find("initrd")),
        cmdline=_text(el.find("cmdline")),
    )


def _parse_loader(el: etree._Element) -> Loader:
    return Loader(
        path=(_text(el) or "").strip() or None,
        readonly=_prop_yesno(el, "readonly"),
        type=_prop_choice(el, "type", ("rom", "pflash")),
        stateless=_prop_yesno(el, "stateless"),
    )


def _parse_cpu(el: etree._Element | None) -> CpuConfig | None:
    if el is None:
        return None
    model = _text(el.find("model"))
    return CpuConfig(
        mode=_prop_choice(el, "mode", sorted(CPU_MODES)),
        model=model.strip() if model else None,
    )


def _parse_disk(el: etree._Element) -> DiskConfig:
    disk_type = _prop_choice(el, "type", sorted(DISK_TYPES)) or "file"
    source_el = el.find("source")
    source = None
    if source_el is not None and disk_type in ("file", "block"):
        source = source_el.get("file" if disk_type == "file" else "dev")
    target = el.find("target")
    target_dev = None if target is None else target.get("dev")
    if not target_dev:
        raise _xml_error(
            f"missing target information for device {source or '<disk>'}: add "
            "<target dev='vda' bus='virtio'/>",
            field="disk/target/@dev",
        )
    driver = el.find("driver")
    return DiskConfig(
        type=disk_type,
        device=_prop_choice(el, "device", sorted(DISK_DEVICES)) or "disk",
        source=source,
        target_dev=target_dev,
        target_bus=_prop_choice(target, "bus", sorted(DISK_BUSES)) if target is not None else None,
        driver_type=None if driver is None else driver.get("type"),
        readonly=el.find("readonly") is not None,
    )


def _parse_serial(el: etree._Element) -> SerialConfig:
    chardev = _prop_choice(el, "type", sorted(CHARDEV_TYPES)) or "null"
    source = el.find("source")
    log = el.find("log")
    return SerialConfig(
        type=chardev,
        path=None if source is None else source.get("path"),
        log_file=None if log is None else log.get("file"),
        log_append=_prop_onoff(log, "append"),
    )


def _parse_launch_security(root: etree._Element) -> LaunchSecurity | None:
    el = root.find("launchSecurity")
    refs = _parse_secret_refs(root)
    if el is None:
        if any(refs):
            raise _unsupported(
                "the sevlaunch dhCertSecret/sessionSecret metadata needs "
                "<launchSecurity type='sev'>",
                field="metadata",
            )
        return None
    sec_type = _prop_choice(el, "type", LAUNCH_SECURITY_TYPES, required=True) or "sev"
    policy = None
    if sec_type != "s390-pv":
        policy = _parse_policy(el, limit=_U64 if sec_type == "sev-snp" else _U32)
    return LaunchSecurity(
        type=sec_type,
        policy=policy,
        kernel_hashes=_prop_yesno(el, "kernelHashes"),
        cbitpos=_parse_lsec_uint(el, "cbitpos"),
        reduced_phys_bits=_parse_lsec_uint(el, "reducedPhysBits"),
        dh_cert=_text(el.find("dhCert")),
        session=_text(el.find("session")),
        dh_cert_secret=refs[0],
        session_secret=refs[1],
    )


def _parse_policy(el: etree._Element, *, limit: int) -> int:
    text = _text(el.find("policy"))
    value = None if text is None else _parse_uint(text, base=16, limit=limit)
    if value is None:
        found = "no <policy> element" if text is None else f"'{text}'"
        raise _xml_error(
            "failed to get launch security policy: expected a hexadecimal number such as "
            f"<policy>0x0033</policy>, found {found}",
            field="launchSecurity/policy",
            value=text,
        )
    return value


def _parse_lsec_uint(el: etree._Element, tag: str) -> int | None:
    text = _text(el.find(tag))
    if text is None:
        return None
    value = _parse_uint(text)
    if value is None:
        raise _xml_error(
            f"Invalid value for launch security {tag}: expected an unsigned integer, got '{text}'",
            field=f"launchSecurity/{tag}",
            value=text,
        )
    return value


def _parse_secret_refs(root: etree._Element) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    ext = root.find(f"metadata/{{{NS}}}launchSecurity")
    if ext is None:
        return None, None
    found: list[uuid.UUID | None] = []
    for tag in ("dhCertSecret", "sessionSecret"):
        ref = ext.find(f"{{{NS}}}{tag}")
        if ref is None:
            found.append(None)
            continue
        text = ref.get("uuid")
        if text is None:
            raise _xml_error(
                f"Missing required attribute 'uuid' in element '{NS_PREFIX}:{tag}'",
                field=f"metadata/{tag}",
            )
        found.append(_parse_uuid(text, f"metadata/{tag}/@uuid"))
    return found[0], found[1]


# ---------------------------------------------------------------------------------------------
# Writing: modelled values go into the template in place; new elements where libvirt puts them


def _local(tag: object) -> str | None:
    return tag if isinstance(tag, str) and not tag.startswith("{") else None


def _insert(parent: etree._Element, child: etree._Element, order: Sequence[str]) -> None:
    """Insert ``child`` after the last sibling that libvirt writes before it."""
    tag = child.tag
    before = set(order[: order.index(tag)]) if tag in order else set(order)
    position = 0
    for index, sibling in enumerate(parent):
        if _local(sibling.tag) in before or sibling.tag == tag:
            position = index + 1
    parent.insert(position, child)


def _ensure(parent: etree._Element, tag: str, order: Sequence[str]) -> etree._Element:
    el = parent.find(tag)
    if el is None:
        el = etree.Element(tag)
        _insert(parent, el, order)
    return el


def _set_text(
    parent: etree._Element, tag: str, text: str | None, order: Sequence[str]
) -> etree._Element | None:
    if text is None:
        for el in parent.findall(tag):
            parent.remove(el)
        return None
    el = _ensure(parent, tag, order)
    for sub in list(el):
        el.remove(sub)
    el.text = text
    return el


def _set_attr(el: etree._Element, name: str, value: str | bool | None) -> None:
    if value is None:
        el.attrib.pop(name, None)
    elif isinstance(value, bool):
        el.set(name, "yes" if value else "no")
    else:
        el.set(name, value)


def _write_domain(root: etree._Element, dom: Domain) -> None:
    root.set("type", dom.type)
    _set_text(root, "name", dom.name, _TOP_ORDER)
    _set_text(root, "uuid", None if dom.uuid is None else str(dom.uuid), _TOP_ORDER)
    _write_memory(root, "memory", dom.memory_kib)
    _write_memory(root, "currentMemory", dom.current_memory_kib)
    vcpu = _set_text(root, "vcpu", str(dom.vcpus), _TOP_ORDER)
    if vcpu is not None and vcpu.get("placement") is None:
        vcpu.set("placement", "static")
    _write_os(_ensure(root, "os", _TOP_ORDER), dom.os)
    _write_cpu(root, dom.cpu)
    _write_devices(root, dom)
    _write_launch_security(root, dom.launch_security)
    _write_secret_refs(root, dom.launch_security)


def _write_memory(root: etree._Element, tag: str, kib: int | None) -> None:
    el = _set_text(root, tag, None if kib is None else str(kib), _TOP_ORDER)
    if el is not None:
        el.set("unit", "KiB")


def _write_os(el: etree._Element, os_cfg: OsConfig) -> None:
    _set_attr(el, "firmware", os_cfg.firmware)
    type_el = _set_text(el, "type", os_cfg.type, _OS_ORDER)
    assert type_el is not None
    _set_attr(type_el, "arch", os_cfg.arch)
    _set_attr(type_el, "machine", os_cfg.machine)
    _write_loader(el, os_cfg.loader)
    _write_nvram(el, os_cfg.nvram)
    _set_text(el, "kernel", os_cfg.kernel, _OS_ORDER)
    _set_text(el, "initrd", os_cfg.initrd, _OS_ORDER)
    _set_text(el, "cmdline", os_cfg.cmdline, _OS_ORDER)


def _write_loader(os_el: etree._Element, loader: Loader | None) -> None:
    if loader is None:
        _set_text(os_el, "loader", None, _OS_ORDER)
        return
    el = _ensure(os_el, "loader", _OS_ORDER)
    el.text = loader.path
    _set_attr(el, "readonly", loader.readonly)
    _set_attr(el, "type", loader.type)
    _set_attr(el, "stateless", loader.stateless)


def _write_nvram(os_el: etree._Element, nvram: Nvram | None) -> None:
    if nvram is None:
        _set_text(os_el, "nvram", None, _OS_ORDER)
        return
    el = _ensure(os_el, "nvram", _OS_ORDER)
    if nvram.path is not None or el.find("source") is None:
        for sub in list(el):
            el.remove(sub)
        el.text = nvram.path
    _set_attr(el, "template", nvram.template)


def _write_cpu(root: etree._Element, cpu: CpuConfig | None) -> None:
    if cpu is None:
        _set_text(root, "cpu", None, _TOP_ORDER)
        return
    el = _ensure(root, "cpu", _TOP_ORDER)
    _set_attr(el, "mode", cpu.mode)
    model = _set_text(el, "model", cpu.model, ("model",))
    if model is not None:
        el.remove(model)
        el.insert(0, model)


def _write_devices(root: etree._Element, dom: Domain) -> None:
    devices = root.find("devices")
    if devices is None:
        if dom.emulator is None and not dom.disks and not dom.serials:
            return
        devices = _ensure(root, "devices", _TOP_ORDER)
    _set_text(devices, "emulator", dom.emulator, _DEV_ORDER)
    _sync_list(devices, "disk", dom.disks, _write_disk)
    _sync_list(devices, "serial", dom.serials, _write_serial)


def _sync_list(
    devices: etree._Element,
    tag: str,
    items: Sequence[_Item],
    write: Callable[[etree._Element, _Item], None],
) -> None:
    """Write item i into the i-th ``<tag>``; add or drop elements at the end of the run."""
    existing = devices.findall(tag)
    for index, item in enumerate(items):
        if index < len(existing):
            el = existing[index]
        else:
            el = etree.Element(tag)
            _insert(devices, el, _DEV_ORDER)
        write(el, item)
    for el in existing[len(items) :]:
        devices.remove(el)


def _write_disk(el: etree._Element, disk: DiskConfig) -> None:
    el.set("type", disk.type)
    el.set("device", disk.device)
    if disk.driver_type is not None:
        driver = el.find("driver")
        if driver is None:
            driver = etree.Element("driver", name="qemu")
            _insert(el, driver, _DISK_ORDER)
        driver.set("type", disk.driver_type)
    else:
        driver = el.find("driver")
        if driver is not None:
            driver.attrib.pop("type", None)
    _write_disk_source(el, disk)
    target = _ensure(el, "target", _DISK_ORDER)
    target.set("dev", disk.target_dev)
    _set_attr(target, "bus", disk.target_bus)
    if disk.readonly and el.find("readonly") is None:
        _insert(el, etree.Element("readonly"), _DISK_ORDER)
    elif not disk.readonly:
        _set_text(el, "readonly", None, _DISK_ORDER)


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
        _insert(el, source, _DISK_ORDER)
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
    log = el.find("log")
    if serial.log_file is None:
        if log is not None:
            el.remove(log)
        return
    if log is None:
        log = etree.Element("log")
        _insert(el, log, _SERIAL_ORDER)
    log.set("file", serial.log_file)
    if serial.log_append is None:
        log.attrib.pop("append", None)
    else:
        log.set("append", "on" if serial.log_append else "off")


def _write_launch_security(root: etree._Element, lsec: LaunchSecurity | None) -> None:
    if lsec is None:
        _set_text(root, "launchSecurity", None, _TOP_ORDER)
        return
    el = _ensure(root, "launchSecurity", _TOP_ORDER)
    if el.get("type") != lsec.type:
        el.clear()
    el.set("type", lsec.type)
    _set_attr(el, "kernelHashes", lsec.kernel_hashes)
    for tag, value in (
        ("cbitpos", lsec.cbitpos),
        ("reducedPhysBits", lsec.reduced_phys_bits),
    ):
        _set_text(el, tag, None if value is None else str(value), _LSEC_ORDER)
    _set_text(el, "policy", lsec.policy_text, _LSEC_ORDER)
    _set_text(el, "dhCert", lsec.dh_cert, _LSEC_ORDER)
    _set_text(el, "session", lsec.session, _LSEC_ORDER)


def _write_secret_refs(root: etree._Element, lsec: LaunchSecurity | None) -> None:
    refs = (
        ("dhCertSecret", None if lsec is None else lsec.dh_cert_secret),
        ("sessionSecret", None if lsec is None else lsec.session_secret),
    )
    metadata = root.find("metadata")
    ext = None if metadata is None else metadata.find(f"{{{NS}}}launchSecurity")
    if not any(ref for _, ref in refs):
        if metadata is not None and ext is not None:
            metadata.remove(ext)
            if len(metadata) == 0:
                root.remove(metadata)
        return
    if metadata is None:
        metadata = _ensure(root, "metadata", _TOP_ORDER)
    if ext is None:
        ext = etree.SubElement(metadata, f"{{{NS}}}launchSecurity", nsmap={NS_PREFIX: NS})
    for tag, ref in refs:
        for old in ext.findall(f"{{{NS}}}{tag}"):
            ext.remove(old)
        if ref is not None:
            etree.SubElement(ext, f"{{{NS}}}{tag}", uuid=str(ref))


# ---------------------------------------------------------------------------------------------
# Schema validation (libvirt's `virsh define --validate`)


@lru_cache(maxsize=4)
def _relaxng(path: Path) -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(path)))


def validate_against_schema(xml: str | bytes, schema_dir: str | Path) -> None:
    """Validate ``xml`` against libvirt's ``domain.rng`` in ``schema_dir``; raise if invalid."""
    path = Path(schema_dir) / "domain.rng"
    try:
        schema = _relaxng(path.resolve())
    except (OSError, etree.RelaxNGParseError, etree.XMLSyntaxError) as exc:
        raise DomainXMLError(
            "internal error",
            f"Unable to load the RelaxNG schema {path}: {exc}; point schema_dir at libvirt's "
            "src/conf/schemas",
            field="schema",
            value=str(path),
        ) from None
    doc = parse_document(xml, "domain")
    if not schema.validate(doc):
        details = "; ".join(f"line {entry.line}: {entry.message}" for entry in schema.error_log)
        raise DomainXMLError(
            "XML document failed to validate against schema",
            f"Unable to validate doc against {path}: {details}",
            field="schema",
            value=details,
        )
