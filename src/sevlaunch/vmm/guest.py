"""A guest model that runs after ``cont``: what OVMF and Linux do with an SEV launch's results.

Like OVMF's BlobVerifierLibSevHashes it checks the kernel, initrd and command line QEMU handed
over (fw_cfg, unencrypted) against the hashes table in its encrypted memory and halts on a
mismatch; like Linux's efi_secret it parses the secret table from its secret area; with a
``luks-key`` secret it unlocks the encrypted disk and prints the disk's label. It reads its
memory through the memory controller (the platform decrypts with the guest's VEK); it writes
only GUIDs and sizes to the console, never secret values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sevlaunch.crypto.disk import open_disk
from sevlaunch.errors import FormatError, IntegrityError
from sevlaunch.formats.disk import HEADER_SIZE, DiskHeader
from sevlaunch.formats.hashes import PADDED_SIZE, KernelHashes
from sevlaunch.formats.ovmf import Area, OvmfFooterTable
from sevlaunch.formats.secret import LUKS_KEY_GUID, SECRET_TABLE_GUID, SecretTable, guid_alias

ReadMemory = Callable[[int, int], Awaitable[bytes]]


@dataclass(frozen=True)
class BootMedia:
    """What QEMU hands the firmware: the image it loaded and the fw_cfg kernel blobs."""

    firmware: bytes
    kernel: bytes | None = None
    initrd: bytes | None = None
    cmdline: str | None = None
    disks: tuple[Path, ...] = ()
    disk_names: tuple[str, ...] = ()  # as Linux names them (vda, sda, ...); vdX when absent


#: What the AmdSev firmware says when a blob does not match the measured hashes table.
HALT_REASON = "measured direct boot verification failed"


@dataclass(frozen=True)
class BootResult:
    halted: bool
    secrets: tuple[str, ...] = ()
    disk_label: str | None = None
    reason: str = ""  #: why the guest halted


class Guest:
    """Boots once; ``console`` receives each line the guest prints."""

    def __init__(
        self, media: BootMedia, read: ReadMemory, console: Callable[[str], None], *, sev: bool
    ) -> None:
        self.media = media
        self.read = read
        self.console = console
        self.sev = sev
        try:
            self.footer: OvmfFooterTable | None = OvmfFooterTable.from_image(media.firmware)
        except FormatError:
            self.footer = None

    async def boot(self) -> BootResult:
        self.console("OVMF: booting" + (" (AMD SEV active)" if self.sev else ""))
        if self.media.kernel is not None and not await self._verify_blobs():
            self.console(f"OVMF: halting: {HALT_REASON}")
            return BootResult(halted=True, reason=HALT_REASON)
        secrets = await self._read_secrets() if self.sev else None
        label = self._unlock_disks(secrets) if secrets is not None else None
        names = tuple(guid_alias(e.guid) for e in secrets.entries) if secrets else ()
        self.console("Linux: boot complete")
        return BootResult(halted=False, secrets=names, disk_label=label)

    async def _verify_blobs(self) -> bool:
        area = self.footer.hashes_area if self.footer else None
        if not self.sev or area is None or area.size < PADDED_SIZE or area.base == 0:
            if self.sev:
                self.console(
                    "BlobVerifierSevHashes: no hashes table in this firmware; blobs unverified"
                )
            return True
        raw = await self.read(area.base, PADDED_SIZE)
        try:
            table = KernelHashes.from_bytes(raw)
        except FormatError:
            self.console(
                "BlobVerifierSevHashes: hashes table is missing or malformed (kernel-hashes=off?)"
            )
            return False
        media = self.media
        blobs = {
            "kernel": (media.kernel or b"", table.kernel),
            "initrd": (media.initrd or b"", table.initrd),
            "cmdline": ((media.cmdline or "").encode() + b"\0", table.cmdline),
        }
        ok = True
        for name, (blob, expected) in blobs.items():
            if hashlib.sha256(blob).digest() == expected:
                self.console(f"BlobVerifierSevHashes: {name} hash ok")
            else:
                self.console(f"BlobVerifierSevHashes: {name} hash does not match the hashes table")
                ok = False
        return ok

    async def _read_secrets(self) -> SecretTable | None:
        area: Area | None = self.footer.secret_area if self.footer else None
        if area is None or area.size == 0:
            self.console("efi_secret: firmware has no secret area")
            return None
        raw = await self.read(area.base, area.size)
        if raw[:16] != SECRET_TABLE_GUID.bytes_le:
            self.console(f"efi_secret: no secret table at {area.base:#x}")
            return None
        try:
            table = SecretTable.from_bytes(raw)
        except FormatError as exc:
            self.console(f"efi_secret: malformed secret table: {exc}")
            return None
        self.console(
            f"efi_secret: secret area at {area.base:#x} size {area.size:#x}: {len(table.entries)} entries"
        )
        for entry in table.entries:
            self.console(
                f"efi_secret: {entry.guid} ({guid_alias(entry.guid)}): {len(entry.data)} bytes"
            )
        return table

    def _unlock_disks(self, secrets: SecretTable) -> str | None:
        passphrase = secrets.get(LUKS_KEY_GUID)
        label = None
        for index, path in enumerate(self.media.disks):
            names = self.media.disk_names
            name = names[index] if index < len(names) else f"vd{chr(ord('a') + index)}"
            if passphrase is None:
                self.console(f"cryptsetup: {name}: no luks-key secret; disk stays locked")
                continue
            try:
                contents = open_disk(passphrase, _volume(path.read_bytes()))
            except (IntegrityError, FormatError, OSError) as exc:
                self.console(f"cryptsetup: {name}: cannot unlock: {exc}")
                continue
            label = label or contents.label
            self.console(
                f"cryptsetup: {name}: unlocked with luks-key; disk label '{contents.label}'"
            )
        return label


def _volume(disk: bytes) -> bytes:
    """The encrypted volume at the start of a disk: a block device (or an image sized like
    one) holds more after it, as a LUKS partition would."""
    header = DiskHeader.from_bytes(disk)
    return disk[: HEADER_SIZE + header.ciphertext_length]
