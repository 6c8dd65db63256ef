"""The option table: every option ``sevlaunch-vmm`` accepts, whether it takes an argument, and
the action that records it. Chardevs, block devices, devices and objects have their own
modules; the simple options are here.

Accepted and only recorded, because libvirt always adds them and they change nothing an
emulated SEV launch can show: ``-overcommit``, ``-msg``, ``-sandbox``, ``-accel``,
``-enable-kvm``, ``-global``, ``-audiodev``, ``-no-hpet``; their text is kept in
``VmConfig.ignored`` (``-accel``'s type also in ``VmConfig.accel``, which ``query-kvm`` reads).
Modelled: ``-rtc base=``, ``-boot strict=``, ``-no-acpi``,
``-no-shutdown`` (a guest power-off stops the VM instead of ending the process), ``-uuid``.
"""

from __future__ import annotations

import re

from sevlaunch.vmm.cmdline import block, chardev, devices, fdsets
from sevlaunch.vmm.cmdline.builder import Action, Builder
from sevlaunch.vmm.cmdline.config import FwCfgEntry, SmpConfig
from sevlaunch.vmm.cmdline.objects import parse_object
from sevlaunch.vmm.cmdline.opts import parse_bool, parse_size, parse_uint, split_opts

_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_BOOT_KEYS = {"order", "once", "menu", "splash", "splash-time", "reboot-timeout", "strict"}
_RTC_KEYS = {"base", "clock", "driftfix"}
_RTC_DATE = re.compile(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\d)?")


def _name(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "guest"))
    b.set(name=opts.get("guest"))


def _machine(b: Builder, arg: str) -> None:
    props = []
    for key, value in split_opts(arg, "type"):
        if key == "type":
            b.set(machine_type=value)
        elif key in ("confidential-guest-support", "memory-encryption"):
            b.set(confidential_guest_support=value)
        elif key == "acpi":
            b.set(acpi=value != "off")
        else:
            props.append((key, value))
    b.set(machine_props=(*b.cfg.machine_props, *props))


def _object(b: Builder, arg: str) -> None:
    b.objects.append(parse_object(arg))


def _memory(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "size"))
    if "size" in opts:
        b.set(memory=parse_size("size", opts["size"], default_shift=20))


def _smp(b: Builder, arg: str) -> None:
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


def _display(b: Builder, arg: str) -> None:
    kind = split_opts(arg, "type")[0][1]
    if kind != "none":
        raise ValueError(f"Display '{kind}' is not available.")
    b.set(display=kind)


def _uuid(b: Builder, arg: str) -> None:
    if not _UUID.fullmatch(arg):
        raise ValueError("Fail to parse UUID string.")
    b.set(uuid=arg.lower())


def _rtc(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg))
    unknown = sorted(set(opts) - _RTC_KEYS)
    if unknown:
        raise ValueError(f"Invalid parameter '{unknown[0]}'")
    base = opts.get("base", "utc")
    if base not in ("utc", "localtime") and not _RTC_DATE.fullmatch(base):
        raise ValueError(
            "invalid datetime format\nvalid formats: '2006-06-17T16:01:21' or '2006-06-17'"
        )
    b.set(rtc_base=base)


def _boot(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "order"))
    unknown = sorted(set(opts) - _BOOT_KEYS)
    if unknown:
        raise ValueError(f"Invalid parameter '{unknown[0]}'")
    b.set(boot_strict=parse_bool("strict", opts.get("strict", "off")))
    b.add("ignored", f"-boot {arg}")


def _fw_cfg(b: Builder, arg: str) -> None:
    """QEMU's ``-fw_cfg [name=]NAME,file=PATH|string=TEXT`` (vl.c parse_fw_cfg)."""
    opts = dict(split_opts(arg, "name"))
    name = opts.get("name")
    if not name:
        raise ValueError("invalid argument(s)")
    if ("file" in opts) == ("string" in opts):
        raise ValueError("invalid argument(s)")
    if len(name) > 55:
        raise ValueError("name too long (max. 55 char)")
    unknown = sorted(set(opts) - {"name", "file", "string", "gen_id"})
    if unknown:
        raise ValueError(f"Invalid parameter '{unknown[0]}'")
    b.add("fw_cfg", FwCfgEntry(name, opts.get("string"), opts.get("file")))


def _accel(b: Builder, arg: str) -> None:
    """``-accel TYPE``: nothing to accelerate, but ``query-kvm`` answers as QEMU would."""
    b.set(accel=split_opts(arg, "accel")[0][1])
    b.add("ignored", f"-accel {arg}")


def _ignored(name: str) -> Action:
    return lambda b, arg: b.add("ignored", f"-{name} {arg}".rstrip())


def _setter(**changes: object) -> Action:
    return lambda b, arg: b.set(**changes)


def _path(name: str) -> Action:
    return lambda b, arg: b.set(**{name: arg})


def _bios(b: Builder, arg: str) -> None:
    b.bios = arg


# name → (takes an argument, action)
OPTIONS: dict[str, tuple[bool, Action]] = {
    "name": (True, _name),
    "S": (False, _setter(start_paused=True)),
    "machine": (True, _machine),
    "M": (True, _machine),
    "object": (True, _object),
    "bios": (True, _bios),
    "drive": (True, block.drive),
    "blockdev": (True, block.blockdev),
    "device": (True, devices.device),
    "kernel": (True, _path("kernel")),
    "initrd": (True, _path("initrd")),
    "append": (True, _path("append")),
    "m": (True, _memory),
    "smp": (True, _smp),
    "cpu": (True, _path("cpu_model")),
    "uuid": (True, _uuid),
    "qmp": (True, chardev.qmp),
    "chardev": (True, chardev.chardev),
    "mon": (True, chardev.mon),
    "serial": (True, chardev.serial),
    "display": (True, _display),
    "nographic": (False, _setter(display="none")),  # with -nodefaults: no serial, no monitor
    "add-fd": (True, fdsets.add_fd),
    "fw_cfg": (True, _fw_cfg),
    "nodefaults": (False, _setter(nodefaults=True)),
    "no-user-config": (False, _setter(no_user_config=True)),
    "no-shutdown": (False, _setter(no_shutdown=True)),
    "no-acpi": (False, _setter(acpi=False)),
    "rtc": (True, _rtc),
    "boot": (True, _boot),
    "pidfile": (True, _path("pidfile")),
    "daemonize": (False, _setter(daemonize=True)),
    **{name: (True, _ignored(name)) for name in ("overcommit", "msg", "sandbox")},
    "accel": (True, _accel),
    **{name: (True, _ignored(name)) for name in ("global", "audiodev")},
    "enable-kvm": (False, lambda b, arg: _accel(b, "kvm")),
    "no-hpet": (False, _ignored("no-hpet")),
}
