"""The QEMU command line for a domain, built the way libvirt's QEMU driver builds it.

Pure: :func:`build_launch_plan` takes the domain, the per-domain paths and (for secrets the
domain names by UUID) a resolver, and returns a :class:`LaunchPlan`: the argv plus the files
the caller must write first (the SEV blobs, mode 0600, in the per-domain directory, as
libvirt's ``qemuProcessSEVCreateFile`` does). libvirt's shape is kept where it matters to an
SEV launch (libvirt-qemu-interfaces.md §2.5): ``-S`` always, a JSON ``-object sev-guest`` with
id ``lsec0`` bound by ``confidential-guest-support=lsec0``, an explicit ``pc.ram`` memory
backend, the QMP monitor as ``-chardev socket`` plus ``-mon``. Firmware, disks and the serial
console use QEMU's ``-drive``/``-bios``/``-chardev file`` forms, which both a real
``qemu-system-x86_64`` and ``sevlaunch-vmm`` accept (the latter emulates no ``-device``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import DiskConfig, Domain, LaunchSecurity
from sevlaunch.host.logs import CONSOLE_LOG, serial_outputs

SEV_OBJECT_ID = "lsec0"
MEMORY_BACKEND_ID = "pc.ram"
DEFAULT_MACHINE = "q35"
BLOB_MODE = 0o600
_BUS_BY_PREFIX = {"vd": "virtio", "sd": "scsi", "hd": "ide", "fd": "fdc"}

SecretResolver = Callable[[uuid.UUID], bytes]


def _unsupported(detail: str, *, field: str | None = None, value: object = None) -> DomainXMLError:
    return DomainXMLError("unsupported configuration", detail, field=field, value=value)


@dataclass(frozen=True, kw_only=True)
class LaunchPaths:
    """Where one domain's runtime files live (libvirt's ``priv->libDir`` and friends)."""

    lib_dir: str
    monitor_socket: str
    pidfile: str | None = None
    log_dir: str | None = None  # where pty ports and the implicit console are logged

    def __post_init__(self) -> None:
        for name in ("lib_dir", "monitor_socket", "pidfile", "log_dir"):
            value = getattr(self, name)
            if value is not None and not PurePosixPath(value).is_absolute():
                raise _unsupported(
                    f"{name} must be an absolute path, got '{value}'", field=name, value=value
                )


@dataclass(frozen=True, kw_only=True)
class HostSevDefaults:
    """The host's ``cbitpos``/``reduced-phys-bits`` (query-sev-capabilities), used when the
    domain leaves them out, as libvirt's ``qemuProcessUpdateSEVInfo`` does."""

    cbitpos: int
    reduced_phys_bits: int


@dataclass(frozen=True)
class PlannedFile:
    """A file the caller writes (atomically, with ``mode``) before starting QEMU."""

    path: str
    content: bytes
    mode: int = BLOB_MODE


@dataclass(frozen=True, kw_only=True)
class LaunchPlan:
    """The argv to exec (binary first) and the files that must exist before it runs."""

    argv: tuple[str, ...]
    files: tuple[PlannedFile, ...]
    monitor_socket: str
    pidfile: str | None


def build_launch_plan(
    domain: Domain,
    paths: LaunchPaths,
    *,
    emulator: str | None = None,
    resolve_secret: SecretResolver | None = None,
    host_sev: HostSevDefaults | None = None,
    daemonize: bool = False,
) -> LaunchPlan:
    """Build the launch of ``domain``; ``emulator`` overrides ``<emulator>`` (``--qemu``)."""
    _check_domain(domain)
    binary = emulator or domain.emulator
    if not binary:
        raise _unsupported(
            f"domain '{domain.name}' has no <emulator> and no QEMU binary was given: set "
            "<emulator>/usr/bin/qemu-system-x86_64</emulator> or the daemon's --qemu",
            field="devices/emulator",
        )
    files: list[PlannedFile] = []
    argv = [binary, "-name", f"guest={_esc(domain.name)},debug-threads=on", "-S"]
    argv += ["-machine", _machine_opts(domain), "-accel", _accel(domain)]
    argv += _firmware_args(domain)
    argv += _cpu_memory_args(domain)
    if domain.uuid is not None:
        argv += ["-uuid", str(domain.uuid)]
    argv += ["-display", "none", "-no-user-config", "-nodefaults"]
    argv += _monitor_args(paths.monitor_socket)
    argv += _kernel_args(domain)
    for disk in domain.disks:
        argv += _disk_args(disk)
    argv += _serial_args(domain, paths.log_dir)
    if domain.launch_security is not None:
        sev, blobs = _sev_object(domain, paths, resolve_secret, host_sev)
        argv += ["-object", sev]
        files += blobs
    if paths.pidfile is not None:
        argv += ["-pidfile", paths.pidfile]
    if daemonize:
        argv.append("-daemonize")
    return LaunchPlan(
        argv=tuple(argv),
        files=tuple(files),
        monitor_socket=paths.monitor_socket,
        pidfile=paths.pidfile,
    )


def _esc(text: str) -> str:
    """QEMU's option syntax: a literal comma is written twice (virQEMUBuildBufferEscapeComma)."""
    return text.replace(",", ",,")


def _json(obj: dict[str, object]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _check_domain(domain: Domain) -> None:
    if domain.type not in ("kvm", "qemu"):
        raise _unsupported(
            f"domain type '{domain.type}' is not handled by the QEMU driver; use 'kvm' (or "
            "'qemu' for TCG)",
            field="domain/@type",
            value=domain.type,
        )
    if domain.os.type != "hvm":
        raise _unsupported(
            f"OS type '{domain.os.type}' is not supported by the QEMU driver; use 'hvm'",
            field="os/type",
            value=domain.os.type,
        )
    if domain.os.arch not in (None, "x86_64"):
        raise _unsupported(
            f"architecture '{domain.os.arch}' is not supported: SEV guests are x86_64",
            field="os/type/@arch",
            value=domain.os.arch,
        )


def _machine_opts(domain: Domain) -> str:
    opts = [
        domain.os.machine or DEFAULT_MACHINE,
        "usb=off",
        "dump-guest-core=off",
        f"memory-backend={MEMORY_BACKEND_ID}",
    ]
    if domain.launch_security is not None:
        opts.append(f"confidential-guest-support={SEV_OBJECT_ID}")
    return ",".join(opts)


def _accel(domain: Domain) -> str:
    return "kvm" if domain.type == "kvm" else "tcg"


def _firmware_args(domain: Domain) -> list[str]:
    loader = domain.os.loader
    if loader is None:
        return []
    if loader.path is None:
        raise _unsupported(
            "<loader> has no path: firmware autoselection is not supported; give the "
            "OVMF image, e.g. <loader type='rom'>/usr/share/edk2/ovmf/OVMF.amdsev.fd</loader>",
            field="os/loader",
        )
    if loader.type != "pflash":
        return ["-bios", loader.path]
    code = f"file={_esc(loader.path)},if=pflash,format=raw,unit=0"
    if loader.readonly:
        code += ",readonly=on"
    args = ["-drive", code]
    nvram = domain.os.nvram
    if nvram is not None and nvram.path is not None and not loader.stateless:
        args += ["-drive", f"file={_esc(nvram.path)},if=pflash,format=raw,unit=1"]
    return args


def _cpu_memory_args(domain: Domain) -> list[str]:
    args: list[str] = []
    cpu = domain.cpu
    if cpu is not None and cpu.mode == "host-passthrough":
        args += ["-cpu", "host"]
    elif cpu is not None and cpu.mode == "maximum":
        args += ["-cpu", "max"]
    elif cpu is not None and cpu.model:
        args += ["-cpu", cpu.model]
    # libvirt aligns guest RAM up to 1 MiB on x86 (qemuDomainAlignMemorySizes).
    kib = -(-domain.memory_kib // 1024) * 1024
    backend = {"qom-type": "memory-backend-ram", "id": MEMORY_BACKEND_ID, "size": kib * 1024}
    args += ["-m", f"size={kib}k", "-object", _json(backend), "-overcommit", "mem-lock=off"]
    n = domain.vcpus
    args += ["-smp", f"{n},sockets={n},cores=1,threads=1"]
    return args


def _monitor_args(socket: str) -> list[str]:
    return [
        "-chardev",
        f"socket,id=charmonitor,path={_esc(socket)},server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
    ]


def _kernel_args(domain: Domain) -> list[str]:
    args: list[str] = []
    for option, value in (
        ("-kernel", domain.os.kernel),
        ("-initrd", domain.os.initrd),
        ("-append", domain.os.cmdline),
    ):
        if value is not None:
            args += [option, value]
    return args


def _disk_args(disk: DiskConfig) -> list[str]:
    bus = disk.target_bus or _BUS_BY_PREFIX.get(disk.target_dev[:2])
    if disk.type != "file" or disk.device != "disk" or bus != "virtio" or not disk.source:
        raise _unsupported(
            f"disk '{disk.target_dev}' (type '{disk.type}', device '{disk.device}', bus "
            f"'{bus}') is not supported: use <disk type='file' device='disk'> with "
            "<source file=...> and <target dev='vda' bus='virtio'/>",
            field="devices/disk",
            value=disk.target_dev,
        )
    index = _disk_index(disk.target_dev)
    opts = [
        f"file={_esc(disk.source)}",
        f"format={disk.driver_type or 'raw'}",
        "if=virtio",
        f"id=drive-virtio-disk{index}",
    ]
    if disk.readonly:
        opts.append("readonly=on")
    return ["-drive", ",".join(opts)]


def _disk_index(target_dev: str) -> int:
    """``vda`` → 0, ``vdz`` → 25, ``vdaa`` → 26 (virDiskNameToIndex)."""
    index = 0
    for char in target_dev.removeprefix("ioemu:")[2:]:
        if not "a" <= char <= "z":
            break
        index = index * 26 + (ord(char) - ord("a") + 1)
    return max(index - 1, 0)


def _serial_args(domain: Domain, log_dir: str | None) -> list[str]:
    """Each port as a chardev (libvirt's ``charserialN``) logged to its file; a domain without
    a port gets one logged to its console file when the caller gives a log directory."""
    for serial in domain.serials:
        if serial.type not in ("file", "pty", "null"):
            raise _unsupported(
                f"serial type '{serial.type}' is not supported: use <serial type='pty'>, "
                "'file' with <source path=...> or 'null'",
                field="devices/serial/@type",
                value=serial.type,
            )
    logs = PurePosixPath(log_dir) if log_dir is not None else None
    args: list[str] = []
    if logs is not None and not domain.serials:
        console = f"logfile={_esc(str(logs / CONSOLE_LOG))},logappend=on"
        return ["-chardev", f"null,id=charserial0,{console}", "-serial", "chardev:charserial0"]
    outputs = serial_outputs(domain, logs) if logs is not None else None
    for index, serial in enumerate(domain.serials):
        opts = [serial.type, f"id=charserial{index}"]
        if serial.type == "file" and serial.path:
            opts.append(f"path={_esc(serial.path)}")
        log: str | None = serial.log_file
        append = bool(serial.log_append)
        if outputs is not None:
            log, append = outputs[index].log, outputs[index].log_append
        if log is not None:
            opts += [f"logfile={_esc(log)}", f"logappend={'on' if append else 'off'}"]
        args += ["-chardev", ",".join(opts), "-serial", f"chardev:charserial{index}"]
    return args


def _sev_object(
    domain: Domain,
    paths: LaunchPaths,
    resolve_secret: SecretResolver | None,
    host_sev: HostSevDefaults | None,
) -> tuple[str, list[PlannedFile]]:
    lsec = domain.launch_security
    assert lsec is not None
    if lsec.type != "sev" or lsec.policy is None:
        raise _unsupported(
            f"launch security type '{lsec.type}' is not supported by the sevlaunch QEMU "
            "driver; only 'sev' (SEV and SEV-ES) is",
            field="launchSecurity/@type",
            value=lsec.type,
        )
    cbitpos, rpb = _sev_geometry(lsec, host_sev)
    props: dict[str, object] = {
        "qom-type": "sev-guest",
        "id": SEV_OBJECT_ID,
        "cbitpos": cbitpos,
        "reduced-phys-bits": rpb,
        "policy": lsec.policy,
    }
    files: list[PlannedFile] = []
    lib_dir = PurePosixPath(paths.lib_dir)
    for key, name, inline, ref in (
        ("dh-cert-file", "dh_cert", lsec.dh_cert, lsec.dh_cert_secret),
        ("session-file", "session", lsec.session, lsec.session_secret),
    ):
        content = _blob(domain.name, name, inline, ref, resolve_secret)
        if content is not None:
            path = str(lib_dir / f"{name}.base64")
            files.append(PlannedFile(path, content))
            props[key] = path
    if lsec.kernel_hashes is not None:
        props["kernel-hashes"] = lsec.kernel_hashes
    return _json(props), files


def _sev_geometry(lsec: LaunchSecurity, host: HostSevDefaults | None) -> tuple[int, int]:
    cbitpos, rpb = lsec.cbitpos, lsec.reduced_phys_bits
    if host is not None:
        cbitpos = host.cbitpos if cbitpos is None else cbitpos
        rpb = host.reduced_phys_bits if rpb is None else rpb
    if cbitpos is None or rpb is None:
        raise _unsupported(
            "the domain gives no <cbitpos>/<reducedPhysBits> and the host's SEV capabilities "
            "are unknown; add them to <launchSecurity> (see nodesevinfo) or let the driver "
            "probe the host",
            field="launchSecurity/cbitpos",
        )
    return cbitpos, rpb


def _blob(
    domain_name: str,
    name: str,
    inline: str | None,
    ref: uuid.UUID | None,
    resolve_secret: SecretResolver | None,
) -> bytes | None:
    """The file content: the XML text verbatim (libvirt), or base64 of a stored secret."""
    if inline is not None:
        return inline.encode("utf-8")
    if ref is None:
        return None
    if resolve_secret is None:
        raise _unsupported(
            f"domain '{domain_name}' names secret {ref} for its {name} but no secret store "
            "was given to resolve it",
            field=f"metadata/{name}",
            value=str(ref),
        )
    return base64.b64encode(resolve_secret(ref))
