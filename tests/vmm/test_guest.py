"""The guest model: OVMF's kernel-hash check, efi_secret's table parsing, the disk unlock.

The guest reads its memory through a callable; here that is the plaintext view the memory
controller would give it (a :class:`SparseMemory` the test fills), so every branch can be set up
directly.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from sevlaunch.crypto.disk import DiskContents, seal
from sevlaunch.firmware import SparseMemory
from sevlaunch.formats.hashes import KernelHashes
from sevlaunch.formats.secret import LUKS_KEY_GUID, SECRET_TABLE_GUID
from sevlaunch.owner.secret import secret_table
from sevlaunch.vmm.guest import HALT_REASON, BootMedia, BootResult, Guest
from sevlaunch.vmm.ovmf_image import OvmfLayout, make_image
from tests.vmm.conftest import run_async

KERNEL, INITRD, CMDLINE = b"kernel image", b"initrd image", "console=ttyS0"
SECRET_AREA, HASHES_AREA = 0x80C000, 0x80CC00
FIRMWARE = make_image(64 * 1024)
OTHER_GUID = uuid.UUID("12345678-1234-5678-9abc-def012345678")


def _hashes(kernel: bytes = KERNEL, initrd: bytes = INITRD, cmdline: str = CMDLINE) -> bytes:
    return KernelHashes(
        cmdline=hashlib.sha256(cmdline.encode() + b"\0").digest(),
        initrd=hashlib.sha256(initrd).digest(),
        kernel=hashlib.sha256(kernel).digest(),
    ).to_bytes()


def _disk(path: Path, label: str, passphrase: bytes) -> Path:
    image = seal(
        passphrase, DiskContents(label, b"data"), salt=bytes(16), nonce=bytes(12), scrypt_log2_n=10
    )
    path.write_bytes(image)
    return path


class Boot:
    def __init__(self) -> None:
        self.memory = SparseMemory()
        self.console: list[str] = []

    def put_secrets(self, *secrets: tuple[uuid.UUID | str, bytes]) -> None:
        self.memory.write(SECRET_AREA, secret_table(secrets).to_bytes())

    def run(self, media: BootMedia, *, sev: bool = True) -> BootResult:
        async def read(paddr: int, length: int) -> bytes:
            return self.memory.read(paddr, length)

        return run_async(lambda: Guest(media, read, self.console.append, sev=sev).boot())

    @property
    def text(self) -> str:
        return "\n".join(self.console)


def _media(*disks: Path, kernel: bytes | None = KERNEL, firmware: bytes = FIRMWARE) -> BootMedia:
    return BootMedia(
        firmware, kernel, INITRD if kernel else None, CMDLINE if kernel else None, disks
    )


def test_verified_boot_reads_secrets_and_unlocks_the_disk(tmp_path: Path) -> None:
    boot = Boot()
    boot.memory.write(HASHES_AREA, _hashes())
    boot.put_secrets(("luks-key", b"s3cret"), (OTHER_GUID, b"other value"))
    result = boot.run(_media(_disk(tmp_path / "d.img", "root", b"s3cret")))
    assert result == BootResult(False, ("luks-key", str(OTHER_GUID)), "root")
    for expected in (
        "BlobVerifierSevHashes: kernel hash ok",
        "BlobVerifierSevHashes: initrd hash ok",
        "BlobVerifierSevHashes: cmdline hash ok",
        f"efi_secret: secret area at {SECRET_AREA:#x} size 0xc00: 2 entries",
        f"efi_secret: {LUKS_KEY_GUID} (luks-key): 6 bytes",
        f"efi_secret: {OTHER_GUID} ({OTHER_GUID}): 11 bytes",
        "cryptsetup: vda: unlocked with luks-key; disk label 'root'",
        "Linux: boot complete",
    ):
        assert expected in boot.console
    assert "s3cret" not in boot.text
    assert "other value" not in boot.text


@pytest.mark.parametrize(
    ("table", "culprit"),
    [
        (_hashes(kernel=b"another kernel"), "kernel"),
        (_hashes(initrd=b""), "initrd"),
        (_hashes(cmdline=CMDLINE + " "), "cmdline"),
    ],
)
def test_a_blob_that_does_not_match_halts(table: bytes, culprit: str) -> None:
    boot = Boot()
    boot.memory.write(HASHES_AREA, table)
    boot.put_secrets(("luks-key", b"s3cret"))
    assert boot.run(_media()) == BootResult(halted=True, reason=HALT_REASON)
    assert f"BlobVerifierSevHashes: {culprit} hash does not match the hashes table" in boot.console
    assert boot.console[-1] == "OVMF: halting: measured direct boot verification failed"
    assert not any(line.startswith("efi_secret") for line in boot.console)


def test_no_hashes_table_in_memory_halts() -> None:
    """kernel-hashes=off with -kernel: the area holds no table, so OVMF refuses the kernel."""
    boot = Boot()
    boot.memory.write(HASHES_AREA, b"\xa5" * 0x400)
    assert boot.run(_media()).halted
    assert "hashes table is missing or malformed" in boot.text


def test_firmware_without_a_hashes_area_boots_unverified() -> None:
    boot = Boot()
    firmware = make_image(64 * 1024, layout=OvmfLayout(hashes_area=None))
    assert not boot.run(_media(firmware=firmware)).halted
    assert "no hashes table in this firmware; blobs unverified" in boot.text


def test_a_guest_without_sev_checks_and_reads_nothing() -> None:
    boot = Boot()
    result = boot.run(_media(), sev=False)
    assert result == BootResult(False, (), None)
    assert boot.console == ["OVMF: booting", "Linux: boot complete"]


def test_secret_area_without_a_table_or_with_a_broken_one() -> None:
    boot = Boot()
    boot.memory.write(HASHES_AREA, _hashes())
    assert boot.run(_media()).secrets == ()
    assert f"efi_secret: no secret table at {SECRET_AREA:#x}" in boot.console
    boot = Boot()
    boot.memory.write(HASHES_AREA, _hashes())
    boot.memory.write(SECRET_AREA, SECRET_TABLE_GUID.bytes_le + (0xFFFF).to_bytes(4, "little"))
    assert boot.run(_media()).secrets == ()
    assert any(line.startswith("efi_secret: malformed secret table:") for line in boot.console)


def test_firmware_without_a_secret_area() -> None:
    boot = Boot()
    firmware = make_image(64 * 1024, layout=OvmfLayout(secret_area=None, hashes_area=None))
    assert boot.run(_media(kernel=None, firmware=firmware)).secrets == ()
    assert "efi_secret: firmware has no secret area" in boot.console


def test_disks_that_stay_locked(tmp_path: Path) -> None:
    wrong = _disk(tmp_path / "a.img", "a", b"not the key")
    right = _disk(tmp_path / "b.img", "b", b"s3cret")
    broken = tmp_path / "c.img"
    broken.write_bytes(right.read_bytes()[:-1] + b"\x00")
    boot = Boot()
    boot.memory.write(HASHES_AREA, _hashes())
    boot.put_secrets(("luks-key", b"s3cret"))
    result = boot.run(_media(wrong, right, broken, tmp_path / "absent.img"))
    assert result.disk_label == "b"
    lines = [line for line in boot.console if line.startswith("cryptsetup")]
    assert lines[0].startswith("cryptsetup: vda: cannot unlock: disk image does not verify")
    assert lines[1] == "cryptsetup: vdb: unlocked with luks-key; disk label 'b'"
    assert lines[2].startswith("cryptsetup: vdc: cannot unlock")
    assert lines[3].startswith("cryptsetup: vdd: cannot unlock")


def test_without_a_luks_key_the_disk_stays_locked(tmp_path: Path) -> None:
    boot = Boot()
    boot.memory.write(HASHES_AREA, _hashes())
    boot.put_secrets((OTHER_GUID, b"x"))
    result = boot.run(_media(_disk(tmp_path / "d.img", "root", b"s3cret")))
    assert (result.halted, result.disk_label) == (False, None)
    assert "cryptsetup: vda: no luks-key secret; disk stays locked" in boot.console
