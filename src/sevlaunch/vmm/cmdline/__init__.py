"""The QEMU command line libvirt builds for an SEV guest, parsed into a :class:`VmConfig`.

``sevlaunch-vmm`` accepts libvirt 9.0's command line for the devices an SEV guest uses
(libvirt-qemu-interfaces §2.5): ``-name``, ``-S``, ``-machine`` (``confidential-guest-support``
or the older ``memory-encryption``, ``pflash0``/``pflash1``), ``-object`` in key=value and
JSON syntax, ``-blockdev`` node pairs, ``-device`` for the PCIe root ports, USB controllers,
AHCI, virtio-blk/ide-hd/ide-cd disks, isa-serial ports and the balloon, ``-chardev``
socket/file/pty/null (``logfile=``), ``-mon``, ``-qmp``, ``-serial``, ``-bios``, ``-drive``,
``-kernel``/``-initrd``/``-append``, ``-m``, ``-smp``, ``-cpu``, ``-uuid``, ``-rtc``,
``-boot``, ``-no-acpi``, ``-no-shutdown``, ``-display none``, ``-nodefaults``,
``-no-user-config``, ``-nographic``, ``-pidfile``, ``-daemonize``, ``-fw_cfg``, ``-add-fd``
(:mod:`~sevlaunch.vmm.cmdline.fdsets`) and the options libvirt always adds
(:mod:`~sevlaunch.vmm.cmdline.options`). Anything else fails as QEMU fails:
``-foo: invalid option``.

Modules: :mod:`.opts` (QemuOpts and JSON syntax), :mod:`.config` (the result),
:mod:`.objects`, :mod:`.chardev`, :mod:`.block`, :mod:`.devices`, :mod:`.options` (the table);
a new option is one row in ``OPTIONS`` and, if it needs one, a module of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import block, chardev, devices, fdsets
from sevlaunch.vmm.cmdline.builder import Builder
from sevlaunch.vmm.cmdline.config import (
    BlockdevConfig,
    ChardevConfig,
    DeviceConfig,
    DiskImage,
    DriveConfig,
    FdConfig,
    FwCfgEntry,
    ObjectConfig,
    QmpEndpoint,
    SerialPort,
    SevGuestConfig,
    SevSnpGuestConfig,
    SmpConfig,
    VmConfig,
)
from sevlaunch.vmm.cmdline.options import OPTIONS
from sevlaunch.vmm.cmdline.opts import split_opts

__all__ = [
    "BlockdevConfig",
    "ChardevConfig",
    "DeviceConfig",
    "DiskImage",
    "DriveConfig",
    "FdConfig",
    "FwCfgEntry",
    "ObjectConfig",
    "QmpEndpoint",
    "SerialPort",
    "SevGuestConfig",
    "SevSnpGuestConfig",
    "SmpConfig",
    "VmConfig",
    "check_cbitpos",
    "parse_cmdline",
    "split_opts",
]


def parse_cmdline(argv: Sequence[str]) -> VmConfig:
    """Parse ``argv`` (without the program name) as QEMU would; raise CommandLineError."""
    b = Builder()
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or word == "-":
            raise CommandLineError(
                word, "disk images as bare arguments are not emulated; use -drive", value=word
            )
        name = word[2:] if word.startswith("--") else word[1:]
        if name not in OPTIONS:
            raise CommandLineError(word, "invalid option", value=word)
        takes_arg, action = OPTIONS[name]
        if takes_arg and i + 1 >= len(argv):
            raise CommandLineError(word, "requires an argument", value=word)
        arg = argv[i + 1] if takes_arg else ""
        where = f"{word} {arg}" if takes_arg else word
        try:
            action(b, arg)
        except ValueError as exc:
            raise CommandLineError(where, str(exc), value=arg) from exc
        i += 2 if takes_arg else 1
    return _finish(b)


def _finish(b: Builder) -> VmConfig:
    """Cross-option checks QEMU makes once every option is read, in its order."""
    block.machine_flash(b)
    fdsets.resolve_chardevs(b)
    chardev.resolve_monitors(b)
    disks, ports = devices.resolve_devices(b)
    legacy = [disk for drive in b.cfg.drives if (disk := _legacy_disk(drive)) is not None]
    b.set(
        disks=(*legacy, *disks),
        serials=(*chardev.legacy_serials(b), *ports),
        chardevs=tuple(b.chardevs.values()),
        blockdevs=tuple(b.blockdevs.values()),
        devices=tuple(b.devices),
    )
    _check_ids(b)
    b.set(objects=tuple(o for o in b.objects if isinstance(o, ObjectConfig)))
    _check_fw_cfg(b)
    return _bind_sev(b)


def _check_fw_cfg(b: Builder) -> None:
    seen: set[str] = set()
    for entry in b.cfg.fw_cfg:
        if entry.name in seen:
            raise CommandLineError(None, f"duplicate fw_cfg file name: {entry.name}")
        seen.add(entry.name)


def _legacy_disk(drive: DriveConfig) -> DiskImage | None:
    """A ``-drive if=virtio|ide|...``: the board creates its device; ``if=none`` waits for one."""
    if drive.interface == "none":
        return None
    driver = "virtio-blk-pci" if drive.interface == "virtio" else f"{drive.interface}-hd"
    return DiskImage(drive.file, driver, drive.format, drive.readonly, drive.id)


def _check_ids(b: Builder) -> None:
    seen: set[str] = set()
    for obj in b.objects:
        if obj.id in seen:
            raise CommandLineError(
                None, f"attempt to add duplicate property '{obj.id}' to object (type 'container')"
            )
        seen.add(obj.id)


def _bind_sev(b: Builder) -> VmConfig:
    cgs = b.cfg.confidential_guest_support
    if cgs is None:
        return b.cfg
    target = next((o for o in b.objects if o.id == cgs), None)
    if target is None:
        raise CommandLineError(None, f"Device '{cgs}' not found", value=cgs)
    if not isinstance(target, SevGuestConfig | SevSnpGuestConfig):
        raise CommandLineError(
            None,
            "Invalid parameter type for 'confidential-guest-support', expected: "
            "confidential-guest-support",
            value=cgs,
        )
    if not 1 <= target.reduced_phys_bits <= 63:
        raise CommandLineError(
            None,
            "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range "
            f"of 1 to 63, requested '{target.reduced_phys_bits}'",
            value=target.reduced_phys_bits,
        )
    if isinstance(target, SevSnpGuestConfig):
        b.set(snp_guest=target)
    else:
        b.set(sev_guest=target)
    return b.cfg


def check_cbitpos(config: VmConfig, host_cbitpos: int) -> None:
    """QEMU's accelerator-init check of ``cbitpos`` against the host's CPUID value."""
    sev = config.sev_guest or config.snp_guest
    if sev is not None and sev.cbitpos != host_cbitpos:
        raise CommandLineError(
            None,
            f"sev_common_kvm_init: cbitpos check failed, host '{host_cbitpos}' "
            f"requested '{sev.cbitpos}'",
            value=sev.cbitpos,
        )
