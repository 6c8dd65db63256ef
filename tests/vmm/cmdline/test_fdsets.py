"""-add-fd and /dev/fdset/N: the descriptors libvirt opens for the hypervisor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import FdConfig, parse_cmdline
from sevlaunch.vmm.cmdline.fdsets import fdset_fd
from tests.vmm import libvirt_argv


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    os.close(read)
    os.close(write)


def test_a_file_chardev_on_an_fd_set_gets_its_descriptor(pipe: tuple[int, int]) -> None:
    _read, write = pipe
    cfg = parse_cmdline(
        [
            "-add-fd", f"set=0,fd={write},opaque=serial0-source",
            "-chardev", "file,id=charserial0,path=/dev/fdset/0,append=on",
            "-device", "isa-serial,chardev=charserial0,id=serial0,index=0",
        ]
    )  # fmt: skip
    assert cfg.fds == (FdConfig(write, 0, "serial0-source"),)
    assert cfg.serials[0].chardev.fd == write
    assert cfg.serials[0].chardev.path == "/dev/fdset/0"


def test_fd_set_lookup() -> None:
    fds = (FdConfig(7, 3),)
    assert fdset_fd("/dev/fdset/3", fds) == 7
    assert fdset_fd("/var/log/serial.log", fds) is None
    with pytest.raises(ValueError, match="No such file or directory"):
        fdset_fd("/dev/fdset/4", fds)
    with pytest.raises(ValueError, match="Invalid argument"):
        fdset_fd("/dev/fdset/x", fds)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-add-fd", "set=0"], "fd option is required"),
        (["-add-fd", "fd=9"], "set option is required"),
        (["-add-fd", "set=0,fd=1"], "fd cannot be a standard I/O stream"),
        (["-add-fd", "set=0,fd=1000"], "fd is not valid or already in use"),
        (["-add-fd", "set=0,fd=9,colour=red"], "Invalid parameter 'colour'"),
        (["-chardev", "file,id=c,path=/dev/fdset/9"], "Could not open '/dev/fdset/9'"),
    ],
)
def test_bad_fd_sets_fail_at_start_up(argv: list[str], message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        parse_cmdline(argv)


def test_libvirts_domain_command_line(tmp_path: Path, pipe: tuple[int, int]) -> None:
    """What Debian's libvirt 9.0 wrote for an SEV guest: monitor fd, -add-fd serial, disk."""
    read, write = pipe
    cfg = parse_cmdline(libvirt_argv.sample(tmp_path, read, write))
    assert cfg.firmware == str(tmp_path / "OVMF.fd")
    assert [(d.file, d.driver, d.id) for d in cfg.disks] == [
        (str(tmp_path / "root.img"), "virtio-blk-pci", "virtio-disk0")
    ]
    assert cfg.serials[0].chardev.fd == write
    assert cfg.qmp[0].fd == read
    assert cfg.accel == "kvm"
    assert cfg.display == "none"
    assert cfg.sev_guest is not None
    assert cfg.sev_guest.kernel_hashes
    assert [d.id for d in cfg.devices] == ["pci.1", "pci.2", "virtio-disk0", "serial0"]
