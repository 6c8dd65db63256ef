"""Where a domain's guest output goes: only its own log directory, ``<state>/log/NAME/``, as
libvirt keeps a guest's log in ``/var/log/libvirt/qemu/NAME.log``.

A ``<serial type='file'>`` source and a ``<log file=...>`` must name a file directly in that
directory (refused at define otherwise), so neither the console API nor the guest's output can
reach any other file; a relative path never gets this far (the XML parser refuses it). Serial
port 0 is the console: a pty or the implicit port of a domain without one is logged to
``console.log``, other pty ports to ``serialN.log``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain, SerialConfig

LOG_ROOT = "log"
CONSOLE_LOG = "console.log"


def log_dir(state_dir: Path, name: str) -> Path:
    """A domain's log directory (its name is a safe path component: libvirt's name rules)."""
    return state_dir / LOG_ROOT / name


@dataclass(frozen=True)
class SerialOutput:
    """What one serial port writes: its own file (``file`` serials) and the log copy."""

    index: int
    path: str | None
    log: str | None
    log_append: bool


def serial_ports(domain: Domain) -> tuple[SerialConfig, ...]:
    """The domain's serial ports with libvirt's post-parse: a ``<console type='pty'>`` alone is
    serial port 0 (a pty), and a port without ``<target port>`` takes the highest port in use
    plus one, in order (virDomainDefPostParse)."""
    serials = domain.serials
    if not serials and any(tag == "console" for tag, _ in domain.device_elements()):
        serials = (SerialConfig(type="pty"),)
    ports = [s.port for s in serials]
    for index, port in enumerate(ports):
        if port is None:
            ports[index] = max((p for p in ports if p is not None), default=-1) + 1
    return tuple(replace(s, port=p) for s, p in zip(serials, ports, strict=True))


def serial_outputs(domain: Domain, log_directory: PurePosixPath | Path) -> list[SerialOutput]:
    """Each serial port's files; a pty or null port without ``<log>`` gets the default log."""
    outputs = []
    for index, serial in enumerate(serial_ports(domain)):
        path = serial.path if serial.type == "file" else None
        log = serial.log_file
        append = bool(serial.log_append)
        if log is None and path is None:
            log, append = str(log_directory / default_log(index)), True
        outputs.append(SerialOutput(index, path, log, append))
    return outputs


def default_log(index: int) -> str:
    return CONSOLE_LOG if index == 0 else f"serial{index}.log"


def console_path(domain: Domain, log_directory: Path) -> Path:
    """The console's file: serial 0's own file or log, else the implicit console's."""
    outputs = serial_outputs(domain, log_directory)
    if not outputs:
        return log_directory / CONSOLE_LOG
    first = outputs[0]
    found = Path(first.path or first.log or log_directory / CONSOLE_LOG)
    if found.parent != log_directory:  # define refuses this; a stored row from before must not
        return log_directory / CONSOLE_LOG  # make the console read another file
    return found


def check_log_paths(domain: Domain, log_directory: Path) -> None:
    """Define-time: every file a serial port writes lies directly in the log directory, and no
    two ports write the same file."""
    seen: dict[str, int] = {}
    ports = serial_ports(domain)
    for output, serial in zip(serial_outputs(domain, log_directory), ports, strict=True):
        for what, path in (("source path", output.path), ("log file", output.log)):
            if path is None:
                continue
            _check_inside(output.index, what, path, log_directory, serial)
            if path in seen:
                raise DomainXMLError(
                    "unsupported configuration",
                    f"serial{output.index} and serial{seen[path]} would both write '{path}'",
                    field=f"devices/serial[{output.index + 1}]",
                    value=path,
                )
            seen[path] = output.index


def _check_inside(
    index: int, what: str, path: str, log_directory: Path, serial: SerialConfig
) -> None:
    where = "serial/source/@path" if what == "source path" else "serial/log/@file"
    pure = PurePosixPath(path)
    inside = (
        os.path.normpath(path) == path
        and pure.parent == PurePosixPath(log_directory)
        and pure.name not in ("", ".", "..")
    )
    if not inside:
        raise DomainXMLError(
            "unsupported configuration",
            f"serial{index} {what} '{path}' ({serial.type}) is outside the domain's log "
            f"directory '{log_directory}': the host manager writes a guest's output only "
            f"there, as libvirt does in /var/log/libvirt/qemu; use e.g. "
            f"'{log_directory / f'serial{index}.log'}'",
            field=where,
            value=path,
        )
