"""The firmware's mutable state and the helpers every command handler shares.

Handlers are plain functions ``(core, buffer, memory) -> written-back buffer``; they raise
:class:`CommandError` to answer a non-zero status, so each reads top to bottom as the list
of checks the command makes. State changes that the tables in :mod:`.states` describe are
applied by the dispatcher, not by handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sevlaunch.errors import CommandRefusedError
from sevlaunch.firmware.guest import AsidTable, GuestContext
from sevlaunch.firmware.identity import Identity, Rng
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.profiles import Profile
from sevlaunch.firmware.snp.guest import SnpPlatform
from sevlaunch.firmware.states import PlatformState
from sevlaunch.formats.commands import Command
from sevlaunch.formats.status import Status

#: Physical addresses are at most 52 bits wide on x86-64.
MAX_PHYS_BITS = 52


#: A handler's non-zero answer (kept under its old name inside the firmware).
CommandError = CommandRefusedError


@dataclass
class Core:
    """Everything a command may read or change."""

    profile: Profile
    rng: Rng
    identity: Identity
    state: PlatformState = PlatformState.UNINIT
    es_enabled: bool = False
    guests: dict[int, GuestContext] = field(default_factory=dict)
    asids: AsidTable = field(default_factory=AsidTable)
    next_handle: int = 1
    next_key_group: int = 1
    snp: SnpPlatform | None = None  # None: this generation has no SNP firmware
    rsa_keygen: Callable[[], Any] | None = None  # for the SNP PKI, made on first use

    @property
    def api(self) -> tuple[int, int]:
        return self.profile.api_version

    def phys(self, paddr: int) -> int:
        """The address the DMA engine uses: Linux passes addresses with the C-bit set
        (``__psp_pa`` on an SME host), so the firmware strips it."""
        paddr &= ~(1 << self.profile.cbitpos)
        if paddr >> MAX_PHYS_BITS:
            raise CommandError(Status.INVALID_ADDRESS, f"{paddr:#x} is not a physical address")
        return paddr

    def read(self, memory: Memory, paddr: int, length: int) -> bytes:
        return memory.read(self.phys(paddr), length)

    def write(self, memory: Memory, paddr: int, data: bytes) -> None:
        memory.write(self.phys(paddr), data)

    def guest(self, handle: int) -> GuestContext:
        try:
            return self.guests[handle]
        except KeyError as exc:
            raise CommandError(Status.INVALID_GUEST, f"no guest with handle {handle}") from exc

    def new_handle(self) -> int:
        handle = self.next_handle
        self.next_handle = handle % 0xFFFF_FFFF + 1
        while self.next_handle in self.guests:
            self.next_handle = self.next_handle % 0xFFFF_FFFF + 1
        return handle

    def drop_guests(self) -> None:
        """SEV's SHUTDOWN: every SEV guest goes, SNP guests keep their ASIDs."""
        snp_bound = {g.asid: g.gctx for g in self.snp.guests.values() if g.asid} if self.snp else {}
        self.guests.clear()
        self.asids.reset()
        for asid, gctx in snp_bound.items():
            self.asids.bind(asid, gctx)


Handler = Callable[[Core, bytes, Memory], bytes]


def require(condition: bool, status: Status, detail: str) -> None:
    """Raise CommandError(status) unless ``condition`` holds."""
    if not condition:
        raise CommandError(status, detail)


def require_active(guest: GuestContext, command: Command) -> None:
    require(
        guest.active,
        Status.INACTIVE,
        f"{command.name} needs the guest's key loaded: ACTIVATE handle {guest.handle} first",
    )


def length_query(needed: int, given: int, writeback: bytes) -> None:
    """The length-query convention: too short an output answers INVALID_LENGTH with the
    required length(s) already written back in ``writeback``."""
    if given < needed:
        raise CommandError(
            Status.INVALID_LENGTH, f"needs {needed:#x} bytes, given {given:#x}", writeback
        )


def aligned(paddr: int, length: int, command: Command, *, unit: int = 16) -> None:
    require(
        paddr % unit == 0,
        Status.INVALID_ADDRESS,
        f"{command.name} address must be {unit}-byte aligned",
    )
    require(
        length > 0 and length % unit == 0,
        Status.INVALID_LENGTH,
        f"{command.name} length must be a positive multiple of {unit}",
    )
