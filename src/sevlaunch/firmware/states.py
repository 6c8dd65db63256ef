"""The platform and guest state machines as tables (firmware-API doc §9).

Rule 1: a command runs only if the platform's row allows it (else INVALID_PLATFORM_STATE)
and, for a command addressed to a guest, only if that guest's row allows it (else
INVALID_GUEST_STATE; a handle with no context is INVALID_GUEST).
Rule 2: states change only after a command succeeds, and only as the transition tables say.
The one platform rule not expressible as a pair is INIT <-> WORKING: the platform is WORKING
exactly while at least one guest context exists.

Rows follow sev-tool's "Chapter 5.1.2" and "Chapter 6.1.1" lists. Two additions the lists do
not spell out, marked [inferred] in the doc's sense: DBG_DECRYPT/DBG_ENCRYPT are allowed in
every state where the guest has memory under its key (KVM uses them on launching and running
guests), and ATTESTATION once the launch digest is final (LSECRET, RUNNING).
"""

from __future__ import annotations

from collections.abc import Mapping

from sevlaunch.formats.commands import Command as Cmd
from sevlaunch.formats.states import GuestState, PlatformState

__all__ = ["GuestState", "PlatformState"]


#: Commands whose buffer starts with the handle of an existing guest they act on.
GUEST_COMMANDS = frozenset(
    {
        Cmd.DECOMMISSION,
        Cmd.ACTIVATE,
        Cmd.DEACTIVATE,
        Cmd.GUEST_STATUS,
        Cmd.COPY,
        Cmd.ACTIVATE_EX,
        Cmd.LAUNCH_UPDATE_DATA,
        Cmd.LAUNCH_UPDATE_VMSA,
        Cmd.LAUNCH_MEASURE,
        Cmd.LAUNCH_SECRET,
        Cmd.LAUNCH_FINISH,
        Cmd.ATTESTATION,
        Cmd.SEND_START,
        Cmd.SEND_UPDATE_DATA,
        Cmd.SEND_UPDATE_VMSA,
        Cmd.SEND_FINISH,
        Cmd.SEND_CANCEL,
        Cmd.RECEIVE_UPDATE_DATA,
        Cmd.RECEIVE_UPDATE_VMSA,
        Cmd.RECEIVE_FINISH,
        Cmd.DBG_DECRYPT,
        Cmd.DBG_ENCRYPT,
        Cmd.SWAP_OUT,
        Cmd.SWAP_IN,
    }
)

#: Commands that create a guest context (in UNINIT) rather than address one.
GUEST_CREATE = frozenset({Cmd.LAUNCH_START, Cmd.RECEIVE_START})

PLATFORM_TABLE: Mapping[PlatformState, frozenset[Cmd]] = {
    PlatformState.UNINIT: frozenset(
        {
            Cmd.INIT,
            Cmd.INIT_EX,
            Cmd.PLATFORM_RESET,
            Cmd.PLATFORM_STATUS,
            Cmd.DOWNLOAD_FIRMWARE,
            Cmd.GET_ID,
        }
    ),
    PlatformState.INIT: frozenset(
        {
            Cmd.SHUTDOWN,
            Cmd.PLATFORM_STATUS,
            Cmd.PEK_GEN,
            Cmd.PEK_CSR,
            Cmd.PEK_CERT_IMPORT,
            Cmd.PDH_GEN,
            Cmd.PDH_CERT_EXPORT,
            Cmd.DF_FLUSH,
            Cmd.GET_ID,
        }
        | GUEST_CREATE
    ),
    PlatformState.WORKING: frozenset(
        {
            Cmd.SHUTDOWN,
            Cmd.PLATFORM_STATUS,
            Cmd.PDH_GEN,
            Cmd.PDH_CERT_EXPORT,
            Cmd.DF_FLUSH,
            Cmd.GET_ID,
        }
        | GUEST_CREATE
        | GUEST_COMMANDS
    ),
}

_LIFECYCLE = frozenset({Cmd.ACTIVATE, Cmd.DEACTIVATE, Cmd.DECOMMISSION, Cmd.GUEST_STATUS})
_DBG = frozenset({Cmd.DBG_DECRYPT, Cmd.DBG_ENCRYPT})

GUEST_TABLE: Mapping[GuestState, frozenset[Cmd]] = {
    GuestState.UNINIT: GUEST_CREATE,
    GuestState.LUPDATE: frozenset(
        {Cmd.LAUNCH_UPDATE_DATA, Cmd.LAUNCH_UPDATE_VMSA, Cmd.LAUNCH_MEASURE}
    )
    | _LIFECYCLE
    | _DBG,
    GuestState.LSECRET: frozenset({Cmd.LAUNCH_SECRET, Cmd.LAUNCH_FINISH, Cmd.ATTESTATION})
    | _LIFECYCLE
    | _DBG,
    GuestState.RUNNING: frozenset({Cmd.SEND_START, Cmd.ATTESTATION}) | _LIFECYCLE | _DBG,
    GuestState.SUPDATE: frozenset(
        {Cmd.SEND_UPDATE_DATA, Cmd.SEND_UPDATE_VMSA, Cmd.SEND_FINISH, Cmd.SEND_CANCEL}
    )
    | _LIFECYCLE
    | _DBG,
    GuestState.RUPDATE: frozenset(
        {Cmd.RECEIVE_UPDATE_DATA, Cmd.RECEIVE_UPDATE_VMSA, Cmd.RECEIVE_FINISH}
    )
    | _LIFECYCLE
    | _DBG,
    GuestState.SENT: frozenset({Cmd.DECOMMISSION}),
}

PLATFORM_TRANSITIONS: Mapping[tuple[PlatformState, Cmd], PlatformState] = {
    (PlatformState.UNINIT, Cmd.INIT): PlatformState.INIT,
    (PlatformState.UNINIT, Cmd.INIT_EX): PlatformState.INIT,
    (PlatformState.INIT, Cmd.SHUTDOWN): PlatformState.UNINIT,
    (PlatformState.WORKING, Cmd.SHUTDOWN): PlatformState.UNINIT,
}

#: ``None`` as the target means the context is deleted.
GUEST_TRANSITIONS: Mapping[tuple[GuestState, Cmd], GuestState | None] = {
    (GuestState.UNINIT, Cmd.LAUNCH_START): GuestState.LUPDATE,
    (GuestState.UNINIT, Cmd.RECEIVE_START): GuestState.RUPDATE,
    (GuestState.LUPDATE, Cmd.LAUNCH_MEASURE): GuestState.LSECRET,
    (GuestState.LSECRET, Cmd.LAUNCH_FINISH): GuestState.RUNNING,
    (GuestState.RUNNING, Cmd.SEND_START): GuestState.SUPDATE,
    (GuestState.SUPDATE, Cmd.SEND_FINISH): GuestState.SENT,
    (GuestState.SUPDATE, Cmd.SEND_CANCEL): GuestState.RUNNING,
    (GuestState.RUPDATE, Cmd.RECEIVE_FINISH): GuestState.RUNNING,
    **{(state, Cmd.DECOMMISSION): None for state in GuestState if state is not GuestState.UNINIT},
}


def platform_after(state: PlatformState, command: Cmd, guest_count: int) -> PlatformState:
    """The platform state after ``command`` succeeded in ``state`` (Rule 2)."""
    state = PLATFORM_TRANSITIONS.get((state, command), state)
    if state is PlatformState.UNINIT:
        return state
    return PlatformState.WORKING if guest_count else PlatformState.INIT
