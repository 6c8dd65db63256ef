"""Character devices, the QMP monitor and the legacy -serial forms."""

from __future__ import annotations

import pytest

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import parse_cmdline
from sevlaunch.vmm.cmdline.config import ChardevConfig, QmpEndpoint, SerialPort


def test_libvirts_pty_and_file_serials_with_logs() -> None:
    cfg = parse_cmdline(
        [
            "-chardev", "pty,id=charserial0,logfile=/l/console.log,logappend=on",
            "-device", '{"driver":"isa-serial","chardev":"charserial0","id":"serial0","index":0}',
            "-chardev", "file,id=charserial1,path=/l/s1.log,append=on",
            "-device", '{"driver":"isa-serial","chardev":"charserial1","id":"serial1","index":1}',
        ]
    )  # fmt: skip
    assert cfg.serials == (
        SerialPort(
            0, ChardevConfig("charserial0", "pty", logfile="/l/console.log", logappend=True)
        ),
        SerialPort(1, ChardevConfig("charserial1", "file", path="/l/s1.log", append=True)),
    )


def test_legacy_serial_forms_get_qemus_implicit_chardevs() -> None:
    cfg = parse_cmdline(["-serial", "pty", "-serial", "none", "-serial", "file:/c.log"])
    assert cfg.serials == (
        SerialPort(0, ChardevConfig("serial0", "pty")),
        SerialPort(1, ChardevConfig("serial1", "file", path="/c.log")),
    )


def test_monitor_on_a_socket_chardev_or_fd() -> None:
    cfg = parse_cmdline(
        ["-chardev", "socket,id=m,fd=3,server=on,wait=off", "-mon", "chardev=m,mode=control"]
    )
    assert cfg.qmp == (QmpEndpoint(fd=3, server=True, wait=False),)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-chardev", "pty"], "chardev: no id specified"),
        (["-chardev", "tty,id=t"], "'tty' is not a valid char driver name"),
        (["-chardev", "pty,id=p,path=/x"], "Invalid parameter 'path'"),
        (["-chardev", "file,id=f"], "chardev: file: no filename given"),
        (["-chardev", "socket,id=s"], "chardev: socket: no host given"),
        (["-chardev", "pty,id=p", "-chardev", "null,id=p"], "duplicate property 'p'"),
        (["-serial", "tcp:1.2.3.4:5"], "'tcp' is not a valid char driver name"),
        (["-serial", "chardev:nope"], "chardev 'nope' not found"),
        (["-chardev", "pty,id=p", "-mon", "chardev=p,mode=control"], "must be a socket for QMP"),
        (["-mon", "chardev=x,mode=readline"], "only mode=control (QMP) monitors are emulated"),
    ],
)
def test_refusals(argv: list[str], message: str) -> None:
    with pytest.raises(CommandLineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cmdline(argv)
