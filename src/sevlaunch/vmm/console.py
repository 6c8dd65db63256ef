"""The guest's serial console: what the guest prints on ttyS0 goes to the chardev behind
serial port 0, as QEMU's chardev backends take it.

``file`` truncates unless ``append=on``; ``pty`` opens a pseudo-terminal, announces it as QEMU
does (``char device redirected to /dev/pts/N (label ID)``) and drops output while no one has
its other end open; ``null`` drops everything. ``logfile`` gets a copy of every byte whatever
the backend (truncated unless ``logappend=on``).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import tty
from collections.abc import Sequence
from typing import TextIO

from sevlaunch.vmm.cmdline import ChardevConfig, SerialPort


class Console:
    """Serial port 0's output; ``ptys`` maps a chardev id to its pseudo-terminal's path."""

    def __init__(self, ports: Sequence[SerialPort], announce: TextIO = sys.stderr) -> None:
        self.ptys: dict[str, str] = {}
        self._masters: dict[str, int] = {}
        self._opened: list[int] = []
        self._files: list[int] = []  # serial port 0's outputs
        self._pty: int | None = None
        for port in ports:  # QEMU opens every chardev at start-up, console or not
            outputs = self._open(port.chardev, announce)
            if port.index == 0:
                self._files = outputs
                self._pty = self._masters.get(port.chardev.id)

    def _open_pty(self, chardev: ChardevConfig, announce: TextIO) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        os.close(slave)  # QEMU keeps only the master; a reader opens the slave by its path
        os.set_blocking(master, False)
        self.ptys[chardev.id] = path
        print(f"char device redirected to {path} (label {chardev.id})", file=announce, flush=True)
        self._masters[chardev.id] = master

    def _open(self, chardev: ChardevConfig, announce: TextIO) -> list[int]:
        """The chardev's file outputs (its file or stdout, and its logfile)."""
        outputs = []
        if chardev.backend == "file" and chardev.fd is not None:  # /dev/fdset/N: libvirt's
            outputs.append(os.dup(chardev.fd))
        elif chardev.backend == "file" and chardev.path is not None:
            outputs.append(_open_output(chardev.path, append=chardev.append))
        elif chardev.backend == "pty":
            self._open_pty(chardev, announce)
        elif chardev.backend == "stdio":
            outputs.append(os.dup(sys.stdout.fileno()))
        if chardev.logfile is not None:
            outputs.append(_open_output(chardev.logfile, append=chardev.logappend))
        self._opened += outputs
        return outputs

    def __call__(self, line: str) -> None:
        data = (line + "\n").encode()
        for fd in self._files:
            os.write(fd, data)
        if self._pty is not None and _has_reader(self._pty):
            with contextlib.suppress(BlockingIOError, OSError):  # a full buffer: QEMU drops too
                os.write(self._pty, data.replace(b"\n", b"\r\n"))

    def close(self) -> None:
        for fd in (*self._opened, *self._masters.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._opened, self._files, self._masters, self._pty = [], [], {}, None


def _has_reader(master: int) -> bool:
    """Whether the pty's other end is open: with none, the master polls as hung up. QEMU's pty
    backend drops output then (it is not "connected"); the kernel would keep it for the next
    reader, who would see what was printed before it came."""
    poll = select.poll()
    poll.register(master, select.POLLOUT)
    return not any(events & select.POLLHUP for _, events in poll.poll(0))


def _open_output(path: str, *, append: bool) -> int:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(path, flags | os.O_CLOEXEC, 0o600)
