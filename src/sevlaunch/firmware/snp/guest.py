"""SNP guest contexts and the firmware's SNP platform state (volatile, like SEV's guests)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sevlaunch.firmware.encryption import GuestCipher
from sevlaunch.firmware.snp.identity import LoadedVlek
from sevlaunch.firmware.snp.profiles import SnpProfile
from sevlaunch.firmware.snp.rmp import Rmp
from sevlaunch.formats.states import PlatformState

LD_SIZE = 48


class SnpGuestState(enum.IntEnum):
    """GSTATE_INIT after SNP_GCTX_CREATE, LAUNCH after SNP_LAUNCH_START, RUNNING after
    SNP_LAUNCH_FINISH."""

    INIT = 0
    LAUNCH = 1
    RUNNING = 2


@dataclass
class IdInfo:
    """What LAUNCH_FINISH took from a verified ID block."""

    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    guest_svn: int = 0
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    author_key_en: bool = False


@dataclass
class SnpGuest:
    gctx: int
    state: SnpGuestState = SnpGuestState.INIT
    policy: int = 0
    gosvw: bytes = bytes(16)
    cipher: GuestCipher | None = None
    vmpcks: tuple[bytes, ...] = ()
    seqnos: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    ld: bytes = bytes(LD_SIZE)
    asid: int = 0
    launch_tcb: int = 0
    report_id: bytes = bytes(32)
    host_data: bytes = bytes(32)
    vcek_disabled: bool = False
    id_info: IdInfo = field(default_factory=IdInfo)

    @property
    def active(self) -> bool:
        return self.asid != 0


@dataclass
class SnpPlatform:
    """The SNP half of the PSP's volatile state."""

    profile: SnpProfile
    state: PlatformState = PlatformState.UNINIT
    reported_tcb: int = 0
    mask_chip_id: bool = False
    mask_chip_key: bool = False
    vlek: LoadedVlek | None = None
    guests: dict[int, SnpGuest] = field(default_factory=dict)
    rmp: Rmp = field(default_factory=Rmp)

    def __post_init__(self) -> None:
        self.reported_tcb = self.reported_tcb or self.profile.firmware.tcb

    @property
    def current_tcb(self) -> int:
        return self.profile.firmware.tcb

    def guest_by_asid(self, asid: int) -> SnpGuest | None:
        return next((g for g in self.guests.values() if g.asid == asid), None)
