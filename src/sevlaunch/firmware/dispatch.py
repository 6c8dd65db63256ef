"""One firmware command, end to end: decode the ID, check the buffer, consult the state
tables, run the handler, apply the transitions.

Order of checks (each answers the first status that applies):

0. an SNP command ID (0x81 and up) is SNP's (:mod:`.snp.dispatch`);
1. an ID the SEV API does not define: INVALID_COMMAND (also ATTESTATION below API 0.23,
   where the command does not exist yet);
2. an ID it defines that this emulator does not implement (SEND_*, RECEIVE_*,
   DOWNLOAD_FIRMWARE, COPY, ACTIVATE_EX, SWAP_*, RING_BUFFER, NOP): UNSUPPORTED, QEMU's
   "Feature not supported", rather than INVALID_COMMAND, because a real PSP knows them;
3. a buffer of the wrong size for the command's layout: INVALID_PARAM;
4. the platform table: INVALID_PLATFORM_STATE; then, for a command addressed to a guest, an
   unknown handle: INVALID_GUEST, and the guest table: INVALID_GUEST_STATE;
5. the handler's own checks.
"""

from __future__ import annotations

from sevlaunch.errors import AddressError
from sevlaunch.firmware import guest_commands, launch_commands, platform_commands
from sevlaunch.firmware._core import CommandError, Core, Handler
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.snp import dispatch as snp_dispatch
from sevlaunch.firmware.states import (
    GUEST_COMMANDS,
    GUEST_TABLE,
    GUEST_TRANSITIONS,
    PLATFORM_TABLE,
    GuestState,
    platform_after,
)
from sevlaunch.formats.commands import Command, buffer_size
from sevlaunch.formats.snp.commands import is_snp_command
from sevlaunch.formats.status import Status

HANDLERS: dict[Command, Handler] = {
    **platform_commands.HANDLERS,
    **launch_commands.HANDLERS,
    **guest_commands.HANDLERS,
}


def _admit(core: Core, command: Command, buffer: bytes) -> None:
    """Steps 2-4 above."""
    if command not in HANDLERS:
        raise CommandError(Status.UNSUPPORTED, f"{command.name} is not emulated")
    size = buffer_size(command)
    if len(buffer) != size:
        raise CommandError(
            Status.INVALID_PARAM, f"{command.name} takes a {size}-byte buffer, got {len(buffer)}"
        )
    if command not in PLATFORM_TABLE[core.state]:
        raise CommandError(
            Status.INVALID_PLATFORM_STATE, f"{command.name} is not allowed in {core.state.name}"
        )
    if command in GUEST_COMMANDS:
        guest = core.guest(int.from_bytes(buffer[:4], "little"))
        if command not in GUEST_TABLE[guest.state]:
            raise CommandError(
                Status.INVALID_GUEST_STATE,
                f"{command.name} is not allowed for a guest in {guest.state.name}",
            )


def _transition(core: Core, command: Command, written: bytes) -> None:
    """Rule 2: apply the tables after a success."""
    if command in GUEST_COMMANDS or command is Command.LAUNCH_START:
        handle = int.from_bytes(written[:4], "little")
        guest = core.guests.get(handle)
        if guest is not None:
            state = GuestState.UNINIT if command is Command.LAUNCH_START else guest.state
            target = GUEST_TRANSITIONS.get((state, command), guest.state)
            if target is not None:
                guest.state = target
    core.state = platform_after(core.state, command, len(core.guests))


def execute(core: Core, command: int, buffer: bytes, memory: Memory) -> tuple[Status, bytes, str]:
    """Run one command; returns the status, the written-back buffer and a diagnostic."""
    if is_snp_command(command):
        return snp_dispatch.execute(core, command, buffer, memory)
    try:
        cmd = Command(command)
    except ValueError:
        return Status.INVALID_COMMAND, buffer, f"unknown command id {command:#x}"
    if cmd is Command.ATTESTATION and not core.profile.supports_attestation:
        return Status.INVALID_COMMAND, buffer, "ATTESTATION needs firmware API 0.23 or later"
    try:
        _admit(core, cmd, buffer)
        written = HANDLERS[cmd](core, buffer, memory)
    except CommandError as failure:
        return (
            Status(failure.status),
            buffer if failure.buffer is None else failure.buffer,
            failure.detail,
        )
    except AddressError as exc:
        return Status.INVALID_ADDRESS, buffer, str(exc)
    _transition(core, cmd, written)
    return Status.SUCCESS, written, ""
