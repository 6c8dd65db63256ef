"""Block devices: the legacy ``-drive`` and libvirt's ``-blockdev`` node pairs (a protocol node
``file``/``host_device`` with the ``filename``, a format node ``raw``/``qcow2`` on top), and
the firmware they carry (``if=pflash`` drives, or ``-machine pflash0=NODE``). Messages are
QEMU's (blockdev.c, block.c)."""

from __future__ import annotations

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline.builder import Builder
from sevlaunch.vmm.cmdline.config import BlockdevConfig, DriveConfig
from sevlaunch.vmm.cmdline.opts import (
    opt_bool,
    opt_str,
    parse_bool,
    parse_props,
    parse_uint,
    split_opts,
    take_str,
)

PROTOCOL_DRIVERS = ("file", "host_device", "host_cdrom")
FORMAT_DRIVERS = ("raw", "qcow2")


def drive(b: Builder, arg: str) -> None:
    opts = dict(split_opts(arg))
    if "file" not in opts:
        raise ValueError("Parameter 'file' is missing")
    found = DriveConfig(
        interface=opts.get("if", "ide"),
        file=opts["file"],
        format=opts.get("format"),
        unit=parse_uint("unit", opts["unit"], 32) if "unit" in opts else None,
        readonly=parse_bool("readonly", opts.get("readonly", "off")),
        id=opts.get("id"),
    )
    if found.interface == "pflash":
        if found.format not in (None, "raw"):
            raise ValueError(f"pflash firmware must be format=raw, not '{found.format}'")
        if found.unit in (None, 0):
            b.set(firmware=found.file)
            return
        if found.unit == 1:
            b.set(nvram=found.file)
            return
        raise ValueError(f"Parameter 'unit' expects 0 or 1 for if=pflash, got {found.unit}")
    b.add("drives", found)


def blockdev(b: Builder, arg: str) -> None:
    props, typed = parse_props(arg, None)
    driver = take_str(props, "driver")
    node = take_str(props, "node-name")
    if driver in PROTOCOL_DRIVERS:
        filename = opt_str(props, "filename")
        if filename is None:
            raise ValueError("Parameter 'filename' is missing")
        lower = None
    elif driver in FORMAT_DRIVERS:
        filename = None
        lower = opt_str(props, "file")
        if lower is None:
            raise ValueError("Parameter 'file' is missing")
    else:
        raise ValueError(f"Invalid parameter value for 'driver': '{driver}' is not emulated")
    if node in b.blockdevs:
        raise ValueError(f"Duplicate nodes with node-name='{node}'")
    if lower is not None and lower not in b.blockdevs:
        raise ValueError(f"Cannot find device= nor node-name={lower}")
    b.blockdevs[node] = BlockdevConfig(
        node_name=node,
        driver=driver,
        filename=filename,
        file=lower,
        read_only=opt_bool(props, "read-only", typed),
        props=tuple(props.items()),
    )


def image_file(b: Builder, node: str) -> tuple[str, BlockdevConfig]:
    """The file under a node (following ``file`` down), and the node itself."""
    top = b.blockdevs.get(node)
    if top is None:
        raise ValueError(f"Cannot find device= nor node-name={node}")
    current = top
    while current.filename is None and current.file is not None:
        current = b.blockdevs[current.file]
    if current.filename is None:  # blockdev() refuses nodes with neither
        raise ValueError(f"node '{node}' has no file")
    return current.filename, top


def machine_flash(b: Builder) -> None:
    """``-machine pflash0=NODE,pflash1=NODE`` (libvirt's loader and NVRAM) and ``-bios``."""
    props = dict(b.cfg.machine_props)
    for key, target in (("pflash0", "firmware"), ("pflash1", "nvram")):
        node = props.get(key)
        if node is None:
            continue
        try:
            path, _ = image_file(b, node)
        except ValueError as exc:
            raise CommandLineError("-machine", str(exc), value=node) from exc
        b.set(**{target: path})
    if b.bios is None:
        return
    if b.cfg.firmware is not None:
        raise CommandLineError(
            "-bios", "conflicts with a pflash firmware drive (unit 0)", value=b.bios
        )
    b.set(firmware=b.bios)
