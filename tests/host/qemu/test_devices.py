"""Devices on the command line in libvirt 9.0's JSON."""

from __future__ import annotations

import json

from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu.devices import blockdev_pair, device_args, serial_args
from sevlaunch.host.qemu.layout import layout
from tests.host.qemu.cases import LIBVIRT_CASES, NO_DEFAULTS, disk, domain


def devices(xml: str, log_dir: str | None = None) -> list[str]:
    d = Domain.from_xml(xml)
    return device_args(d, layout(d), log_dir)


def test_a_block_disk_is_a_host_device_node_even_as_a_cdrom() -> None:
    argv = devices(
        domain(
            devices=disk("sda", "sata", "/dev/loop1", kind="block", device="cdrom") + NO_DEFAULTS
        )
    )
    storage = json.loads(argv[1])
    assert (storage["driver"], storage["filename"]) == ("host_device", "/dev/loop1")
    assert json.loads(argv[3])["read-only"] is True
    assert json.loads(argv[5]) == {
        "driver": "ide-cd",
        "bus": "ide.0",
        "drive": "libvirt-1-format",
        "id": "sata0-0-0",
    }


def test_format_and_read_only_reach_the_format_node() -> None:
    (storage, top) = blockdev_pair("libvirt-1", "/a.qcow2", read_only=True, fmt="qcow2")[1::2]
    assert json.loads(top) == {
        "node-name": "libvirt-1-format",
        "read-only": True,
        "driver": "qcow2",
        "file": "libvirt-1-storage",
    }
    assert json.loads(storage)["auto-read-only"] is True


def test_serial_ports_are_logged_in_the_log_directory() -> None:
    d = Domain.from_xml(
        domain(
            devices="<serial type='pty'/><serial type='file'><source path='/l/s1.log'/></serial>"
        )
    )
    argv = serial_args(d, "/l")
    assert argv[1] == "pty,id=charserial0,logfile=/l/console.log,logappend=on"
    assert argv[5] == "file,id=charserial1,path=/l/s1.log"
    assert json.loads(argv[7]) == {
        "driver": "isa-serial",
        "chardev": "charserial1",
        "id": "serial1",
        "index": 1,
    }
    assert serial_args(d, None)[1] == "pty,id=charserial0"


def test_audiodev_and_balloon_close_the_devices() -> None:
    argv = devices(LIBVIRT_CASES["q35-disk-order"])
    tail = argv[argv.index("-audiodev") :]
    assert tail[1] == '{"id":"audio1","driver":"none"}'
    assert json.loads(tail[3]) == {
        "driver": "virtio-balloon-pci",
        "id": "balloon0",
        "bus": "pci.4",
        "addr": "0x0",
    }
