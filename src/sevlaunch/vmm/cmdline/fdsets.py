"""``-add-fd``: descriptors the hypervisor inherits, grouped in fd sets and named
``/dev/fdset/N`` where a path is expected (QEMU's monitor/fds.c).

libvirt opens some files itself and passes them this way: the serial port's file
(``-add-fd set=0,fd=24,opaque=serial0-source`` then ``-chardev file,path=/dev/fdset/0``), so
that the hypervisor needs no permission on the path. A file chardev naming a set is resolved to
the set's descriptor here; QEMU dup()s it the same way when the chardev opens.
"""

from __future__ import annotations

import os
from dataclasses import replace

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline.builder import Builder
from sevlaunch.vmm.cmdline.config import FdConfig
from sevlaunch.vmm.cmdline.opts import parse_uint, split_opts

PREFIX = "/dev/fdset/"


def add_fd(b: Builder, arg: str) -> None:
    """``-add-fd fd=M,set=N[,opaque=S]``; M must be open and not stdin/stdout/stderr."""
    opts = dict(split_opts(arg))
    unknown = sorted(set(opts) - {"fd", "set", "opaque"})
    if unknown:
        raise ValueError(f"Invalid parameter '{unknown[0]}'")
    for name in ("fd", "set"):
        if name not in opts:
            raise ValueError(f"{name} option is required and must be non-negative")
    fd = parse_uint("fd", opts["fd"], 31)
    fdset = parse_uint("set", opts["set"], 31)
    if fd <= 2:
        raise ValueError("fd cannot be a standard I/O stream")
    try:
        os.fstat(fd)
    except OSError as exc:
        raise ValueError("fd is not valid or already in use") from exc
    b.add("fds", FdConfig(fd, fdset, opts.get("opaque")))


def fdset_fd(path: str, fds: tuple[FdConfig, ...]) -> int | None:
    """The descriptor behind ``/dev/fdset/N``, None for any other path; a set nobody added
    fails as QEMU's open does."""
    if not path.startswith(PREFIX):
        return None
    try:
        wanted = int(path[len(PREFIX) :])
    except ValueError as exc:
        raise ValueError(f"Could not open '{path}': Invalid argument") from exc
    for entry in fds:
        if entry.set == wanted:
            return entry.fd
    raise ValueError(f"Could not open '{path}': No such file or directory")


def resolve_chardevs(b: Builder) -> None:
    """File chardevs naming an fd set get its descriptor (``ChardevConfig.fd``)."""
    for cid, chardev in list(b.chardevs.items()):
        if chardev.backend != "file" or chardev.path is None:
            continue
        try:
            fd = fdset_fd(chardev.path, b.cfg.fds)
        except ValueError as exc:
            raise CommandLineError(f"-chardev id={cid}", str(exc), value=chardev.path) from exc
        if fd is not None:
            b.chardevs[cid] = replace(chardev, fd=fd)
