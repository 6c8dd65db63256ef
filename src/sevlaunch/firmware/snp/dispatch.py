"""One SNP firmware command, checked in the same order as SEV's (:mod:`..dispatch`):

1. a generation without SNP firmware (Naples, Rome) does not know the SNP IDs:
   INVALID_COMMAND;
2. an SNP ID the emulator does not implement (paging, DBG, ACTIVATE_EX, DOWNLOAD_FIRMWARE_EX,
   FEATURE_INFO, GUEST_STATUS): UNSUPPORTED;
3. a buffer of the wrong size: INVALID_PARAM;
4. the SNP platform table: INVALID_PLATFORM_STATE; then, for a command addressed to a guest
   context, no context at that address: INVALID_GUEST, and the guest table:
   INVALID_GUEST_STATE;
5. the handler's own checks.
"""

from __future__ import annotations

from sevlaunch.errors import AddressError
from sevlaunch.firmware._core import CommandError, Core, Handler
from sevlaunch.firmware.memory import Memory
from sevlaunch.firmware.snp import launch_commands, messages, platform_commands
from sevlaunch.firmware.snp.launch_commands import guest_of
from sevlaunch.firmware.snp.states import (
    IMPLEMENTED,
    SNP_GUEST_COMMANDS,
    SNP_GUEST_TABLE,
    SNP_GUEST_TRANSITIONS,
    SNP_PLATFORM_TABLE,
    SNP_PLATFORM_TRANSITIONS,
)
from sevlaunch.formats.snp.commands import SnpCommand, snp_buffer_size
from sevlaunch.formats.status import Status

HANDLERS: dict[SnpCommand, Handler] = {
    **platform_commands.HANDLERS,
    **launch_commands.HANDLERS,
    **messages.HANDLERS,
}


def _admit(core: Core, command: SnpCommand, buffer: bytes) -> None:
    if command not in IMPLEMENTED:
        raise CommandError(Status.UNSUPPORTED, f"{command.name} is not emulated")
    size = snp_buffer_size(command)
    if len(buffer) != size:
        raise CommandError(
            Status.INVALID_PARAM, f"{command.name} takes a {size}-byte buffer, got {len(buffer)}"
        )
    platform = platform_commands.snp(core)
    if command not in SNP_PLATFORM_TABLE[platform.state]:
        raise CommandError(
            Status.INVALID_PLATFORM_STATE,
            f"{command.name} is not allowed while SNP is {platform.state.name}",
        )
    if command in SNP_GUEST_COMMANDS:
        guest = guest_of(core, int.from_bytes(buffer[:8], "little"))
        if command not in SNP_GUEST_TABLE[guest.state]:
            raise CommandError(
                Status.INVALID_GUEST_STATE,
                f"{command.name} is not allowed for a guest in {guest.state.name}",
            )


def _transition(core: Core, command: SnpCommand, buffer: bytes) -> None:
    platform = platform_commands.snp(core)
    if command in SNP_GUEST_COMMANDS:
        gctx = core.phys(int.from_bytes(buffer[:8], "little"))
        guest = platform.guests[gctx]
        target = SNP_GUEST_TRANSITIONS.get((guest.state, command), guest.state)
        if target is None:
            del platform.guests[gctx]
        else:
            guest.state = target
    platform.state = SNP_PLATFORM_TRANSITIONS.get((platform.state, command), platform.state)


def execute(core: Core, command: int, buffer: bytes, memory: Memory) -> tuple[Status, bytes, str]:
    if core.snp is None:
        return Status.INVALID_COMMAND, buffer, f"command {command:#x} needs SNP firmware"
    cmd = SnpCommand(command)
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
