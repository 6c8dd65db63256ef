"""Synthetic kernel and initrd images for the emulated guest, beside :mod:`.ovmf_image`.

The emulated guest does not run Linux: its firmware hashes the kernel, initrd and command
line QEMU hands over and compares them with the measured hashes table, as OVMF's
BlobVerifierLibSevHashes does. So a kernel here is bytes that look like a bzImage from the
outside (``MZ`` at 0, the ``HdrS`` setup-header magic at 0x202) around deterministic filler,
and an initrd is a real (uncompressed) ``newc`` cpio archive holding one ``/init`` script,
as ``cpio -o -H newc`` writes it. Both are deterministic in their seed and size, so two
people making them with the same options get the same launch digest.
"""

from __future__ import annotations

import hashlib

from sevlaunch.errors import UsageError

KERNEL_MIN = 4096
INITRD_MIN = 512
IMAGE_MAX = 64 << 20
SETUP_MAGIC_OFFSET = 0x202  # struct setup_header.header, "HdrS" (Documentation/x86/boot.rst)
CPIO_BLOCK = 512
INIT_SCRIPT = b"#!/bin/sh\n# sevlaunch synthetic initrd: the emulated guest never runs it\n"


def _filler(seed: bytes, what: bytes, size: int) -> bytes:
    return hashlib.shake_256(b"sevlaunch " + what + b"\0" + seed).digest(size)


def _check_size(size: int, low: int, what: str) -> None:
    if not low <= size <= IMAGE_MAX:
        raise UsageError(f"a {what} is between {low} and {IMAGE_MAX} bytes, got {size}")


def make_kernel(size: int = 64 << 10, *, seed: bytes = b"") -> bytes:
    """``size`` bytes with a bzImage's two magic numbers, the rest filler from ``seed``."""
    _check_size(size, KERNEL_MIN, "kernel")
    image = bytearray(_filler(seed, b"kernel", size))
    image[0:2] = b"MZ"
    image[SETUP_MAGIC_OFFSET : SETUP_MAGIC_OFFSET + 4] = b"HdrS"
    return bytes(image)


def _cpio_entry(name: bytes, data: bytes, mode: int, ino: int) -> bytes:
    """One ``newc`` record: the 110-byte ASCII header, the name, the data, each 4-aligned."""
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
    header = b"070701" + b"".join(b"%08X" % v for v in fields)
    head = header + name + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def make_initrd(size: int = 32 << 10, *, seed: bytes = b"") -> bytes:
    """A ``newc`` archive of ``/init`` and a filler file (``seed``) padded to ``size``."""
    _check_size(size, INITRD_MIN, "initrd")
    init = _cpio_entry(b"init", INIT_SCRIPT, 0o100755, 1)
    trailer = _cpio_entry(b"TRAILER!!!", b"", 0, 0)
    empty_filler = _cpio_entry(b"filler", b"", 0o100644, 2)
    room = size - len(init) - len(trailer) - len(empty_filler)  # > 0 from INITRD_MIN on
    room -= room % 4
    archive = init + _cpio_entry(b"filler", _filler(seed, b"initrd", room), 0o100644, 2) + trailer
    return archive + b"\0" * (size - len(archive))
