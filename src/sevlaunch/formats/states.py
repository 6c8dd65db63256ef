"""The SEV firmware's platform and guest state names and codes (firmware-API doc §9), as
PLATFORM_STATUS and GUEST_STATUS report them; the state machines are the firmware's."""

from __future__ import annotations

import enum


class PlatformState(enum.IntEnum):
    UNINIT = 0
    INIT = 1
    WORKING = 2


class GuestState(enum.IntEnum):
    UNINIT = 0
    LUPDATE = 1
    LSECRET = 2
    RUNNING = 3
    SUPDATE = 4
    RUPDATE = 5
    SENT = 6
