"""What a command line describes, as frozen dataclasses: :class:`VmConfig` and its parts.

The names follow QEMU's: QOM properties of target/i386/sev.c for :class:`SevGuestConfig`, QAPI
``ChardevBackend`` for :class:`ChardevConfig`, ``BlockdevOptions`` for :class:`BlockdevConfig`,
qdev properties for :class:`DeviceConfig`. Anything the emulated hypervisor does not model is
kept as given (``props``), so a later caller (libvirt's full command line) loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OnOffAuto = Literal["on", "off", "auto"]
DEFAULT_RAM = 128 << 20  # QEMU's default -m


@dataclass(frozen=True)
class SevGuestConfig:
    """A ``sev-guest`` object (QOM properties of target/i386/sev.c, QEMU ≥ 9.1)."""

    id: str
    reduced_phys_bits: int
    cbitpos: int = 0
    policy: int = 0x1
    handle: int = 0
    dh_cert_file: str | None = None
    session_file: str | None = None
    kernel_hashes: bool = False
    legacy_vm_type: OnOffAuto = "auto"
    sev_device: str = "/dev/sev"


@dataclass(frozen=True)
class SevSnpGuestConfig:
    """A ``sev-snp-guest`` object (QEMU ≥ 9.1): the base64 blobs decoded and length-checked
    as QEMU's property setters do."""

    id: str
    reduced_phys_bits: int
    cbitpos: int = 0
    policy: int = 0x30000
    guest_visible_workarounds: bytes = bytes(16)
    id_block: bytes | None = None
    id_auth: bytes | None = None
    host_data: bytes = bytes(32)
    author_key_enabled: bool = False
    vcek_disabled: bool = False
    kernel_hashes: bool = False
    sev_device: str = "/dev/sev"


@dataclass(frozen=True)
class FwCfgEntry:
    """``-fw_cfg name=opt/...,string=...`` or ``...,file=PATH``: a blob the guest reads."""

    name: str
    string: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class ObjectConfig:
    """Any other accepted ``-object`` (memory backends, secrets), kept as given."""

    qom_type: str
    id: str
    props: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class DriveConfig:
    """A legacy ``-drive`` that is not firmware (``if=pflash`` units 0 and 1 are)."""

    interface: str
    file: str
    format: str | None = None
    unit: int | None = None
    readonly: bool = False
    id: str | None = None


@dataclass(frozen=True)
class BlockdevConfig:
    """One ``-blockdev`` node: a protocol node (``file``, ``host_device``: ``filename``) or a
    format node (``raw``, ``qcow2``: ``file`` names the protocol node below it)."""

    node_name: str
    driver: str
    filename: str | None = None
    file: str | None = None
    read_only: bool = False
    props: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class DeviceConfig:
    """One ``-device``: its model (``driver``), id, bus and the properties we read."""

    driver: str
    id: str | None = None
    bus: str | None = None
    props: tuple[tuple[str, Any], ...] = ()

    def prop(self, name: str) -> Any:
        return dict(self.props).get(name)


@dataclass(frozen=True)
class ChardevConfig:
    """A ``-chardev``: backend ``socket``, ``file``, ``pty`` or ``null``; ``logfile`` gets a copy
    of everything written to it (``logappend`` keeps what the file held)."""

    id: str
    backend: str
    path: str | None = None
    fd: int | None = None
    server: bool = False
    wait: bool = True
    append: bool = False
    logfile: str | None = None
    logappend: bool = False


@dataclass(frozen=True)
class FdConfig:
    """An ``-add-fd``: an inherited descriptor in fd set ``set`` (``/dev/fdset/SET``)."""

    fd: int
    set: int
    opaque: str | None = None


@dataclass(frozen=True)
class SerialPort:
    """A guest serial port (``isa-serial`` or ``-serial``) and the chardev behind it."""

    index: int
    chardev: ChardevConfig


@dataclass(frozen=True)
class DiskImage:
    """A disk the guest sees: its image file and the device that shows it."""

    file: str
    driver: str
    format: str | None = None
    readonly: bool = False
    id: str | None = None
    bootindex: int | None = None


@dataclass(frozen=True)
class QmpEndpoint:
    """Where the QMP monitor listens: a Unix socket ``path`` or an inherited ``fd``."""

    path: str | None = None
    fd: int | None = None
    server: bool = True
    wait: bool = True
    pretty: bool = False


@dataclass(frozen=True)
class SmpConfig:
    cpus: int = 1
    sockets: int = 1
    cores: int = 1
    threads: int = 1
    maxcpus: int = 1


@dataclass(frozen=True)
class VmConfig:
    """Everything the emulated hypervisor needs from its command line."""

    name: str | None = None
    start_paused: bool = False
    machine_type: str | None = None
    machine_props: tuple[tuple[str, str], ...] = ()
    confidential_guest_support: str | None = None
    sev_guest: SevGuestConfig | None = None
    snp_guest: SevSnpGuestConfig | None = None
    fw_cfg: tuple[FwCfgEntry, ...] = ()
    objects: tuple[ObjectConfig, ...] = ()
    firmware: str | None = None
    nvram: str | None = None
    drives: tuple[DriveConfig, ...] = ()
    blockdevs: tuple[BlockdevConfig, ...] = ()
    devices: tuple[DeviceConfig, ...] = ()
    disks: tuple[DiskImage, ...] = ()
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    memory: int = DEFAULT_RAM
    smp: SmpConfig = field(default_factory=SmpConfig)
    cpu_model: str | None = None
    uuid: str | None = None
    qmp: tuple[QmpEndpoint, ...] = ()
    chardevs: tuple[ChardevConfig, ...] = ()
    serials: tuple[SerialPort, ...] = ()
    display: str | None = None
    nodefaults: bool = False
    no_user_config: bool = False
    no_shutdown: bool = False
    acpi: bool = True
    rtc_base: str = "utc"
    boot_strict: bool = False
    pidfile: str | None = None
    daemonize: bool = False
    ignored: tuple[str, ...] = ()
    accel: str | None = None  #: ``-accel TYPE`` (``-enable-kvm``: ``kvm``), for query-kvm
    fds: tuple[FdConfig, ...] = ()
