"""SEV firmware command IDs and command buffers, as the PSP sees them (firmware-API doc §0).

Each buffer is a packed little-endian structure of fixed size. These are the *firmware*
layouts: PEK_CERT_IMPORT and PDH_CERT_EXPORT carry a reserved u32 that Linux's ``/dev/sev``
uapi structs omit. Reserved bytes are ignored when parsing and written as zero, which is how
the firmware treats them; every other field round-trips exactly.

Output fields (lengths, handles, PLATFORM_STATUS and GUEST_STATUS contents) are written back
into the same buffer by the firmware; ``replace(buf, field=...)`` then ``to_bytes()`` builds
the written-back buffer.
"""

from __future__ import annotations

import enum
import functools
import re
import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from sevlaunch.errors import FormatError
from sevlaunch.formats._codec import Reader


class Command(enum.IntEnum):
    """Firmware command IDs (sev-tool ``sevapi.h``, Linux ``psp-sev.h``); SNP ones omitted."""

    INIT = 0x01
    SHUTDOWN = 0x02
    PLATFORM_RESET = 0x03
    PLATFORM_STATUS = 0x04
    PEK_GEN = 0x05
    PEK_CSR = 0x06
    PEK_CERT_IMPORT = 0x07
    PDH_CERT_EXPORT = 0x08
    PDH_GEN = 0x09
    DF_FLUSH = 0x0A
    DOWNLOAD_FIRMWARE = 0x0B
    GET_ID = 0x0C
    INIT_EX = 0x0D
    NOP = 0x0E
    RING_BUFFER = 0x0F
    DECOMMISSION = 0x20
    ACTIVATE = 0x21
    DEACTIVATE = 0x22
    GUEST_STATUS = 0x23
    COPY = 0x24
    ACTIVATE_EX = 0x25
    LAUNCH_START = 0x30
    LAUNCH_UPDATE_DATA = 0x31
    LAUNCH_UPDATE_VMSA = 0x32
    LAUNCH_MEASURE = 0x33
    LAUNCH_SECRET = 0x34
    LAUNCH_FINISH = 0x35
    ATTESTATION = 0x36
    SEND_START = 0x40
    SEND_UPDATE_DATA = 0x41
    SEND_UPDATE_VMSA = 0x42
    SEND_FINISH = 0x43
    SEND_CANCEL = 0x44
    RECEIVE_START = 0x50
    RECEIVE_UPDATE_DATA = 0x51
    RECEIVE_UPDATE_VMSA = 0x52
    RECEIVE_FINISH = 0x53
    DBG_DECRYPT = 0x60
    DBG_ENCRYPT = 0x61
    SWAP_OUT = 0x70
    SWAP_IN = 0x71


_TOKEN = re.compile(r"(\d*)([xBHIQs])")
_WIDTH = {"B": 1, "H": 2, "I": 4, "Q": 8}


@functools.cache
def _field_kinds(fmt: str) -> tuple[tuple[str, int], ...]:
    """``(kind, size)`` of each value-carrying struct code: ``("int", 4)``, ``("bytes", 16)``."""
    kinds: list[tuple[str, int]] = []
    for count, code in _TOKEN.findall(fmt[1:]):
        if code == "x":
            continue
        if code == "s":
            kinds.append(("bytes", int(count)))
        else:
            kinds.extend([("int", _WIDTH[code])] * int(count or 1))
    return tuple(kinds)


@dataclass(frozen=True)
class CommandBuffer:
    """Base of every command buffer: one ``struct`` layout, fields in declaration order."""

    COMMAND: ClassVar[tuple[enum.IntEnum, ...]]
    FORMAT: ClassVar[struct.Struct]

    @classmethod
    def structure(cls) -> str:
        return f"{'/'.join(c.name for c in cls.COMMAND)} command buffer"

    @classmethod
    def size(cls) -> int:
        return cls.FORMAT.size

    def __post_init__(self) -> None:
        for name, kind, size in _schema(type(self)):
            value = getattr(self, name)
            if kind == "bytes":
                if not isinstance(value, bytes) or len(value) != size:
                    raise FormatError(self.structure(), name, f"expected {size} bytes", value=value)
            elif not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
                raise FormatError(self.structure(), name, f"expected a u{8 * size}", value=value)

    @classmethod
    def _unpack(cls, data: bytes) -> tuple[Any, ...]:
        Reader(cls.structure(), data).expect_size(cls.FORMAT.size)
        return cls.FORMAT.unpack(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(*cls._unpack(data))

    def to_bytes(self) -> bytes:
        return self.FORMAT.pack(*(getattr(self, name) for name, _, _ in _schema(type(self))))


_SCHEMAS: dict[type[CommandBuffer], tuple[tuple[str, str, int], ...]] = {}


def _schema(cls: type[CommandBuffer]) -> tuple[tuple[str, str, int], ...]:
    """``(field name, kind, size)`` of each value the layout carries, in order (cached)."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        kinds = _field_kinds(cls.FORMAT.format)
        schema = tuple(
            (f.name, kind, size) for f, (kind, size) in zip(fields(cls), kinds, strict=True)
        )
        _SCHEMAS[cls] = schema
    return schema


@dataclass(frozen=True)
class InitBuffer(CommandBuffer):
    """INIT: options (bit0 = SEV-ES), TMR address (1 MiB aligned) and length (1 MiB)."""

    COMMAND = (Command.INIT,)
    FORMAT = struct.Struct("<I4xQI")
    OPTION_ES: ClassVar[int] = 0x1

    options: int = 0
    tmr_paddr: int = 0
    tmr_len: int = 0


@dataclass(frozen=True)
class InitExBuffer(CommandBuffer):
    """INIT_EX: INIT's fields plus the host-provided non-volatile storage area."""

    COMMAND = (Command.INIT_EX,)
    FORMAT = struct.Struct("<IIQI4xQI")
    LENGTH: ClassVar[int] = 0x24
    NV_SIZE: ClassVar[int] = 32 * 1024

    length: int = 0x24
    options: int = 0
    tmr_paddr: int = 0
    tmr_len: int = 0
    nv_paddr: int = 0
    nv_len: int = 0


@dataclass(frozen=True)
class PlatformStatusBuffer(CommandBuffer):
    """PLATFORM_STATUS, written entirely by the firmware.

    ``owner`` bit0: 0 self-owned, 1 externally owned; ``config`` bit0: SEV-ES initialised.
    (Linux reads bytes 3..6 as one u32 ``flags``: OWNER = 0x1, CONFIG_ES = 0x100.)
    """

    COMMAND = (Command.PLATFORM_STATUS,)
    FORMAT = struct.Struct("<BBBBHxBI")

    api_major: int = 0
    api_minor: int = 0
    state: int = 0
    owner: int = 0
    config: int = 0
    build_id: int = 0
    guest_count: int = 0

    @property
    def externally_owned(self) -> bool:
        return bool(self.owner & 0x1)

    @property
    def es_initialized(self) -> bool:
        return bool(self.config & 0x1)


@dataclass(frozen=True)
class _AddressLength(CommandBuffer):
    FORMAT = struct.Struct("<QI")

    paddr: int = 0
    length: int = 0


@dataclass(frozen=True)
class PekCsrBuffer(_AddressLength):
    """PEK_CSR: where to write the CSR and its length (in/out, 0x824)."""

    COMMAND = (Command.PEK_CSR,)


@dataclass(frozen=True)
class GetIdBuffer(_AddressLength):
    """GET_ID: where to write the chip ID and its length (in/out, 64 per socket)."""

    COMMAND = (Command.GET_ID,)


@dataclass(frozen=True)
class DownloadFirmwareBuffer(_AddressLength):
    """DOWNLOAD_FIRMWARE: the firmware image's address and length."""

    COMMAND = (Command.DOWNLOAD_FIRMWARE,)


@dataclass(frozen=True)
class PekCertImportBuffer(CommandBuffer):
    """PEK_CERT_IMPORT: the owner-signed PEK and the owner's OCA (0x824 bytes each)."""

    COMMAND = (Command.PEK_CERT_IMPORT,)
    FORMAT = struct.Struct("<QI4xQI")

    pek_paddr: int = 0
    pek_len: int = 0
    oca_paddr: int = 0
    oca_len: int = 0


@dataclass(frozen=True)
class PdhCertExportBuffer(CommandBuffer):
    """PDH_CERT_EXPORT: PDH (0x824, in/out) and PEK ‖ OCA ‖ CEK (0x186C, in/out)."""

    COMMAND = (Command.PDH_CERT_EXPORT,)
    FORMAT = struct.Struct("<QI4xQI")

    pdh_paddr: int = 0
    pdh_len: int = 0
    certs_paddr: int = 0
    certs_len: int = 0


@dataclass(frozen=True)
class HandleBuffer(CommandBuffer):
    """DECOMMISSION, DEACTIVATE, LAUNCH_FINISH, SEND_FINISH, SEND_CANCEL, RECEIVE_FINISH."""

    COMMAND = (
        Command.DECOMMISSION,
        Command.DEACTIVATE,
        Command.LAUNCH_FINISH,
        Command.SEND_FINISH,
        Command.SEND_CANCEL,
        Command.RECEIVE_FINISH,
    )
    FORMAT = struct.Struct("<I")

    handle: int = 0


@dataclass(frozen=True)
class ActivateBuffer(CommandBuffer):
    """ACTIVATE: bind the guest's key to an ASID."""

    COMMAND = (Command.ACTIVATE,)
    FORMAT = struct.Struct("<II")

    handle: int = 0
    asid: int = 0


@dataclass(frozen=True)
class GuestStatusBuffer(CommandBuffer):
    """GUEST_STATUS: handle in; policy, ASID (0 when inactive) and state written back."""

    COMMAND = (Command.GUEST_STATUS,)
    FORMAT = struct.Struct("<IIIB")

    handle: int = 0
    policy: int = 0
    asid: int = 0
    state: int = 0


@dataclass(frozen=True)
class LaunchStartBuffer(CommandBuffer):
    """LAUNCH_START: handle (in: 0 or a guest to share keys with; out: the new guest)."""

    COMMAND = (Command.LAUNCH_START,)
    FORMAT = struct.Struct("<IIQI4xQI")

    handle: int = 0
    policy: int = 0
    godh_paddr: int = 0
    godh_len: int = 0
    session_paddr: int = 0
    session_len: int = 0


@dataclass(frozen=True)
class LaunchUpdateBuffer(CommandBuffer):
    """LAUNCH_UPDATE_DATA and LAUNCH_UPDATE_VMSA: the region to measure and encrypt."""

    COMMAND = (Command.LAUNCH_UPDATE_DATA, Command.LAUNCH_UPDATE_VMSA)
    FORMAT = struct.Struct("<I4xQI")

    handle: int = 0
    paddr: int = 0
    length: int = 0


@dataclass(frozen=True)
class LaunchMeasureBuffer(CommandBuffer):
    """LAUNCH_MEASURE: where to write MEASURE ‖ MNONCE and its length (in/out, 0x30)."""

    COMMAND = (Command.LAUNCH_MEASURE,)
    FORMAT = struct.Struct("<I4xQI")

    handle: int = 0
    paddr: int = 0
    length: int = 0


@dataclass(frozen=True)
class LaunchSecretBuffer(CommandBuffer):
    """LAUNCH_SECRET: packet header, guest destination and transport (ciphertext) buffer."""

    COMMAND = (Command.LAUNCH_SECRET,)
    FORMAT = struct.Struct("<I4xQI4xQI4xQI")

    handle: int = 0
    hdr_paddr: int = 0
    hdr_len: int = 0
    guest_paddr: int = 0
    guest_len: int = 0
    trans_paddr: int = 0
    trans_len: int = 0


@dataclass(frozen=True)
class AttestationBuffer(CommandBuffer):
    """ATTESTATION: the caller's MNONCE and where to write the 0xD0-byte report."""

    COMMAND = (Command.ATTESTATION,)
    FORMAT = struct.Struct("<I4xQ16sI")

    handle: int = 0
    paddr: int = 0
    mnonce: bytes = bytes(16)
    length: int = 0


@dataclass(frozen=True)
class DbgBuffer(CommandBuffer):
    """DBG_DECRYPT and DBG_ENCRYPT: source, destination, length (all 16-byte aligned)."""

    COMMAND = (Command.DBG_DECRYPT, Command.DBG_ENCRYPT)
    FORMAT = struct.Struct("<I4xQQI")

    handle: int = 0
    src_paddr: int = 0
    dst_paddr: int = 0
    length: int = 0


#: The buffer layout of every command that has one in the doc.
BUFFERS: dict[Command, type[CommandBuffer]] = {
    command: cls
    for cls in (
        InitBuffer,
        InitExBuffer,
        PlatformStatusBuffer,
        PekCsrBuffer,
        GetIdBuffer,
        DownloadFirmwareBuffer,
        PekCertImportBuffer,
        PdhCertExportBuffer,
        HandleBuffer,
        ActivateBuffer,
        GuestStatusBuffer,
        LaunchStartBuffer,
        LaunchUpdateBuffer,
        LaunchMeasureBuffer,
        LaunchSecretBuffer,
        AttestationBuffer,
        DbgBuffer,
    )
    for command in cls.COMMAND
}

#: Commands whose firmware buffer is empty (no buffer address is passed).
NO_BUFFER = frozenset(
    {
        Command.SHUTDOWN,
        Command.PLATFORM_RESET,
        Command.PEK_GEN,
        Command.PDH_GEN,
        Command.DF_FLUSH,
        Command.NOP,
    }
)


def buffer_size(command: Command) -> int | None:
    """The buffer size of ``command``: 0 for buffer-less ones, None where the doc has none."""
    if command in NO_BUFFER:
        return 0
    cls = BUFFERS.get(command)
    return cls.size() if cls else None
