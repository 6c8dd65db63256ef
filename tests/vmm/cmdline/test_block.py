"""-drive and -blockdev: node chains, libvirt's pflash loader, and QEMU's refusals."""

from __future__ import annotations

import pytest

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import parse_cmdline

STORAGE = (
    '{"driver":"file","filename":"/fw/OVMF_CODE.fd","node-name":"fw-storage","auto-read-only":true}'
)
FORMAT = '{"node-name":"fw-format","read-only":true,"driver":"raw","file":"fw-storage"}'
VARS = '{"driver":"file","filename":"/vars.fd","node-name":"vars-storage"}'
VARS_FORMAT = '{"node-name":"vars-format","driver":"raw","file":"vars-storage"}'


def test_libvirts_pflash_loader_and_nvram() -> None:
    cfg = parse_cmdline(
        [
            "-blockdev", STORAGE, "-blockdev", FORMAT, "-blockdev", VARS, "-blockdev", VARS_FORMAT,
            "-machine", "pc-q35-7.2,pflash0=fw-format,pflash1=vars-format",
        ]
    )  # fmt: skip
    assert (cfg.firmware, cfg.nvram) == ("/fw/OVMF_CODE.fd", "/vars.fd")
    assert [b.node_name for b in cfg.blockdevs] == [
        "fw-storage", "fw-format", "vars-storage", "vars-format",
    ]  # fmt: skip
    assert cfg.blockdevs[1].read_only


def test_key_value_blockdev_and_legacy_drives() -> None:
    cfg = parse_cmdline(
        [
            "-blockdev", "driver=host_device,filename=/dev/sdb,node-name=s",
            "-blockdev", "driver=qcow2,file=s,node-name=f",
            "-drive", "if=pflash,format=raw,unit=0,file=/fw.fd,readonly=on",
            "-device", "ide-hd,drive=f,bus=ide.0",
            "-machine", "q35",
        ]
    )  # fmt: skip
    assert cfg.firmware == "/fw.fd"
    assert [(d.file, d.format) for d in cfg.disks] == [("/dev/sdb", "qcow2")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-blockdev", '{"driver":"nbd","node-name":"n"}'], "'nbd' is not emulated"),
        (["-blockdev", '{"driver":"file","node-name":"n"}'], "Parameter 'filename' is missing"),
        (["-blockdev", '{"driver":"raw","node-name":"n","file":"x"}'], "node-name=x"),
        (
            ["-blockdev", STORAGE, "-blockdev", STORAGE],
            "Duplicate nodes with node-name='fw-storage'",
        ),
        (["-machine", "q35,pflash0=missing"], "Cannot find device= nor node-name=missing"),
        (["-drive", "if=pflash,file=/a,unit=0", "-bios", "/b"], "conflicts with a pflash"),
        (["-drive", "if=pflash,file=/a,unit=2"], "expects 0 or 1 for if=pflash"),
        (["-drive", "if=virtio"], "Parameter 'file' is missing"),
    ],
)
def test_refusals(argv: list[str], message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        parse_cmdline(argv)
