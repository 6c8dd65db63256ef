"""Which connection may address which guest on the emulated ``/dev/sev``.

On a real host a guest's SEV commands reach the PSP only through the KVM file descriptor of
the VM that launched it: another process on the host can open ``/dev/sev`` for platform
commands (PLATFORM_STATUS, PDH_CERT_EXPORT, ...) but cannot name a guest it does not own, and
when the VM's descriptor closes KVM DEACTIVATEs and DECOMMISSIONs the guest
(``sev_vm_destroy``). The platform socket plays both parts, so a guest handle is bound to
the connection whose LAUNCH_START created it: every command naming the handle (LAUNCH_*,
ACTIVATE, DECOMMISSION, DBG_*, ATTESTATION, the key-sharing LAUNCH_START, guest memory reads
and writes) is refused on any other connection with the answer an unknown handle gets
(INVALID_GUEST), so a stranger learns nothing about which handles exist; and a connection's
guests are released when it closes, as KVM releases a dead VMM's.

SEV-SNP guest contexts are bound the same way, by the address of their context page: the
connection whose SNP_GCTX_CREATE made one alone reaches it (SNP_LAUNCH_*, SNP_ACTIVATE,
SNP_GUEST_REQUEST, SNP_DECOMMISSION, the memory controller's reads and writes), and its
contexts are decommissioned when it closes.

There is no hand-over between connections: nothing needs one. The host manager's recovery
re-attaches to running hypervisors over QMP, never over this socket; a hypervisor keeps its
one connection for the guest's life (``-daemonize`` forks before connecting); and a
hypervisor that dies closes its connection, which frees its guests here.
"""

from __future__ import annotations

from sevlaunch.errors import FirmwareError
from sevlaunch.firmware.snp.states import SNP_GUEST_COMMANDS
from sevlaunch.firmware.states import GUEST_COMMANDS, GUEST_CREATE
from sevlaunch.formats.commands import Command
from sevlaunch.formats.snp.commands import SnpCommand
from sevlaunch.formats.status import Status

_CREATE = frozenset(int(c) for c in GUEST_CREATE)
_ADDRESSED = frozenset(int(c) for c in GUEST_COMMANDS)
_SNP_ADDRESSED = frozenset(int(c) for c in SNP_GUEST_COMMANDS)


class Peer:
    """One client connection of the platform socket (KVM's VM file descriptor)."""

    __slots__ = ("contexts", "handles", "name")

    def __init__(self, name: str = "connection") -> None:
        self.name = name
        self.handles: set[int] = set()
        self.contexts: set[int] = set()  # SNP guest contexts (their GCTX page address)


def _handle(buffer: bytes) -> int:
    return int.from_bytes(buffer[:4], "little")


def named_handle(command: int, buffer: bytes) -> int | None:
    """The guest handle a mailbox command addresses, or None (platform commands; a
    LAUNCH_START that creates a guest with its own keys; a buffer too short to name one,
    which the firmware refuses for its size)."""
    if len(buffer) < 4:
        return None
    if command in _ADDRESSED:
        return _handle(buffer)
    if command in _CREATE:
        return _handle(buffer) or None  # non-zero: share the keys of that guest
    return None


class GuestBindings:
    """The owner of every live guest handle; see the module docstring."""

    def __init__(self) -> None:
        self._owner: dict[int, Peer] = {}
        self._snp_owner: dict[int, Peer] = {}

    def refusal(self, peer: Peer, command: int, buffer: bytes) -> str | None:
        """Why ``peer`` may not run ``command`` (None: it may)."""
        if command in _SNP_ADDRESSED and len(buffer) >= 8:
            gctx = int.from_bytes(buffer[:8], "little")
            return None if self._snp_owner.get(gctx) is peer else _not_yours_snp(gctx)
        handle = named_handle(command, buffer)
        if handle is None or self._owner.get(handle) is peer:
            return None
        return _not_yours(handle)

    def check_access(self, peer: Peer, handle: int) -> None:
        """Guest memory reads and writes: only the guest's own connection."""
        if self._owner.get(handle) is not peer:
            raise FirmwareError("guest access", Status.INVALID_GUEST, _not_yours(handle))

    def check_snp_access(self, peer: Peer, gctx: int) -> None:
        if self._snp_owner.get(gctx) is not peer:
            raise FirmwareError("guest access", Status.INVALID_GUEST, _not_yours_snp(gctx))

    def record(self, peer: Peer, command: int, status: int, buffer: bytes, written: bytes) -> None:
        """Bind a guest ``peer`` just created; forget one it just decommissioned."""
        if status != Status.SUCCESS:
            return
        if command in (SnpCommand.SNP_GCTX_CREATE, SnpCommand.SNP_DECOMMISSION):
            self._record_snp(peer, command, int.from_bytes(buffer[:8], "little"))
        elif command in _CREATE:
            handle = _handle(written)
            self._owner[handle] = peer
            peer.handles.add(handle)
        elif command == Command.DECOMMISSION:
            handle = _handle(buffer)
            if self._owner.pop(handle, None) is not None:
                peer.handles.discard(handle)

    def _record_snp(self, peer: Peer, command: int, gctx: int) -> None:
        if command == SnpCommand.SNP_GCTX_CREATE:
            self._snp_owner[gctx] = peer
            peer.contexts.add(gctx)
        elif self._snp_owner.pop(gctx, None) is not None:
            peer.contexts.discard(gctx)

    def release(self, peer: Peer) -> list[int]:
        """The handles ``peer`` still owns, now owned by nobody (its connection closed)."""
        handles = sorted(peer.handles)
        for handle in handles:
            self._owner.pop(handle, None)
        peer.handles.clear()
        return handles

    def release_snp(self, peer: Peer) -> list[int]:
        """The SNP contexts ``peer`` still owns, now owned by nobody."""
        contexts = sorted(peer.contexts)
        for gctx in contexts:
            self._snp_owner.pop(gctx, None)
        peer.contexts.clear()
        return contexts


def _not_yours_snp(gctx: int) -> str:
    return (
        f"no guest context at {gctx:#x} on this connection: an SNP guest is addressed only "
        "through the connection whose SNP_GCTX_CREATE made it"
    )


def _not_yours(handle: int) -> str:
    return (
        f"no guest with handle {handle} on this connection: a guest is addressed only through "
        "the connection whose LAUNCH_START created it (as only its VM's KVM descriptor reaches it)"
    )
