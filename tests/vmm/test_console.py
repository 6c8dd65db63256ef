"""The serial console: ttyS0's output reaches port 0's chardev as QEMU's backends take it."""

from __future__ import annotations

import io
import os
import select
from pathlib import Path

from sevlaunch.vmm.cmdline import ChardevConfig, SerialPort
from sevlaunch.vmm.console import Console


def test_a_file_port_truncates_unless_append_and_logs_copy(tmp_path: Path) -> None:
    out, log = tmp_path / "serial0.log", tmp_path / "copy.log"
    out.write_text("old run\n")
    log.write_text("kept\n")
    port = SerialPort(
        0, ChardevConfig("c0", "file", path=str(out), logfile=str(log), logappend=True)
    )
    console = Console([port])
    console("Linux version 6.1")
    console.close()
    assert out.read_text() == "Linux version 6.1\n"
    assert log.read_text() == "kept\nLinux version 6.1\n"
    appending = Console([SerialPort(0, ChardevConfig("c0", "file", path=str(out), append=True))])
    appending("again")
    appending.close()
    assert out.read_text() == "Linux version 6.1\nagain\n"


def test_only_port_zero_is_the_console(tmp_path: Path) -> None:
    zero, one = tmp_path / "0.log", tmp_path / "1.log"
    console = Console(
        [
            SerialPort(1, ChardevConfig("c1", "file", path=str(one))),
            SerialPort(0, ChardevConfig("c0", "file", path=str(zero))),
        ]
    )
    console("boot")
    console.close()
    assert (zero.read_text(), one.read_text()) == ("boot\n", "")


def test_a_pty_is_announced_readable_and_logged(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    announce = io.StringIO()
    console = Console(
        [SerialPort(0, ChardevConfig("charserial0", "pty", logfile=str(log)))], announce
    )
    path = console.ptys["charserial0"]
    assert announce.getvalue() == f"char device redirected to {path} (label charserial0)\n"
    console("dropped: nobody reads yet")
    try:
        for line in ("seen", "seen again"):  # a second reader, after the first left
            reader = os.open(path, os.O_RDONLY | os.O_NOCTTY)
            try:
                console(line)
                assert _read_line(reader) == line.encode() + b"\r\n"
            finally:
                os.close(reader)
            console("dropped: the reader left")
    finally:
        console.close()
    assert log.read_text() == (
        "dropped: nobody reads yet\nseen\ndropped: the reader left\n"
        "seen again\ndropped: the reader left\n"
    )


def _read_line(reader: int) -> bytes:
    """Everything up to the first CR LF: a read returns what the tty has so far, which may be
    less than one write (its line discipline is fed by a kernel worker)."""
    data = b""
    while not data.endswith(b"\r\n"):
        ready, _, _ = select.select([reader], [], [], 10)  # a bound on a hang, not a timing
        assert ready, data
        data += os.read(reader, 4096)
    return data


def test_a_file_port_on_an_fd_set_writes_to_the_passed_descriptor(tmp_path: Path) -> None:
    """libvirt opens the serial file itself and passes it: -add-fd, path=/dev/fdset/N."""
    target = tmp_path / "console.log"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    console = Console([SerialPort(0, ChardevConfig("c0", "file", path="/dev/fdset/0", fd=fd))])
    os.close(fd)  # the console holds its own duplicate, as QEMU does
    console("OVMF: booting")
    console.close()
    assert target.read_text() == "OVMF: booting\n"
