"""The launch digest: exact bytes hashed, refusals of unsuitable firmware, streaming in any chunks."""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import UnsuitableFirmwareError, UsageError
from sevlaunch.formats import KernelHashes
from sevlaunch.owner.launch_digest import (
    EMPTY_SHA256,
    iter_chunks,
    launch_digest,
    measure_direct_boot,
    measure_firmware,
)
from tests.owner import ovmf_images

if TYPE_CHECKING:
    from sevlaunch.owner.launch_digest import Source

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"


def _table(kernel: bytes, initrd: bytes, cmdline: bytes) -> bytes:
    return KernelHashes(
        cmdline=hashlib.sha256(cmdline + b"\0").digest(),
        initrd=hashlib.sha256(initrd).digest(),
        kernel=hashlib.sha256(kernel).digest(),
    ).to_bytes()


def test_firmware_only_is_sha256_of_the_image(vectors: Path) -> None:
    fw = (vectors / OVMF).read_bytes()
    assert launch_digest(fw) == hashlib.sha256(fw).digest()


def test_kernel_hashes_table_follows_the_firmware(vectors: Path) -> None:
    fw = (vectors / OVMF).read_bytes()
    kernel = (vectors / "sevctl/measurement/vmlinuz-fake").read_bytes()
    initrd = (vectors / "sevctl/measurement/initrd-fake").read_bytes()
    cmdline = b"foo bar baz fake kernel=cmdline"
    table = _table(kernel, initrd, cmdline)
    assert len(table) == 176
    expected = hashlib.sha256(fw + table).digest()
    assert launch_digest(fw, kernel, initrd, cmdline.decode()) == expected


def test_cmdline_is_hashed_with_its_nul_and_whitespace_kept() -> None:
    fw = ovmf_images.image()
    with_space = launch_digest(fw, b"k", None, "a b ")
    assert with_space == hashlib.sha256(fw + _table(b"k", b"", b"a b ")).digest()
    assert with_space != launch_digest(fw, b"k", None, "a b")


def test_missing_and_empty_initrd_and_cmdline_hash_alike() -> None:
    fw = ovmf_images.image()
    assert launch_digest(fw, b"k") == launch_digest(fw, b"k", b"", "")
    boot = measure_direct_boot(b"k")
    assert boot.initrd_sha256 == EMPTY_SHA256
    assert boot.hashes().cmdline == hashlib.sha256(b"\0").digest()


def test_vmsas_follow_the_table() -> None:
    fw = ovmf_images.image()
    vmsa = bytes(range(256)) * 16
    assert launch_digest(fw, vmsas=[vmsa, vmsa]) == hashlib.sha256(fw + vmsa + vmsa).digest()


@pytest.mark.parametrize(
    ("firmware", "found"),
    [
        (ovmf_images.debian_image(), "base 0x0 and size 0x0"),
        (ovmf_images.image(hashes=None), "no SEV hashes-table entry"),
        (ovmf_images.image(hashes=(0x810C00, 0xA0)), "at least 176 bytes"),
        (b"\xff" * 8192, "no OVMF footer table"),
    ],
    ids=["debian-base-0-size-0", "no-entry", "area-too-small", "no-footer"],
)
def test_firmware_without_a_usable_hashes_area_is_refused(firmware: bytes, found: str) -> None:
    with pytest.raises(UnsuitableFirmwareError, match=found) as err:
        launch_digest(firmware, b"kernel", b"initrd", "console=ttyS0")
    assert "OvmfPkg/AmdSev/AmdSevX64.dsc" in str(err.value)
    assert "OVMF.amdsev.fd" in str(err.value)


def test_debian_firmware_still_measures_without_a_kernel() -> None:
    fw = ovmf_images.debian_image()
    assert launch_digest(fw) == hashlib.sha256(fw).digest()


class _Exploding(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        raise AssertionError("the kernel was read before the firmware was checked")


def test_unsuitable_firmware_is_refused_before_the_kernel_is_read() -> None:
    with pytest.raises(UnsuitableFirmwareError):
        launch_digest(ovmf_images.debian_image(), _Exploding(), _Exploding())


def test_initrd_or_cmdline_without_kernel_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="without a kernel"):
        launch_digest(ovmf_images.image(), None, b"initrd")
    with pytest.raises(UsageError, match="without a kernel"):
        launch_digest(ovmf_images.image(), None, None, "quiet")


def test_nul_in_cmdline_and_empty_firmware_are_refused() -> None:
    with pytest.raises(UsageError, match="NUL"):
        launch_digest(ovmf_images.image(), b"k", None, "a\0b")
    with pytest.raises(UsageError, match="empty"):
        launch_digest(b"")
    with pytest.raises(UsageError, match="chunk size"):
        list(iter_chunks(b"abc", 0))


def test_firmware_state_is_not_consumed_by_digests() -> None:
    measured = measure_firmware(ovmf_images.image(), name="fw.fd")
    boot = measure_direct_boot(b"k")
    first = measured.digest(boot.hashes())
    assert measured.digest() == measured.sha256
    assert measured.digest(boot.hashes()) == first
    assert "fw.fd" in repr(measured)


# --- streaming ------------------------------------------------------------------------------


class _ReadOnly:
    """A reader with ``read`` only (no ``readinto``), as some wrappers are."""

    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)

    def read(self, size: int, /) -> bytes:
        return self._io.read(size)


def _split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(points):
        yield data[start:end]


def _as(kind: str, data: bytes, cuts: list[int]) -> Source:
    if kind == "bytes":
        return data
    if kind == "file":
        return io.BufferedReader(io.BytesIO(data), buffer_size=7)
    if kind == "read-only":
        return _ReadOnly(data)
    return _split(data, cuts)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=9000),
    kernel=st.binary(max_size=5000),
    initrd=st.none() | st.binary(max_size=5000),
    cmdline=st.none() | st.text(max_size=40).filter(lambda s: "\0" not in s),
    chunk_size=st.integers(1, 5000),
    kind=st.sampled_from(["bytes", "file", "read-only", "iterable"]),
    cuts=st.lists(st.integers(0, 20000), max_size=8),
)
def test_digest_is_the_same_streamed_in_any_chunks(
    body: bytes,
    kernel: bytes,
    initrd: bytes | None,
    cmdline: str | None,
    chunk_size: int,
    kind: str,
    cuts: list[int],
) -> None:
    fw = ovmf_images.image(body)
    table = _table(kernel, initrd or b"", (cmdline or "").encode())
    expected = hashlib.sha256(fw + table).digest()
    streamed = launch_digest(
        _as(kind, fw, cuts),
        _as(kind, kernel, cuts),
        None if initrd is None else _as(kind, initrd, cuts),
        cmdline,
        chunk_size=chunk_size,
    )
    assert streamed == expected
    assert measure_firmware(_as(kind, fw, cuts), chunk_size=chunk_size).tail == fw[-4096:]


def test_the_tail_kept_is_where_qemu_looks_for_the_footer() -> None:
    from sevlaunch.formats import ovmf
    from sevlaunch.owner import launch_digest

    assert launch_digest.TAIL_SIZE == ovmf.TAIL_SIZE
