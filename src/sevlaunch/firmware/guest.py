"""Guest contexts and ASID bookkeeping: the firmware's volatile state.

ASID rules (firmware-API doc §9, the [spec] notes): an SEV-ES guest must be activated on an
ES ASID and a plain SEV guest on an SEV ASID (else INVALID_ASID); an ASID bound to a guest
that does not share this guest's key is ASID_OWNED; an ASID that was deactivated cannot be
bound again until DF_FLUSH (DF_FLUSH_REQUIRED). Guests that share a key (LAUNCH_START with a
handle) share an ASID, so each key needs one ASID of its range: LAUNCH_START of a new key
fails with RESOURCE_LIMIT once the range has as many keys as ASIDs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sevlaunch.firmware.encryption import GuestCipher
from sevlaunch.firmware.states import GuestState
from sevlaunch.formats.policy import Policy


@dataclass
class GuestContext:
    """One guest: policy, keys, launch digest, state and the ASID it is active on (0: none)."""

    handle: int
    policy: Policy
    key_group: int
    cipher: GuestCipher
    tik: bytes
    tek: bytes
    state: GuestState = GuestState.UNINIT
    asid: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    measure: bytes | None = None

    @property
    def es(self) -> bool:
        return self.policy.requires_es

    @property
    def active(self) -> bool:
        return self.asid != 0


@dataclass
class AsidTable:
    """Which guests are bound to each ASID, and which ASIDs await a DF_FLUSH."""

    bound: dict[int, set[int]] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)

    def owners(self, asid: int) -> set[int]:
        return self.bound.get(asid, set())

    def bind(self, asid: int, handle: int) -> None:
        self.bound.setdefault(asid, set()).add(handle)

    def unbind(self, asid: int, handle: int) -> None:
        """Release ``handle``'s binding; the ASID needs a flush once nobody holds it."""
        holders = self.bound.get(asid, set())
        holders.discard(handle)
        if not holders:
            self.bound.pop(asid, None)
            self.dirty.add(asid)

    def flush(self) -> None:
        self.dirty.clear()

    def reset(self) -> None:
        self.bound.clear()
        self.dirty.clear()
