"""The SNP platform and guest state machines as tables, read the same way as SEV's
(:mod:`sevlaunch.firmware.states`): a command runs only if the SNP platform's row allows it
(INVALID_PLATFORM_STATE) and, for one addressed to a guest context (its buffer starts with the
GCTX page address), only if that guest's row allows it (INVALID_GUEST_STATE; no context there
is INVALID_GUEST). States change only after success, as the transition tables say.

The SNP platform is UNINIT until SNP_INIT(_EX) and INIT after; the SEV platform's state is
separate (SNP_INIT additionally needs SEV to be UNINIT, checked by the handler).
"""

from __future__ import annotations

from collections.abc import Mapping

from sevlaunch.firmware.snp.guest import SnpGuestState
from sevlaunch.formats.snp.commands import SnpCommand as S
from sevlaunch.formats.states import PlatformState

#: Commands whose buffer starts with the GCTX address of an existing guest context.
SNP_GUEST_COMMANDS = frozenset(
    {
        S.SNP_DECOMMISSION,
        S.SNP_ACTIVATE,
        S.SNP_LAUNCH_START,
        S.SNP_LAUNCH_UPDATE,
        S.SNP_LAUNCH_FINISH,
        S.SNP_GUEST_REQUEST,
    }
)

SNP_PLATFORM_TABLE: Mapping[PlatformState, frozenset[S]] = {
    PlatformState.UNINIT: frozenset(
        {S.SNP_INIT, S.SNP_INIT_EX, S.SNP_PLATFORM_STATUS, S.SNP_COMMIT}
    ),
    PlatformState.INIT: frozenset(
        {
            S.SNP_SHUTDOWN,
            S.SNP_SHUTDOWN_EX,
            S.SNP_PLATFORM_STATUS,
            S.SNP_DF_FLUSH,
            S.SNP_CONFIG,
            S.SNP_COMMIT,
            S.SNP_VLEK_LOAD,
            S.SNP_GCTX_CREATE,
        }
        | SNP_GUEST_COMMANDS
    ),
}

SNP_GUEST_TABLE: Mapping[SnpGuestState, frozenset[S]] = {
    SnpGuestState.INIT: frozenset({S.SNP_LAUNCH_START, S.SNP_DECOMMISSION}),
    SnpGuestState.LAUNCH: frozenset(
        {S.SNP_ACTIVATE, S.SNP_LAUNCH_UPDATE, S.SNP_LAUNCH_FINISH, S.SNP_DECOMMISSION}
    ),
    SnpGuestState.RUNNING: frozenset({S.SNP_ACTIVATE, S.SNP_GUEST_REQUEST, S.SNP_DECOMMISSION}),
}

SNP_PLATFORM_TRANSITIONS: Mapping[tuple[PlatformState, S], PlatformState] = {
    (PlatformState.UNINIT, S.SNP_INIT): PlatformState.INIT,
    (PlatformState.UNINIT, S.SNP_INIT_EX): PlatformState.INIT,
    (PlatformState.INIT, S.SNP_SHUTDOWN): PlatformState.UNINIT,
    (PlatformState.INIT, S.SNP_SHUTDOWN_EX): PlatformState.UNINIT,
}

#: ``None`` as the target means the context is deleted.
SNP_GUEST_TRANSITIONS: Mapping[tuple[SnpGuestState, S], SnpGuestState | None] = {
    (SnpGuestState.INIT, S.SNP_LAUNCH_START): SnpGuestState.LAUNCH,
    (SnpGuestState.LAUNCH, S.SNP_LAUNCH_FINISH): SnpGuestState.RUNNING,
    **{(state, S.SNP_DECOMMISSION): None for state in SnpGuestState},
}

#: SNP commands the emulator implements; the other SNP IDs answer UNSUPPORTED.
IMPLEMENTED = SNP_PLATFORM_TABLE[PlatformState.UNINIT] | SNP_PLATFORM_TABLE[PlatformState.INIT]
