"""The command lines Debian's libvirt 9.0 gives an emulator, as captured from its logs.

``probe`` is what virQEMUCapsInitQMP runs once per binary; ``domain`` what qemuBuildCommandLine
writes for an SEV guest with measured direct boot, a virtio disk on a PCIe root port, a
serial port whose file libvirt opens itself (``-add-fd``) and the monitor as a listening fd.
Paths and descriptors are parameters; everything else is libvirt's text.
"""

from __future__ import annotations

import json
from pathlib import Path


def probe(qmp: Path, pidfile: Path) -> list[str]:
    return [
        "-S",
        "-no-user-config",
        "-nodefaults",
        "-nographic",
        "-machine",
        "none,accel=kvm:tcg",
        "-qmp",
        f"unix:{qmp},server=on,wait=off",
        "-pidfile",
        str(pidfile),
        "-daemonize",
    ]


def sev_guest(cbitpos: int, policy: int, godh: Path | None, session: Path | None) -> str:
    obj: dict[str, object] = {
        "qom-type": "sev-guest",
        "id": "lsec0",
        "cbitpos": cbitpos,
        "reduced-phys-bits": 1,
        "policy": policy,
    }
    if godh is not None and session is not None:
        obj["dh-cert-file"] = str(godh)
        obj["session-file"] = str(session)
    obj["kernel-hashes"] = True
    return json.dumps(obj, separators=(",", ":"))


def domain(
    *,
    name: str,
    firmware: Path,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    disk: Path,
    monitor_fd: int,
    serial_fd: int,
    sev: str,
    master_key: Path,
) -> list[str]:
    storage = {
        "driver": "file",
        "filename": str(disk),
        "node-name": "libvirt-1-storage",
        "auto-read-only": True,
        "discard": "unmap",
    }
    fmt = {
        "node-name": "libvirt-1-format",
        "read-only": False,
        "driver": "raw",
        "file": "libvirt-1-storage",
    }
    return [
        "-name",
        f"guest={name},debug-threads=on",
        "-S",
        "-object",
        json.dumps(
            {"qom-type": "secret", "id": "masterKey0", "format": "raw", "file": str(master_key)},
            separators=(",", ":"),
        ),
        "-machine",
        "pc-q35-9.1,usb=off,dump-guest-core=off,memory-backend=pc.ram,"
        "confidential-guest-support=lsec0",
        "-accel",
        "kvm",
        "-cpu",
        "qemu64",
        "-bios",
        str(firmware),
        "-m",
        "256",
        "-object",
        '{"qom-type":"memory-backend-ram","id":"pc.ram","size":268435456}',
        "-overcommit",
        "mem-lock=off",
        "-smp",
        "1,sockets=1,cores=1,threads=1",
        "-uuid",
        "63181c94-348b-440a-846f-ab7a3d54d951",
        "-display",
        "none",
        "-no-user-config",
        "-nodefaults",
        "-chardev",
        f"socket,id=charmonitor,fd={monitor_fd},server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
        "-rtc",
        "base=utc",
        "-no-shutdown",
        "-boot",
        "strict=on",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        cmdline,
        "-device",
        "pcie-root-port,port=8,chassis=1,id=pci.1,bus=pcie.0,multifunction=on,addr=0x1",
        "-device",
        "pcie-root-port,port=9,chassis=2,id=pci.2,bus=pcie.0,addr=0x1.0x1",
        "-blockdev",
        json.dumps(storage, separators=(",", ":")),
        "-blockdev",
        json.dumps(fmt, separators=(",", ":")),
        "-device",
        "virtio-blk-pci,bus=pci.1,addr=0x0,drive=libvirt-1-format,id=virtio-disk0,bootindex=1",
        "-add-fd",
        f"set=0,fd={serial_fd},opaque=serial0-source",
        "-chardev",
        "file,id=charserial0,path=/dev/fdset/0,append=on",
        "-device",
        "isa-serial,chardev=charserial0,id=serial0,index=0",
        "-audiodev",
        '{"id":"audio1","driver":"none"}',
        "-object",
        sev,
        "-msg",
        "timestamp=on",
    ]


def sample(where: Path, monitor_fd: int, serial_fd: int, *, godh: bool = True) -> list[str]:
    """``domain`` with every file named under ``where`` (for parser tests: nothing is read)."""
    return domain(
        name="g1",
        firmware=where / "OVMF.fd",
        kernel=where / "vmlinuz",
        initrd=where / "initrd",
        cmdline="console=ttyS0",
        disk=where / "root.img",
        monitor_fd=monitor_fd,
        serial_fd=serial_fd,
        sev=sev_guest(
            51, 1, where / "godh.b64" if godh else None, where / "session.b64" if godh else None
        ),
        master_key=where / "master-key.aes",
    )
