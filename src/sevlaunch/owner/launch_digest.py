"""The SEV launch digest (GCTX.LD) the guest owner expects, streamed in constant memory.

``LD = SHA-256(firmware ‖ [padded kernel-hashes table] ‖ [SEV-ES VMSAs])`` (firmware-API doc
§11). The firmware is hashed once and its hash state kept, so digests for variants (with and
without the table, other command lines) cost a copy of that state, not another read.

Only hashlib and :mod:`sevlaunch.formats` are imported here: ``sevlaunch owner digest`` must
start without loading pyca/cryptography. Inputs are bytes, file-like objects (read in chunks;
the caller opens and closes them) or iterables of byte chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sevlaunch.errors import FormatError, UnsuitableFirmwareError, UsageError

# typing's own flag without importing typing, and the footer and hashes-table layouts only
# when a kernel or the footer is asked for: ``owner digest`` of a firmware is one SHA-256,
# and its start-up should cost what sev-snp-measure's does (bench/digest.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import _Hash
    from typing import Protocol

    from sevlaunch.formats.hashes import KernelHashes
    from sevlaunch.formats.ovmf import Area, OvmfFooterTable

    class Readable(Protocol):
        def read(self, size: int, /) -> bytes: ...

    Source = bytes | bytearray | memoryview | Readable | Iterable[bytes]

CHUNK_SIZE = 1 << 18  # 256 KiB stays in L2 between read and hash; 1 MiB is ~15% slower
AMDSEV_ADVICE = (
    "use an OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc (for example OVMF.amdsev.fd from "
    "Fedora's or RHEL's edk2-ovmf package), or launch without a kernel"
)
#: The bytes kept from a firmware's end: QEMU looks for the OVMF footer table "within the
#: last 4k" (formats.ovmf.TAIL_SIZE, checked equal by the tests).
TAIL_SIZE = 4096


def iter_chunks(source: Source, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes | memoryview]:
    """Yield ``source`` in chunks of at most ``chunk_size`` bytes.

    A chunk read from a file may be a view into a reused buffer: consume it before asking
    for the next one.
    """
    if chunk_size <= 0:
        raise UsageError(f"chunk size must be positive, got {chunk_size}")
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        for offset in range(0, len(view), chunk_size):
            yield view[offset : offset + chunk_size]
        return
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        buffer = memoryview(bytearray(chunk_size))
        while n := readinto(buffer):
            yield buffer[:n]
        return
    read = getattr(source, "read", None)
    if read is not None:
        while chunk := read(chunk_size):
            yield chunk
        return
    yield from source  # type: ignore[misc]


def sha256_of(source: Source, chunk_size: int = CHUNK_SIZE) -> bytes:
    """SHA-256 of a whole stream."""
    h = hashlib.sha256()
    for chunk in iter_chunks(source, chunk_size):
        h.update(chunk)
    return h.digest()


@dataclass(frozen=True)
class MeasuredFirmware:
    """A firmware image hashed once: its size, its last 4 KiB (the footer table) and hash state."""

    name: str
    size: int
    tail: bytes = field(repr=False)
    state: _Hash = field(repr=False, compare=False)

    @property
    def sha256(self) -> bytes:
        return self.state.copy().digest()

    def footer(self) -> OvmfFooterTable:
        from sevlaunch.formats.ovmf import OvmfFooterTable

        return OvmfFooterTable.from_image(self.tail)

    def hashes_area(self) -> Area:
        """Where QEMU puts the kernel-hashes table; refuses a firmware that has none."""
        from sevlaunch.formats.hashes import PADDED_SIZE
        from sevlaunch.formats.ovmf import SEV_HASH_TABLE_GUID

        try:
            area = self.footer().hashes_area
        except FormatError as exc:
            raise UnsuitableFirmwareError(
                "footer_table",
                f"firmware {self.name} cannot do measured direct kernel boot, which needs an "
                f"OVMF footer table naming an SEV hashes-table area ({exc}); {AMDSEV_ADVICE}",
                value=exc.value,
            ) from exc
        if area is None:
            raise UnsuitableFirmwareError(
                "sev_hash_table",
                f"firmware {self.name}: its OVMF footer table has no SEV hashes-table entry "
                f"(GUID {SEV_HASH_TABLE_GUID}), so QEMU cannot add the kernel hashes and OVMF "
                f"would not check the kernel; {AMDSEV_ADVICE}",
                value=None,
            )
        if area.base == 0 or area.size < PADDED_SIZE:
            raise UnsuitableFirmwareError(
                "sev_hash_table",
                f"firmware {self.name}: its SEV hashes-table area has base {area.base:#x} and "
                f"size {area.size:#x}; expected a non-zero base and at least {PADDED_SIZE} bytes. "
                "This firmware cannot do measured direct kernel boot (Debian's OvmfPkgX64 build "
                f"is such a firmware: QEMU refuses to launch it with a kernel); {AMDSEV_ADVICE}",
                value=area,
            )
        return area

    def digest(self, hashes: KernelHashes | None = None, vmsas: Sequence[bytes] = ()) -> bytes:
        """LD for this firmware, then the padded hashes table, then SEV-ES VMSA pages."""
        h = self.state.copy()
        if hashes is not None:
            self.hashes_area()
            h.update(hashes.to_bytes())
        for vmsa in vmsas:
            h.update(vmsa)
        return h.digest()


def measure_firmware(
    source: Source, name: str = "image", chunk_size: int = CHUNK_SIZE
) -> MeasuredFirmware:
    """Hash a firmware image, keeping its last 4 KiB for the footer table."""
    h = hashlib.sha256()
    size = 0
    tail = b""
    for chunk in iter_chunks(source, chunk_size):
        h.update(chunk)
        size += len(chunk)
        tail = (tail + bytes(chunk[-TAIL_SIZE:]))[-TAIL_SIZE:]
    if size == 0:
        raise UsageError(f"firmware {name} is empty; expected an OVMF image")
    return MeasuredFirmware(name, size, tail, h)


def cmdline_bytes(cmdline: str | bytes | None) -> bytes:
    """The ``-append`` string as QEMU hashes it, without its NUL; whitespace is kept."""
    if cmdline is None:
        return b""
    raw = cmdline.encode() if isinstance(cmdline, str) else bytes(cmdline)
    if b"\0" in raw:
        raise UsageError(
            "the kernel command line contains a NUL byte; QEMU would cut it there: "
            "give the command line exactly as passed to -append"
        )
    return raw


@dataclass(frozen=True)
class DirectBoot:
    """Measured direct kernel boot: the kernel and initrd hashed, the command line as given."""

    kernel_sha256: bytes
    initrd_sha256: bytes
    cmdline: bytes
    initrd_given: bool

    def hashes(self) -> KernelHashes:
        """The table QEMU builds: cmdline hashed with its NUL, an absent initrd as SHA-256("")."""
        from sevlaunch.formats.hashes import KernelHashes

        return KernelHashes(
            cmdline=hashlib.sha256(self.cmdline + b"\0").digest(),
            initrd=self.initrd_sha256,
            kernel=self.kernel_sha256,
        )


EMPTY_SHA256 = hashlib.sha256(b"").digest()


def measure_direct_boot(
    kernel: Source,
    initrd: Source | None = None,
    cmdline: str | bytes | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> DirectBoot:
    """Hash the kernel and initrd exactly as given (QEMU does not patch them under SEV)."""
    raw_cmdline = cmdline_bytes(cmdline)
    return DirectBoot(
        kernel_sha256=sha256_of(kernel, chunk_size),
        initrd_sha256=EMPTY_SHA256 if initrd is None else sha256_of(initrd, chunk_size),
        cmdline=raw_cmdline,
        initrd_given=initrd is not None,
    )


def launch_digest(
    firmware: Source,
    kernel: Source | None = None,
    initrd: Source | None = None,
    cmdline: str | bytes | None = None,
    *,
    vmsas: Sequence[bytes] = (),
    chunk_size: int = CHUNK_SIZE,
) -> bytes:
    """The expected 32-byte launch digest in one call.

    The firmware's hashes area is checked before the kernel and initrd are read, so a
    firmware that cannot boot a kernel is refused before hashing a large initrd.
    """
    if kernel is None and (initrd is not None or cmdline is not None):
        raise UsageError(
            "an initrd or a command line was given without a kernel; QEMU measures them only "
            "for direct kernel boot: give the kernel too, or drop them"
        )
    measured = measure_firmware(firmware, chunk_size=chunk_size)
    if kernel is None:
        return measured.digest(vmsas=vmsas)
    measured.hashes_area()
    boot = measure_direct_boot(kernel, initrd, cmdline, chunk_size)
    return measured.digest(boot.hashes(), vmsas)
