"""What ``owner digest`` and ``owner validate`` measure, and the options naming the inputs,
without click: the click commands build their options from :data:`FIRMWARE`,
:data:`DIRECT_BOOT` and :data:`OUTPUT_FORMAT`, and ``sevlaunch owner digest`` runs from
:mod:`sevlaunch.cli._fast` on the same tables when its command line is a plain one.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sevlaunch.errors import InputError
from sevlaunch.owner.launch_digest import measure_direct_boot, measure_firmware

TYPE_CHECKING = False  # typing's flag without importing typing (see cli._fast)
if TYPE_CHECKING:
    from typing import BinaryIO

    from sevlaunch.owner.launch_digest import DirectBoot, MeasuredFirmware


class Opt:
    """One option: its declarations, destination, help, and whether it names a file or picks
    one of ``choices`` (``default`` then)."""

    __slots__ = ("choices", "decls", "default", "dest", "help", "path")

    def __init__(
        self,
        *decls: str,
        dest: str,
        help: str,  # noqa: A002 - click's name for it
        path: bool = False,
        choices: tuple[str, ...] = (),
        default: str | None = None,
    ) -> None:
        self.decls, self.dest, self.help = decls, dest, help
        self.path, self.choices, self.default = path, choices, default


FIRMWARE = Opt(
    "-f", "--firmware", dest="firmware", path=True, help="OVMF image QEMU loaded (the whole unified .fd)."
)  # fmt: skip
DIRECT_BOOT = (
    Opt("-k", "--kernel", dest="kernel", path=True, help="Kernel passed to -kernel."),
    Opt(
        "-r",
        "--initrd",
        dest="initrd",
        path=True,
        help="Initrd passed to -initrd (none: hashed as empty).",
    ),
    Opt(
        "-e",
        "--append",
        "--cmdline",
        dest="append",
        help="Kernel command line exactly as passed to -append; whitespace counts.",
    ),
)
OUTPUT_FORMAT = Opt(
    "--output-format",
    dest="output_format",
    choices=("hex", "base64"),
    default="hex",
    help="How to print the 32-byte digest.",
)


@contextmanager
def open_input(path: str, what: str) -> Iterator[BinaryIO]:
    """Open an input for streaming; a missing or unreadable file is an :class:`InputError`
    (the click commands raise it as a usage error; the fast path leaves the line to click)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the caller streams it)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from exc
    with handle:
        yield handle


def measure_inputs(
    firmwares: Sequence[str], kernel: str | None, initrd: str | None, append: str | None
) -> tuple[list[MeasuredFirmware], DirectBoot | None]:
    """Hash the firmware images and the direct boot, refusing an unsuitable firmware early."""
    if kernel is None and (initrd is not None or append is not None):
        raise InputError(
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
