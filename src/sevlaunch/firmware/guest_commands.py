"""Guest lifecycle and debug commands: ACTIVATE, DEACTIVATE, DECOMMISSION, GUEST_STATUS,
DBG_DECRYPT, DBG_ENCRYPT (doc §9, §10; ASID rules in :mod:`.guest`).

Choices where the doc is silent: ACTIVATE of a guest that is already active answers ACTIVE
(DEACTIVATE it first); DEACTIVATE of an inactive guest succeeds and changes nothing, so
KVM-style teardown (DEACTIVATE then DECOMMISSION) is always safe; DBG_* under NODBG answer
POLICY_FAILURE and need an active guest (the key must be loaded).
"""

from __future__ import annotations

from dataclasses import replace

from sevlaunch.firmware._core import Core, Handler, aligned, require, require_active
from sevlaunch.firmware.memory import Memory
from sevlaunch.formats.commands import (
    ActivateBuffer,
    Command,
    DbgBuffer,
    GuestStatusBuffer,
    HandleBuffer,
)
from sevlaunch.formats.status import Status


def activate(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = ActivateBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    require(not guest.active, Status.ACTIVE, f"guest {guest.handle} is active on ASID {guest.asid}")
    allowed = core.profile.es_asids if guest.es else core.profile.sev_asids
    require(
        buf.asid in allowed,
        Status.INVALID_ASID,
        f"{'SEV-ES' if guest.es else 'SEV'} guests use ASIDs {allowed.start}..{allowed.stop - 1}",
    )
    require(
        buf.asid not in core.asids.dirty,
        Status.DF_FLUSH_REQUIRED,
        f"ASID {buf.asid} needs DF_FLUSH",
    )
    owners = core.asids.owners(buf.asid)
    require(
        all(core.guests[h].key_group == guest.key_group for h in owners),
        Status.ASID_OWNED,
        f"ASID {buf.asid} is bound to a guest with another key",
    )
    core.asids.bind(buf.asid, guest.handle)
    guest.asid = buf.asid
    return buffer


def deactivate(core: Core, buffer: bytes, memory: Memory) -> bytes:
    guest = core.guest(HandleBuffer.from_bytes(buffer).handle)
    if guest.active:
        core.asids.unbind(guest.asid, guest.handle)
        guest.asid = 0
    return buffer


def decommission(core: Core, buffer: bytes, memory: Memory) -> bytes:
    guest = core.guest(HandleBuffer.from_bytes(buffer).handle)
    require(not guest.active, Status.ACTIVE, f"DEACTIVATE guest {guest.handle} first")
    del core.guests[guest.handle]
    return buffer


def guest_status(core: Core, buffer: bytes, memory: Memory) -> bytes:
    buf = GuestStatusBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    return replace(
        buf, policy=guest.policy.to_int(), asid=guest.asid, state=int(guest.state)
    ).to_bytes()


def _dbg(core: Core, buffer: bytes, command: Command) -> tuple[DbgBuffer, int, int]:
    buf = DbgBuffer.from_bytes(buffer)
    guest = core.guest(buf.handle)
    require(guest.policy.allows_debug, Status.POLICY_FAILURE, "the guest policy sets NODBG")
    require_active(guest, command)
    aligned(buf.src_paddr, buf.length, command)
    aligned(buf.dst_paddr, buf.length, command)
    return buf, core.phys(buf.src_paddr), core.phys(buf.dst_paddr)


def dbg_decrypt(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """Guest memory at src (under the VEK) to plaintext at dst."""
    buf, src, dst = _dbg(core, buffer, Command.DBG_DECRYPT)
    cipher = core.guests[buf.handle].cipher
    memory.write(dst, cipher.load(memory, src, buf.length))
    return buffer


def dbg_encrypt(core: Core, buffer: bytes, memory: Memory) -> bytes:
    """Plaintext at src into guest memory at dst, under the VEK."""
    buf, src, dst = _dbg(core, buffer, Command.DBG_ENCRYPT)
    cipher = core.guests[buf.handle].cipher
    cipher.store(memory, dst, memory.read(src, buf.length))
    return buffer


HANDLERS: dict[Command, Handler] = {
    Command.ACTIVATE: activate,
    Command.DEACTIVATE: deactivate,
    Command.DECOMMISSION: decommission,
    Command.GUEST_STATUS: guest_status,
    Command.DBG_DECRYPT: dbg_decrypt,
    Command.DBG_ENCRYPT: dbg_encrypt,
}
