"""SEV-SNP firmware command IDs and command buffers (Linux ``include/linux/psp-sev.h``), on the
same packed little-endian base as SEV's (:class:`~sevlaunch.formats.commands.CommandBuffer`).

Bit fields are kept as the word they live in (``flags``) with named accessors, so every buffer
round-trips exactly; reserved bytes are written as zero and ignored when read, as the PSP does.
The 32-byte SNP_PLATFORM_STATUS structure is written to memory, not into the command buffer.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from sevlaunch.formats._codec import Reader
from sevlaunch.formats.commands import CommandBuffer


class SnpCommand(enum.IntEnum):
    SNP_INIT = 0x081
    SNP_SHUTDOWN = 0x082
    SNP_PLATFORM_STATUS = 0x083
    SNP_DF_FLUSH = 0x084
    SNP_INIT_EX = 0x085
    SNP_SHUTDOWN_EX = 0x086
    SNP_DECOMMISSION = 0x090
    SNP_ACTIVATE = 0x091
    SNP_GUEST_STATUS = 0x092
    SNP_GCTX_CREATE = 0x093
    SNP_GUEST_REQUEST = 0x094
    SNP_ACTIVATE_EX = 0x095
    SNP_LAUNCH_START = 0x0A0
    SNP_LAUNCH_UPDATE = 0x0A1
    SNP_LAUNCH_FINISH = 0x0A2
    SNP_DBG_DECRYPT = 0x0B0
    SNP_DBG_ENCRYPT = 0x0B1
    SNP_PAGE_SWAP_OUT = 0x0C0
    SNP_PAGE_SWAP_IN = 0x0C1
    SNP_PAGE_MOVE = 0x0C2
    SNP_PAGE_MD_INIT = 0x0C3
    SNP_PAGE_SET_STATE = 0x0C6
    SNP_PAGE_RECLAIM = 0x0C7
    SNP_PAGE_UNSMASH = 0x0C8
    SNP_CONFIG = 0x0C9
    SNP_DOWNLOAD_FIRMWARE_EX = 0x0CA
    SNP_COMMIT = 0x0CB
    SNP_VLEK_LOAD = 0x0CD
    SNP_FEATURE_INFO = 0x0CE


def is_snp_command(command: int) -> bool:
    return command in SnpCommand._value2member_map_


@dataclass(frozen=True)
class SnpAddrBuffer(CommandBuffer):
    """``sev_data_snp_addr``: one system physical address (the guest context page for
    GCTX_CREATE and DECOMMISSION, the status page for PLATFORM_STATUS)."""

    COMMAND = (
        SnpCommand.SNP_PLATFORM_STATUS,
        SnpCommand.SNP_GCTX_CREATE,
        SnpCommand.SNP_DECOMMISSION,
        SnpCommand.SNP_PAGE_RECLAIM,
    )
    FORMAT = struct.Struct("<Q")

    address: int = 0


@dataclass(frozen=True)
class SnpInitExBuffer(CommandBuffer):
    COMMAND = (SnpCommand.SNP_INIT_EX,)
    FORMAT = struct.Struct("<I4xQH46x")
    INIT_RMP: ClassVar[int] = 1 << 0
    LIST_PADDR_EN: ClassVar[int] = 1 << 1
    RAPL_DIS: ClassVar[int] = 1 << 2
    CIPHERTEXT_HIDING_EN: ClassVar[int] = 1 << 3

    flags: int = INIT_RMP
    list_paddr: int = 0
    max_snp_asid: int = 0


@dataclass(frozen=True)
class SnpShutdownExBuffer(CommandBuffer):
    COMMAND = (SnpCommand.SNP_SHUTDOWN_EX,)
    FORMAT = struct.Struct("<II")

    length: int = 8
    flags: int = 0  # bit0 IOMMU_SNP_SHUTDOWN, bit1 X86_SNP_SHUTDOWN


@dataclass(frozen=True)
class SnpActivateBuffer(CommandBuffer):
    COMMAND = (SnpCommand.SNP_ACTIVATE,)
    FORMAT = struct.Struct("<QI")

    gctx_paddr: int = 0
    asid: int = 0


@dataclass(frozen=True)
class SnpLaunchStartBuffer(CommandBuffer):
    """``flags`` bit0 MA_EN, bit1 IMI_EN; GOSVW is copied to the SECRETS page."""

    COMMAND = (SnpCommand.SNP_LAUNCH_START,)
    FORMAT = struct.Struct("<QQQII16s")

    gctx_paddr: int = 0
    policy: int = 0x30000
    ma_gctx_paddr: int = 0
    flags: int = 0
    desired_tsc_khz: int = 0
    gosvw: bytes = bytes(16)


@dataclass(frozen=True)
class SnpLaunchUpdateBuffer(CommandBuffer):
    """``flags``: bit0 PAGE_SIZE (0 4K, 1 2M), bits 3:1 PAGE_TYPE, bit4 IMI_PAGE; ``perms``:
    bits 15:8 VMPL1, 23:16 VMPL2, 31:24 VMPL3 permissions."""

    COMMAND = (SnpCommand.SNP_LAUNCH_UPDATE,)
    FORMAT = struct.Struct("<QI4xQI4x")

    gctx_paddr: int = 0
    flags: int = 0
    address: int = 0
    perms: int = 0

    @classmethod
    def page(cls, gctx_paddr: int, address: int, page_type: int, *, imi: bool = False) -> Self:
        return cls(gctx_paddr, (page_type & 7) << 1 | int(imi) << 4, address)

    @property
    def page_size_2m(self) -> bool:
        return bool(self.flags & 1)

    @property
    def page_type(self) -> int:
        return (self.flags >> 1) & 7

    @property
    def imi_page(self) -> int:
        return (self.flags >> 4) & 1

    @property
    def reserved_flags(self) -> int:
        return self.flags & ~0x1F

    @property
    def vmpl_perms(self) -> tuple[int, int, int]:
        """VMPL1, VMPL2, VMPL3 permission masks."""
        return ((self.perms >> 8) & 0xFF, (self.perms >> 16) & 0xFF, (self.perms >> 24) & 0xFF)


@dataclass(frozen=True)
class SnpLaunchFinishBuffer(CommandBuffer):
    """``flags`` bit0 ID_BLOCK_EN, bit1 AUTH_KEY_EN, bit2 VCEK_DISABLED."""

    COMMAND = (SnpCommand.SNP_LAUNCH_FINISH,)
    FORMAT = struct.Struct("<QQQQ32s")
    ID_BLOCK_EN: ClassVar[int] = 1 << 0
    AUTH_KEY_EN: ClassVar[int] = 1 << 1
    VCEK_DISABLED: ClassVar[int] = 1 << 2

    gctx_paddr: int = 0
    id_block_paddr: int = 0
    id_auth_paddr: int = 0
    flags: int = 0
    host_data: bytes = bytes(32)

    def has(self, bit: int) -> bool:
        return bool(self.flags & bit)


@dataclass(frozen=True)
class SnpGuestRequestBuffer(CommandBuffer):
    COMMAND = (SnpCommand.SNP_GUEST_REQUEST,)
    FORMAT = struct.Struct("<QQQ")

    gctx_paddr: int = 0
    req_paddr: int = 0
    res_paddr: int = 0


@dataclass(frozen=True)
class SnpDbgBuffer(CommandBuffer):
    COMMAND = (SnpCommand.SNP_DBG_DECRYPT, SnpCommand.SNP_DBG_ENCRYPT)
    FORMAT = struct.Struct("<QQQ")

    gctx_paddr: int = 0
    src_addr: int = 0
    dst_addr: int = 0


@dataclass(frozen=True)
class SnpConfigBuffer(CommandBuffer):
    """REPORTED_TCB and, in ``flags``, bit0 MASK_CHIP_ID and bit1 MASK_CHIP_KEY."""

    COMMAND = (SnpCommand.SNP_CONFIG,)
    FORMAT = struct.Struct("<QI52x")
    MASK_CHIP_ID: ClassVar[int] = 1 << 0
    MASK_CHIP_KEY: ClassVar[int] = 1 << 1

    reported_tcb: int = 0
    flags: int = 0


@dataclass(frozen=True)
class SnpCommitBuffer(CommandBuffer):
    COMMAND = (SnpCommand.SNP_COMMIT,)
    FORMAT = struct.Struct("<I")

    length: int = 4


@dataclass(frozen=True)
class SnpVlekLoadBuffer(CommandBuffer):
    """A wrapped VLEK hashstick (432 bytes, version 0) at ``address``."""

    COMMAND = (SnpCommand.SNP_VLEK_LOAD,)
    FORMAT = struct.Struct("<IB3xQ")

    length: int = 16
    version: int = 0
    address: int = 0


SNP_BUFFERS: dict[SnpCommand, type[CommandBuffer]] = {
    command: cls
    for cls in (
        SnpAddrBuffer,
        SnpInitExBuffer,
        SnpShutdownExBuffer,
        SnpActivateBuffer,
        SnpLaunchStartBuffer,
        SnpLaunchUpdateBuffer,
        SnpLaunchFinishBuffer,
        SnpGuestRequestBuffer,
        SnpDbgBuffer,
        SnpConfigBuffer,
        SnpCommitBuffer,
        SnpVlekLoadBuffer,
    )
    for command in cls.COMMAND
}
SNP_NO_BUFFER = frozenset({SnpCommand.SNP_INIT, SnpCommand.SNP_SHUTDOWN, SnpCommand.SNP_DF_FLUSH})


def snp_buffer_size(command: SnpCommand) -> int | None:
    """0 for the buffer-less commands, None for those without a known layout."""
    if command in SNP_NO_BUFFER:
        return 0
    cls = SNP_BUFFERS.get(command)
    return cls.size() if cls else None


# --- SNP_PLATFORM_STATUS (written to the page the buffer names) ------------------------------

STATUS = "SNP_PLATFORM_STATUS"
STATUS_SIZE = 32
_STATUS = struct.Struct("<BBBBIIIQQ")


class SnpStatusFlags(enum.IntFlag):
    MASK_CHIP_ID = 1 << 0
    MASK_CHIP_KEY = 1 << 1
    VLEK_EN = 1 << 2
    FEATURE_INFO = 1 << 3
    RAPL_DIS = 1 << 4
    CIPHERTEXT_HIDING_CAP = 1 << 5
    CIPHERTEXT_HIDING_EN = 1 << 6


@dataclass(frozen=True)
class SnpPlatformStatus:
    """``rmp_flags`` bit0 IS_RMP_INITIALIZED; ``flags`` the :class:`SnpStatusFlags` word."""

    api_major: int
    api_minor: int
    state: int
    build_id: int
    guest_count: int
    current_tcb: int
    reported_tcb: int
    rmp_flags: int = 0
    flags: int = 0

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        Reader(STATUS, data).expect_size(STATUS_SIZE)
        major, minor, state, rmp, build, flags, count, current, reported = _STATUS.unpack(data)
        return cls(major, minor, state, build, count, current, reported, rmp, flags)

    def to_bytes(self) -> bytes:
        return _STATUS.pack(
            self.api_major,
            self.api_minor,
            self.state,
            self.rmp_flags,
            self.build_id,
            self.flags,
            self.guest_count,
            self.current_tcb,
            self.reported_tcb,
        )

    @property
    def rmp_initialized(self) -> bool:
        return bool(self.rmp_flags & 1)

    @property
    def vlek_loaded(self) -> bool:
        return bool(self.flags & SnpStatusFlags.VLEK_EN)
