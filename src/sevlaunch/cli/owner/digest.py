"""``sevlaunch owner digest``: the expected SEV launch digest of a firmware and direct boot.

Imports hashlib and the format layer only (no pyca/cryptography), so that it starts as fast
as a single-purpose tool. The option helpers here are shared with ``owner validate``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

import click

from sevlaunch.cli._util import EXIT_USAGE, errors_to_exit
from sevlaunch.owner.launch_digest import (
    DirectBoot,
    MeasuredFirmware,
    measure_direct_boot,
    measure_firmware,
)


@contextmanager
def open_input(path: str, what: str) -> Iterator[BinaryIO]:
    """Open an input for streaming; a missing or unreadable file is a usage error (exit 2)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the caller streams it)
    except OSError as exc:
        raise click.UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    with handle:
        yield handle


def boot_options(*, multiple_firmware: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--firmware``, ``--kernel``, ``--initrd`` and ``--append`` as QEMU names the inputs."""
    firmware_help = (
        "OVMF image QEMU loaded (the whole unified .fd). Repeat to name other candidates: "
        "the first is the one claimed, the others are tried on a mismatch."
        if multiple_firmware
        else "OVMF image QEMU loaded (the whole unified .fd)."
    )
    options = [
        click.option(
            "-f",
            "--firmware",
            "firmware",
            multiple=multiple_firmware,
            required=not multiple_firmware,
            type=click.Path(dir_okay=False),
            help=firmware_help,
        ),
        click.option(
            "-k", "--kernel", type=click.Path(dir_okay=False), help="Kernel passed to -kernel."
        ),
        click.option(
            "-r",
            "--initrd",
            type=click.Path(dir_okay=False),
            help="Initrd passed to -initrd (none: hashed as empty).",
        ),
        click.option(
            "-e",
            "--append",
            "--cmdline",
            "append",
            help="Kernel command line exactly as passed to -append; whitespace counts.",
        ),
    ]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def measure_inputs(
    firmwares: Sequence[str], kernel: str | None, initrd: str | None, append: str | None
) -> tuple[list[MeasuredFirmware], DirectBoot | None]:
    """Hash the firmware images and the direct boot, refusing an unsuitable firmware early."""
    if kernel is None and (initrd is not None or append is not None):
        raise click.UsageError(
            "--initrd and --append need --kernel: QEMU measures them only for direct kernel boot"
        )
    measured = []
    for index, path in enumerate(firmwares):
        with open_input(path, "firmware") as handle:
            measured.append(measure_firmware(handle, name=path))
        if index == 0 and kernel is not None:
            measured[0].hashes_area()
    if kernel is None:
        return measured, None
    with open_input(kernel, "kernel") as k:
        if initrd is None:
            return measured, measure_direct_boot(k, None, append)
        with open_input(initrd, "initrd") as r:
            return measured, measure_direct_boot(k, r, append)


def format_digest(digest: bytes, output_format: str) -> str:
    return digest.hex() if output_format == "hex" else base64.b64encode(digest).decode()


@click.command()
@boot_options(multiple_firmware=False)
@click.option(
    "--output-format",
    type=click.Choice(["hex", "base64"]),
    default="hex",
    show_default=True,
    help="How to print the 32-byte digest.",
)
def digest(
    firmware: str, kernel: str | None, initrd: str | None, append: str | None, output_format: str
) -> None:
    """Print the expected SEV launch digest: SHA-256 over the firmware, then the kernel-hashes
    table when a kernel is given (QEMU sev-guest kernel-hashes=on).

    Inputs are streamed; memory stays constant whatever their size. A firmware without a usable
    hashes-table area is refused when a kernel is given. Exit 0 on success, 2 on bad input.
    """
    with errors_to_exit(code=EXIT_USAGE):
        firmwares, boot = measure_inputs([firmware], kernel, initrd, append)
        click.echo(
            format_digest(firmwares[0].digest(boot.hashes() if boot else None), output_format)
        )
