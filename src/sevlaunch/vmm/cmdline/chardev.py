"""Character devices: ``-chardev`` (socket, file, pty, null; ``logfile``/``logappend``), the
QMP monitor (``-mon``, ``-qmp``) and the legacy ``-serial`` forms. Messages are QEMU's
(chardev/char.c, chardev/char-socket.c, monitor/monitor.c)."""

from __future__ import annotations

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline.builder import Builder
from sevlaunch.vmm.cmdline.config import ChardevConfig, QmpEndpoint, SerialPort
from sevlaunch.vmm.cmdline.opts import parse_bool, parse_uint, split_opts

# backend -> the keys it takes besides id, logfile and logappend
_BACKEND_KEYS = {
    "socket": {"path", "fd", "server", "wait", "telnet", "tn3270", "websocket", "reconnect"},
    "file": {"path", "append", "mux"},
    "pty": {"mux"},
    "null": set(),
    "stdio": {"signal", "mux"},
}
_COMMON_KEYS = {"id", "logfile", "logappend"}


def chardev(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "backend"))
    backend = opts.pop("backend", "")
    cid = opts.get("id")
    if not cid:
        raise ValueError("chardev: no id specified")
    if backend not in _BACKEND_KEYS:
        raise ValueError(f"'{backend}' is not a valid char driver name")
    unknown = sorted(set(opts) - _COMMON_KEYS - _BACKEND_KEYS[backend])
    if unknown:
        raise ValueError(f"Invalid parameter '{unknown[0]}'")
    if cid in b.chardevs:
        raise ValueError(f"attempt to add duplicate property '{cid}' to object (type 'container')")
    b.chardevs[cid] = _chardev_config(cid, backend, opts)


def _chardev_config(cid: str, backend: str, opts: dict[str, str]) -> ChardevConfig:
    if backend == "file" and "path" not in opts:
        raise ValueError("chardev: file: no filename given")
    fd = parse_uint("fd", opts["fd"], 32) if "fd" in opts else None
    if backend == "socket" and fd is None and "path" not in opts:
        raise ValueError("chardev: socket: no host given")
    return ChardevConfig(
        id=cid,
        backend=backend,
        path=opts.get("path"),
        fd=fd,
        server=parse_bool("server", opts.get("server", "off")),
        wait=parse_bool("wait", opts.get("wait", "on")),
        append=parse_bool("append", opts.get("append", "off")),
        logfile=opts.get("logfile"),
        logappend=parse_bool("logappend", opts.get("logappend", "off")),
    )


def mon(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg, "chardev"))
    if opts.get("mode", "readline") != "control":
        raise ValueError("only mode=control (QMP) monitors are emulated")
    b.monitors.append(opts.get("chardev", ""))


def qmp(b: Builder, arg: str) -> None:
    pairs = split_opts(arg, "spec")
    spec = pairs[0][1]
    if not spec.startswith("unix:"):
        raise ValueError(f"'{spec}' is not supported: only unix:PATH monitors are emulated")
    opts = dict(pairs[1:])
    b.add(
        "qmp",
        QmpEndpoint(
            path=spec[len("unix:") :],
            server=parse_bool("server", opts.get("server", "off")),
            wait=parse_bool("wait", opts.get("wait", "on")),
            pretty=parse_bool("pretty", opts.get("pretty", "off")),
        ),
    )


def serial(b: Builder, arg: str) -> None:
    """``-serial chardev:ID | file:PATH | pty | null | stdio | none``."""
    if not (arg.startswith(("file:", "chardev:")) or arg in ("none", "null", "stdio", "pty")):
        raise ValueError(f"'{arg.partition(':')[0]}' is not a valid char driver name")
    b.serial_specs.append(arg)


def resolve_monitors(b: Builder) -> None:
    for chardev_id in b.monitors:
        found = b.chardevs.get(chardev_id)
        if found is None:
            raise CommandLineError(None, f'chardev "{chardev_id}" not found', value=chardev_id)
        if found.backend != "socket":
            raise CommandLineError(None, f"chardev '{chardev_id}' must be a socket for QMP")
        b.add(
            "qmp", QmpEndpoint(path=found.path, fd=found.fd, server=found.server, wait=found.wait)
        )


def legacy_serials(b: Builder) -> list[SerialPort]:
    """The ``-serial`` options as ports 0, 1, ...; each legacy form gets QEMU's implicit
    chardev (``serialN``)."""
    ports: list[SerialPort] = []
    for spec in b.serial_specs:
        index = len(ports)
        if spec == "none":
            continue
        if spec.startswith("chardev:"):
            cid = spec[len("chardev:") :]
            found = b.chardevs.get(cid)
            if found is None:
                raise CommandLineError("-serial", f"chardev '{cid}' not found", value=cid)
        elif spec.startswith("file:"):
            found = ChardevConfig(f"serial{index}", "file", path=spec[len("file:") :])
        else:
            found = ChardevConfig(f"serial{index}", spec)
        ports.append(SerialPort(index, found))
    return ports
