"""Step 11, on a match: the LAUNCH_SECRET packet that carries the owner's secrets to the guest.

The plaintext is OVMF's secret table (:class:`~sevlaunch.formats.SecretTable`), encrypted with
the TEK in AES-128-CTR and authenticated with the TIK over the launch's 32-byte MEASURE
(firmware-API doc §8). The header and payload come out as the base64 that
``virsh domsetlaunchsecstate --secrethdr/--secret`` and QMP ``sev-inject-launch-secret`` take.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sevlaunch.crypto.launch import TransportKeys, secret_mac
from sevlaunch.crypto.symmetric import aes128_ctr
from sevlaunch.errors import UsageError
from sevlaunch.formats.secret import (
    SecretEntry,
    SecretHeader,
    SecretTable,
    guid_alias,
    resolve_guid,
)
from sevlaunch.formats.session import Measurement

#: KVM copies the packet through psp_copy_user_blob, which refuses more than 16 KiB.
MAX_PAYLOAD = 0x4000


@dataclass(frozen=True)
class SecretPacket:
    """LAUNCH_SECRET's header and ciphertext; ``guest_length`` equals the payload's length."""

    header: SecretHeader
    payload: bytes

    @property
    def header_b64(self) -> str:
        return base64.b64encode(self.header.to_bytes()).decode()

    @property
    def payload_b64(self) -> str:
        return base64.b64encode(self.payload).decode()

    def __repr__(self) -> str:
        return f"SecretPacket(header={self.header_b64}, payload=<{len(self.payload)} bytes>)"


def secret_table(secrets: Iterable[tuple[str | uuid.UUID, bytes]]) -> SecretTable:
    """The OVMF secret table for ``(GUID or alias such as luks-key, data)`` pairs.

    A GUID given twice is refused: the guest would see only one of the two values.
    """
    entries: list[SecretEntry] = []
    seen: set[uuid.UUID] = set()
    for name, data in secrets:
        guid = name if isinstance(name, uuid.UUID) else resolve_guid(name)
        if guid in seen:
            raise UsageError(
                f"secret GUID {guid_alias(guid)} is given twice; each GUID names one secret "
                "in the guest (/sys/kernel/security/secrets/coco/<guid>): give each once"
            )
        seen.add(guid)
        entries.append(SecretEntry(guid, bytes(data)))
    if not entries:
        raise UsageError("no secret given; expected at least one GUID:FILE (or luks-key:FILE)")
    return SecretTable(tuple(entries))


def check_size(table: SecretTable, area_size: int | None = None) -> int:
    """The padded size of ``table``; refuses more than 16 KiB or than the firmware's area."""
    size = len(table.to_bytes())
    if size > MAX_PAYLOAD:
        raise UsageError(
            f"the secret table is {size} bytes once padded (header length {table.length}); "
            f"KVM accepts at most {MAX_PAYLOAD} bytes: shorten or drop a secret"
        )
    if area_size is not None and size > area_size:
        raise UsageError(
            f"the secret table is {size} bytes once padded (header length {table.length}) but "
            f"the firmware's secret area holds {area_size} bytes; shorten or drop a secret"
        )
    return size


def _measure_of(measurement: Measurement | bytes) -> bytes:
    if isinstance(measurement, Measurement):
        return measurement.measure
    return Measurement.from_bytes(measurement).measure


def build_packet(
    table: SecretTable,
    keys: TransportKeys,
    measurement: Measurement | bytes,
    *,
    iv: bytes | None = None,
    rng: Callable[[int], bytes] | None = None,
    area_size: int | None = None,
) -> SecretPacket:
    """Encrypt and MAC ``table`` for the launch whose 48-byte measurement is given.

    The IV is ``iv`` when given (reproducible tests), else 16 bytes from ``rng``.
    """
    check_size(table, area_size)
    if iv is None:
        if rng is None:
            raise UsageError("build_packet needs an iv or an rng to draw one from")
        iv = rng(16)
    if len(iv) != 16:
        raise UsageError(f"the packet IV is 16 bytes, got {len(iv)}")
    plaintext = table.to_bytes()
    payload = aes128_ctr(keys.tek, iv, plaintext)
    mac = secret_mac(
        keys.tik,
        flags=0,
        iv=iv,
        guest_length=len(plaintext),
        ciphertext=payload,
        measure=_measure_of(measurement),
    )
    return SecretPacket(SecretHeader(0, iv, mac), payload)
