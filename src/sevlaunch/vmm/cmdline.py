"""The QEMU command-line subset that libvirt emits for an SEV guest, parsed into a VmConfig.

Accepted (libvirt-qemu-interfaces §2.5, §4.1): ``-name``, ``-S``, ``-machine`` (with
``confidential-guest-support=ID`` or the older ``memory-encryption=ID``), ``-object`` in
key=value and JSON syntax (``sev-guest``; ``memory-backend-ram``/``-memfd`` and ``secret``
are recorded), ``-bios``, ``-drive`` (``if=pflash`` unit 0 is the firmware, unit 1 the
unmeasured VARS; other interfaces are recorded as disks), ``-kernel``, ``-initrd``,
``-append``, ``-m``, ``-smp``, ``-cpu``, ``-qmp``, ``-chardev socket|file``, ``-mon``,
``-serial``, ``-display none``, ``-nodefaults``, ``-no-user-config``, ``-pidfile``,
``-daemonize``, ``-no-shutdown``.

Accepted and ignored, because libvirt always adds them and they change nothing an emulated
SEV launch can show: ``-overcommit``, ``-msg``, ``-sandbox``, ``-boot``, ``-rtc``, ``-uuid``,
``-accel``, ``-enable-kvm``, ``-global``, ``-audiodev``, ``-no-hpet``. Their text is kept in
``VmConfig.ignored``. Anything else fails as QEMU fails: ``-foo: invalid option``. ``-device``
and ``-blockdev`` are refused with a message saying so (no devices are emulated).

QEMU's option syntax: ``key=value`` pairs separated by commas, ``,,`` for a literal comma,
an implied first key for some options (``-machine q35``), a bare ``key`` meaning ``key=on``
and ``nokey`` meaning ``key=off`` (legacy ``server,nowait``). Booleans take
on/off/yes/no/true/false/y/n. Integers take C prefixes (0x.., leading 0 for octal) as
``qemu_strtou64`` does. Messages follow QEMU's (qapi/qobject-input-visitor.c,
qom/object.c, target/i386/sev.c); the option is shown first, as QEMU's error location does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sevlaunch.errors import CommandLineError

OnOffAuto = Literal["on", "off", "auto"]
_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")
DEFAULT_RAM = 128 << 20  # QEMU's default -m
_SIZE_SUFFIX = {"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([bkmgtpe]?)", re.IGNORECASE)


# -- the result ---------------------------------------------------------------------------


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
class ObjectConfig:
    """Any other accepted ``-object`` (memory backends, secrets), kept as given."""

    qom_type: str
    id: str
    props: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class DriveConfig:
    interface: str
    file: str
    format: str | None = None
    unit: int | None = None
    readonly: bool = False
    id: str | None = None


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
    objects: tuple[ObjectConfig, ...] = ()
    firmware: str | None = None
    nvram: str | None = None
    drives: tuple[DriveConfig, ...] = ()
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    memory: int = DEFAULT_RAM
    smp: SmpConfig = field(default_factory=SmpConfig)
    cpu_model: str | None = None
    qmp: tuple[QmpEndpoint, ...] = ()
    serial: tuple[str, ...] = ()
    display: str | None = None
    nodefaults: bool = False
    no_user_config: bool = False
    no_shutdown: bool = False
    pidfile: str | None = None
    daemonize: bool = False
    ignored: tuple[str, ...] = ()


def check_cbitpos(config: VmConfig, host_cbitpos: int) -> None:
    """QEMU's accelerator-init check of ``cbitpos`` against the host's CPUID value."""
    sev = config.sev_guest
    if sev is not None and sev.cbitpos != host_cbitpos:
        raise CommandLineError(
            None,
            f"sev_common_kvm_init: cbitpos check failed, host '{host_cbitpos}' "
            f"requested '{sev.cbitpos}'",
            value=sev.cbitpos,
        )


# -- QemuOpts syntax ----------------------------------------------------------------------


def split_opts(text: str, implied: str | None = None) -> list[tuple[str, str]]:
    """``a,b=c,,d,noe`` → [(implied, a), (b, "c,d"), (e, "off")]; ``,,`` is a comma."""
    out: list[tuple[str, str]] = []
    for i, part in enumerate(_split_commas(text)):
        if "=" in part:
            key, value = part.split("=", 1)
            out.append((key, value))
        elif i == 0 and implied is not None:
            out.append((implied, part))
        elif part.startswith("no") and len(part) > 2:
            out.append((part[2:], "off"))
        else:
            out.append((part, "on"))
    return out


def _split_commas(text: str) -> Iterator[str]:
    part: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == ",":
            if text.startswith(",,", i):
                part.append(",")
                i += 2
                continue
            yield "".join(part)
            part = []
        else:
            part.append(text[i])
        i += 1
    yield "".join(part)


def parse_bool(name: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"Parameter '{name}' expects 'on' or 'off'")


def parse_uint(name: str, value: str, bits: int = 64) -> int:
    """qemu_strtou64 with base 0, then QAPI's range check for uintN."""
    text = value.strip()
    neg = text.startswith("-")
    digits = text[1:] if neg else text
    try:
        if digits[:2].lower() == "0x":
            number = int(digits[2:], 16)
        elif digits.startswith("0") and len(digits) > 1:
            number = int(digits[1:], 8)
        else:
            number = int(digits, 10) if digits.isdigit() else int("x")
    except ValueError:
        raise ValueError(f"Parameter '{name}' expects integer") from None
    if number >= 1 << 64:
        raise ValueError(f"Parameter '{name}' expects integer")
    number = (-number) & ((1 << 64) - 1) if neg else number
    if number >> bits:
        raise ValueError(f"Parameter '{name}' expects uint{bits}_t")
    return number


def parse_size(name: str, value: str, default_shift: int = 0) -> int:
    """qemu_strtosz: a number with an optional k/M/G/T/P/E suffix (binary units)."""
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        raise ValueError(
            f"Parameter '{name}' expects a non-negative number below 2^64\n"
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
            "and exabytes, respectively."
        )
    shift = _SIZE_SUFFIX[m.group(2).lower()] if m.group(2) else default_shift
    whole = m.group(1)
    number = int(float(whole) * (1 << shift)) if "." in whole else int(whole) << shift
    if number >= 1 << 64:
        raise ValueError(f"Parameter '{name}' expects a non-negative number below 2^64")
    return number


# -- -object ------------------------------------------------------------------------------

_SEV_PROPS: dict[str, str] = {
    "cbitpos": "uint32",
    "reduced-phys-bits": "uint32",
    "policy": "uint32",
    "handle": "uint32",
    "dh-cert-file": "str",
    "session-file": "str",
    "kernel-hashes": "bool",
    "legacy-vm-type": "OnOffAuto",
    "sev-device": "str",
}
_OTHER_OBJECTS = ("memory-backend-ram", "memory-backend-memfd", "memory-backend-file", "secret")


def parse_object(text: str) -> SevGuestConfig | ObjectConfig:
    """One ``-object`` argument, key=value or JSON (``{"qom-type": ...}``)."""
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ValueError(f"JSON parse error, {e}") from None
        if not isinstance(raw, dict):
            raise ValueError("Invalid parameter type for '<anonymous>', expected: object")
        props: dict[str, object] = raw
        typed = True
    else:
        props = dict(split_opts(text, "qom-type"))
        typed = False
    qom_type = _take_str(props, "qom-type")
    oid = _take_str(props, "id")
    if qom_type == "sev-guest":
        return _sev_guest(oid, props, typed)
    if qom_type in _OTHER_OBJECTS:
        return ObjectConfig(qom_type, oid, tuple(props.items()))
    raise ValueError(f"invalid object type: {qom_type}")


def _take_str(props: dict[str, object], name: str) -> str:
    if name not in props:
        raise ValueError(f"Parameter '{name}' is missing")
    value = props.pop(name)
    if not isinstance(value, str):
        raise ValueError(f"Invalid parameter type for '{name}', expected: string")
    return value


def _sev_guest(oid: str, props: dict[str, object], typed: bool) -> SevGuestConfig:
    values: dict[str, Any] = {}
    for name, value in props.items():
        kind = _SEV_PROPS.get(name)
        if kind is None:
            raise ValueError(f"Property 'sev-guest.{name}' not found")
        values[name.replace("-", "_")] = _convert(name, kind, value, typed)
    values.setdefault("reduced_phys_bits", 0)  # QEMU's default; refused later, as QEMU does
    return SevGuestConfig(id=oid, **values)


def _convert(name: str, kind: str, value: object, typed: bool) -> object:
    """One property: JSON values are checked by type, key=value strings are parsed."""
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"Invalid parameter type for '{name}', expected: string")
        return value
    if kind == "bool":
        if typed:
            if not isinstance(value, bool):
                raise ValueError(f"Invalid parameter type for '{name}', expected: boolean")
            return value
        return parse_bool(name, str(value))
    if kind == "OnOffAuto":
        if value not in ("on", "off", "auto"):
            raise ValueError(f"Parameter '{name}' does not accept value '{value}'")
        return value
    if typed:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not -(1 << 63) <= value < 1 << 64
        ):
            raise ValueError(f"Parameter '{name}' expects uint64")
        value = str(value & ((1 << 64) - 1))
    return parse_uint(name, str(value), 32)


# -- the option table ---------------------------------------------------------------------


class _Builder:
    """Mutable state while options are read; :meth:`finish` makes the frozen VmConfig."""

    def __init__(self) -> None:
        self.cfg = VmConfig()
        self.objects: list[SevGuestConfig | ObjectConfig] = []
        self.chardevs: dict[str, tuple[str, dict[str, str]]] = {}
        self.monitors: list[tuple[str, dict[str, str]]] = []
        self.bios: str | None = None

    def set(self, **changes: Any) -> None:
        self.cfg = replace(self.cfg, **changes)

    def add(self, name: str, item: object) -> None:
        self.set(**{name: (*getattr(self.cfg, name), item)})


Action = Callable[[_Builder, str], None]


def _name(b: _Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "guest"))
    b.set(name=opts.get("guest"))


def _machine(b: _Builder, arg: str) -> None:
    props = []
    for key, value in split_opts(arg, "type"):
        if key == "type":
            b.set(machine_type=value)
        elif key in ("confidential-guest-support", "memory-encryption"):
            b.set(confidential_guest_support=value)
        else:
            props.append((key, value))
    b.set(machine_props=(*b.cfg.machine_props, *props))


def _object(b: _Builder, arg: str) -> None:
    b.objects.append(parse_object(arg))


def _drive(b: _Builder, arg: str) -> None:
    opts = dict(split_opts(arg))
    if "file" not in opts:
        raise ValueError("Parameter 'file' is missing")
    drive = DriveConfig(
        interface=opts.get("if", "ide"),
        file=opts["file"],
        format=opts.get("format"),
        unit=parse_uint("unit", opts["unit"], 32) if "unit" in opts else None,
        readonly=parse_bool("readonly", opts.get("readonly", "off")),
        id=opts.get("id"),
    )
    if drive.interface == "pflash":
        if drive.format not in (None, "raw"):
            raise ValueError(f"pflash firmware must be format=raw, not '{drive.format}'")
        if drive.unit in (None, 0):
            b.set(firmware=drive.file)
            return
        if drive.unit == 1:
            b.set(nvram=drive.file)
            return
        raise ValueError(f"Parameter 'unit' expects 0 or 1 for if=pflash, got {drive.unit}")
    b.add("drives", drive)


def _memory(b: _Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "size"))
    if "size" in opts:
        b.set(memory=parse_size("size", opts["size"], default_shift=20))


def _smp(b: _Builder, arg: str) -> None:
    opts = {k: parse_uint(k, v, 32) for k, v in split_opts(arg, "cpus")}
    unknown = set(opts) - {"cpus", "sockets", "cores", "threads", "maxcpus", "dies", "clusters"}
    if unknown:
        raise ValueError(f"Invalid parameter '{sorted(unknown)[0]}'")
    sockets, cores, threads = (opts.get(k, 1) for k in ("sockets", "cores", "threads"))
    cpus = opts.get("cpus", sockets * cores * threads)
    maxcpus = opts.get("maxcpus", cpus)
    if cpus < 1:
        raise ValueError("Invalid CPU topology: CPU topology parameters must be greater than zero")
    if maxcpus < cpus:
        raise ValueError(
            "Invalid CPU topology: maxcpus must be equal to or greater than smp: "
            f"sockets ({sockets}) * cores ({cores}) * threads ({threads}) == maxcpus "
            f"({maxcpus}) < smp_cpus ({cpus})"
        )
    b.set(smp=SmpConfig(cpus, sockets, cores, threads, maxcpus))


def _qmp(b: _Builder, arg: str) -> None:
    pairs = split_opts(arg, "spec")
    spec = pairs[0][1]
    if not spec.startswith("unix:"):
        raise ValueError(f"'{spec}' is not supported: only unix:PATH monitors are emulated")
    b.add("qmp", _endpoint(spec[len("unix:") :], None, dict(pairs[1:])))


def _endpoint(path: str | None, fd: int | None, opts: dict[str, str]) -> QmpEndpoint:
    return QmpEndpoint(
        path=path,
        fd=fd,
        server=parse_bool("server", opts.get("server", "off")),
        wait=parse_bool("wait", opts.get("wait", "on")),
        pretty=parse_bool("pretty", opts.get("pretty", "off")),
    )


def _chardev(b: _Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "backend"))
    backend = opts.pop("backend", "")
    cid = opts.get("id")
    if not cid:
        raise ValueError("chardev: no id specified")
    if backend not in ("socket", "file"):
        raise ValueError(f"'{backend}' is not a valid char driver name")
    b.chardevs[cid] = (backend, opts)


def _mon(b: _Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "chardev"))
    if opts.get("mode", "readline") != "control":
        raise ValueError("only mode=control (QMP) monitors are emulated")
    b.monitors.append((opts.get("chardev", ""), opts))


def _serial(b: _Builder, arg: str) -> None:
    if not (arg.startswith(("file:", "chardev:")) or arg in ("none", "null", "stdio")):
        raise ValueError(f"'{arg.partition(':')[0]}' is not a valid char driver name")
    b.add("serial", arg)


def _display(b: _Builder, arg: str) -> None:
    kind = split_opts(arg, "type")[0][1]
    if kind != "none":
        raise ValueError(f"Display '{kind}' is not available.")
    b.set(display=kind)


def _unsupported(what: str) -> Action:
    def act(b: _Builder, arg: str) -> None:
        raise ValueError(f"{what} is not emulated by sevlaunch-vmm; remove this option")

    return act


def _ignored(b: _Builder, arg: str) -> None:
    b.add("ignored", arg)


def _setter(**changes: object) -> Action:
    return lambda b, arg: b.set(**changes)


def _path(name: str) -> Action:
    return lambda b, arg: b.set(**{name: arg})


def _bios(b: _Builder, arg: str) -> None:
    b.bios = arg


# name → (takes an argument, action)
OPTIONS: dict[str, tuple[bool, Action]] = {
    "name": (True, _name),
    "S": (False, _setter(start_paused=True)),
    "machine": (True, _machine),
    "M": (True, _machine),
    "object": (True, _object),
    "bios": (True, _bios),
    "drive": (True, _drive),
    "kernel": (True, _path("kernel")),
    "initrd": (True, _path("initrd")),
    "append": (True, _path("append")),
    "m": (True, _memory),
    "smp": (True, _smp),
    "cpu": (True, _path("cpu_model")),
    "qmp": (True, _qmp),
    "chardev": (True, _chardev),
    "mon": (True, _mon),
    "serial": (True, _serial),
    "display": (True, _display),
    "nodefaults": (False, _setter(nodefaults=True)),
    "no-user-config": (False, _setter(no_user_config=True)),
    "no-shutdown": (False, _setter(no_shutdown=True)),
    "pidfile": (True, _path("pidfile")),
    "daemonize": (False, _setter(daemonize=True)),
    "device": (True, _unsupported("-device")),
    "blockdev": (True, _unsupported("-blockdev")),
    **dict.fromkeys(("overcommit", "msg", "sandbox", "boot", "rtc", "uuid"), (True, _ignored)),
    **dict.fromkeys(("accel", "global", "audiodev"), (True, _ignored)),
    "enable-kvm": (False, _ignored),
    "no-hpet": (False, _ignored),
}


def parse_cmdline(argv: Sequence[str]) -> VmConfig:
    """Parse ``argv`` (without the program name) as QEMU would; raise CommandLineError."""
    b = _Builder()
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or word == "-":
            raise CommandLineError(
                word, "disk images as bare arguments are not emulated; use -drive", value=word
            )
        name = word[2:] if word.startswith("--") else word[1:]
        if name not in OPTIONS:
            raise CommandLineError(word, "invalid option", value=word)
        takes_arg, action = OPTIONS[name]
        if takes_arg and i + 1 >= len(argv):
            raise CommandLineError(word, "requires an argument", value=word)
        arg = argv[i + 1] if takes_arg else ""
        where = f"{word} {arg}" if takes_arg else word
        try:
            action(b, arg)
        except ValueError as e:
            raise CommandLineError(where, str(e), value=arg) from None
        i += 2 if takes_arg else 1
    return _finish(b)


def _finish(b: _Builder) -> VmConfig:
    """Cross-option checks QEMU makes once every option is read."""
    _firmware(b)
    _monitors(b)
    _serials(b)
    for obj in b.objects:
        if sum(o.id == obj.id for o in b.objects) > 1:
            raise CommandLineError(
                None, f"attempt to add duplicate property '{obj.id}' to object (type 'container')"
            )
    b.set(objects=tuple(o for o in b.objects if isinstance(o, ObjectConfig)))
    cgs = b.cfg.confidential_guest_support
    if cgs is None:
        return b.cfg
    target = next((o for o in b.objects if o.id == cgs), None)
    if target is None:
        raise CommandLineError(None, f"Device '{cgs}' not found", value=cgs)
    if not isinstance(target, SevGuestConfig):
        raise CommandLineError(
            None,
            "Invalid parameter type for 'confidential-guest-support', expected: "
            "confidential-guest-support",
            value=cgs,
        )
    _check_reduced_phys_bits(target)
    b.set(sev_guest=target)
    return b.cfg


def _check_reduced_phys_bits(sev: SevGuestConfig) -> None:
    if not 1 <= sev.reduced_phys_bits <= 63:
        raise CommandLineError(
            None,
            "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range "
            f"of 1 to 63, requested '{sev.reduced_phys_bits}'",
            value=sev.reduced_phys_bits,
        )


def _firmware(b: _Builder) -> None:
    if b.bios is None:
        return
    if b.cfg.firmware is not None:
        raise CommandLineError(
            "-bios", "conflicts with a pflash firmware drive (unit 0)", value=b.bios
        )
    b.set(firmware=b.bios)


def _monitors(b: _Builder) -> None:
    for chardev_id, _opts in b.monitors:
        if chardev_id not in b.chardevs:
            raise CommandLineError(None, f'chardev "{chardev_id}" not found', value=chardev_id)
        backend, opts = b.chardevs[chardev_id]
        if backend != "socket":
            raise CommandLineError(None, f"chardev '{chardev_id}' must be a socket for QMP")
        try:
            fd = parse_uint("fd", opts["fd"], 32) if "fd" in opts else None
            if fd is None and "path" not in opts:
                raise ValueError("chardev: socket: no host given")
            b.add("qmp", _endpoint(opts.get("path"), fd, opts))
        except ValueError as e:
            raise CommandLineError(f"-chardev id={chardev_id}", str(e)) from None


def _serials(b: _Builder) -> None:
    resolved = []
    for spec in b.cfg.serial:
        if not spec.startswith("chardev:"):
            resolved.append(spec)
            continue
        cid = spec[len("chardev:") :]
        backend, opts = b.chardevs.get(cid, ("", {}))
        if backend != "file" or "path" not in opts:
            raise CommandLineError("-serial", f"chardev '{cid}' is not a file chardev")
        resolved.append("file:" + opts["path"])
    b.set(serial=tuple(resolved))
