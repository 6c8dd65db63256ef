"""``sevlaunch image``: make every file an emulated launch uses, without edk2 or cryptsetup.

``firmware`` writes a synthetic OVMF-like image with a correct footer table (SEV-ES reset
block, secret area, hashes area), so that secret injection and measured direct boot can be
tried on any host; ``kernel`` and ``initrd`` write the blobs of a measured direct boot;
``key`` writes a disk passphrase (mode 0600); ``disk`` writes sevlaunch's encrypted disk
image, which the guest model unlocks with the ``luks-key`` secret. Each prints what it wrote,
read back from the file. The README's names: ``OVMF.amdsev.fd``, ``vmlinuz``,
``initrd.img``, ``disk.key``, ``root.img``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import click

from sevlaunch.cli._util import EXIT_USAGE, errors_to_exit, read_file

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:I?B)?", re.IGNORECASE)
DISK_OVERHEAD = 44 + 16 + 2  # header, GCM tag, label length


def parse_size(text: str) -> int:
    """``4M``, ``64K``, ``4MiB`` or plain bytes, as qemu-img takes sizes (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a size: give bytes or a number with K, M or G (e.g. 4M)"
        )
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    return parse_size(value)


def _write(path: str, data: bytes, what: str) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise click.UsageError(f"cannot write the {what} {path}: {exc.strerror}") from exc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@click.group()
def image() -> None:
    """Make test firmware and encrypted disk images for emulated launches."""


@image.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Image file to write.")
@click.option(
    "--size",
    callback=_size,
    metavar="SIZE",
    default="4M",
    show_default=True,
    help="Image size (a multiple of 4K).",
)
@click.option("--seed", default="", help="Text that picks the filler, so images can differ.")
@click.option("--no-hashes-area", is_flag=True, help="Leave out the SEV hashes-table area.")
@click.option("--no-secret-area", is_flag=True, help="Leave out the SEV secret area.")
def firmware(out: str, size: int, seed: str, no_hashes_area: bool, no_secret_area: bool) -> None:
    """Write a synthetic OVMF-like image with an SEV footer table (not a bootable OVMF)."""
    from dataclasses import replace

    from sevlaunch.formats.ovmf import OvmfFooterTable
    from sevlaunch.vmm.ovmf_image import RHEL9_2022, make_image

    layout = RHEL9_2022
    if no_hashes_area:
        layout = replace(layout, hashes_area=None)
    if no_secret_area:
        layout = replace(layout, secret_area=None)
    with errors_to_exit(code=EXIT_USAGE):
        data = make_image(size, seed=seed.encode(), layout=layout)
    _write(out, data, "firmware image")
    footer = OvmfFooterTable.from_image(read_file(out, "firmware image"))
    click.echo(f"wrote {out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    reset = footer.sev_es_reset_address
    click.echo(
        f"SEV-ES reset block: {reset:#x}" if reset is not None else "SEV-ES reset block: none"
    )
    for name, area in (("secret area", footer.secret_area), ("hashes area", footer.hashes_area)):
        click.echo(f"{name}: {area.base:#x} size {area.size:#x}" if area else f"{name}: none")


@image.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Image file to write.")
@click.option(
    "--label", required=True, help="The disk's label, printed by the guest once unlocked."
)
@click.option(
    "--passphrase-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The passphrase, byte for byte (give the same file to owner secret luks-key:FILE).",
)
@click.option(
    "--size",
    callback=_size,
    metavar="SIZE",
    default="64K",
    show_default=True,
    help="Total image size.",
)
def disk(out: str, label: str, passphrase_file: str, size: int) -> None:
    """Write an encrypted disk image (scrypt and AES-256-GCM) that the luks-key secret unlocks."""
    from sevlaunch.crypto.disk import DiskContents, open_disk, seal

    passphrase = read_file(passphrase_file, "passphrase file")
    if not passphrase:
        raise click.UsageError(
            f"the passphrase file {passphrase_file} is empty; put the passphrase in it"
        )
    data_len = size - DISK_OVERHEAD - len(label.encode())
    if data_len < 0:
        raise click.BadParameter(
            f"{size} bytes cannot hold the label {label!r}: give at least {size - data_len} bytes",
            param_hint="--size",
        )
    with errors_to_exit(code=EXIT_USAGE):
        sealed = seal(
            passphrase,
            DiskContents(label, bytes(data_len)),
            salt=os.urandom(16),
            nonce=os.urandom(12),
        )
    _write(out, sealed, "disk image")
    with errors_to_exit():
        contents = open_disk(passphrase, read_file(out, "disk image"))
    click.echo(
        f"wrote {out}: {len(sealed)} bytes, label '{contents.label}', {len(contents.data)} data bytes"
    )


_SEED_HELP = "Text that picks the filler: the same seed and size give the same bytes (and digest)."


@image.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Kernel file to write.")
@click.option(
    "--size", callback=_size, metavar="SIZE", default="64K", show_default=True, help="Size."
)
@click.option("--seed", default="", help=_SEED_HELP)
def kernel(out: str, size: int, seed: str) -> None:
    """Write a synthetic kernel for measured direct boot (-kernel; the emulated guest's
    firmware hashes it, nothing runs it). On a real host use the distribution's vmlinuz."""
    from sevlaunch.vmm.guest_images import make_kernel

    with errors_to_exit(code=EXIT_USAGE):
        data = make_kernel(size, seed=seed.encode())
    _write(out, data, "kernel")
    written = read_file(out, "kernel")
    click.echo(f"wrote {out}: {len(written)} bytes, sha256 {_sha256(written)}")


@image.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Initrd file to write.")
@click.option(
    "--size", callback=_size, metavar="SIZE", default="32K", show_default=True, help="Size."
)
@click.option("--seed", default="", help=_SEED_HELP)
def initrd(out: str, size: int, seed: str) -> None:
    """Write a synthetic initrd (a newc cpio archive holding /init) for measured direct boot
    (-initrd). On a real host use the distribution's initrd.img."""
    from sevlaunch.vmm.guest_images import make_initrd

    with errors_to_exit(code=EXIT_USAGE):
        data = make_initrd(size, seed=seed.encode())
    _write(out, data, "initrd")
    written = read_file(out, "initrd")
    click.echo(f"wrote {out}: {len(written)} bytes, sha256 {_sha256(written)}")


@image.command()
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Passphrase file to write."
)
@click.option(
    "--bytes",
    "length",
    type=click.IntRange(16, 512),
    default=32,
    show_default=True,
    help="Random bytes in the passphrase (written as URL-safe base64 text).",
)
def key(out: str, length: int) -> None:
    """Write a random disk passphrase, mode 0600, for 'image disk --passphrase-file' and the
    workload's luks-key secret. An existing file is kept: the disk it sealed needs it."""
    import secrets

    from sevlaunch._files import write_atomic

    path = Path(out)
    if path.exists():
        raise click.UsageError(
            f"{out} exists and is kept (a disk sealed with it would be lost): remove it first "
            "or choose another --out"
        )
    try:
        write_atomic(path, secrets.token_urlsafe(length).encode())
    except OSError as exc:
        raise click.UsageError(f"cannot write the passphrase file {out}: {exc.strerror}") from exc
    click.echo(f"wrote {out}: mode 0600, {length} random bytes as base64 text")
