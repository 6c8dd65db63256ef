"""The 13 steps of an attested SEV launch (DESIGN.md's table), one wording for every party.

A step's number is what the wire and the host's timeline store; its name and party are what a
person reads, in the terminal and on both dashboards alike.
"""

from __future__ import annotations

import enum

from sevlaunch.errors import FormatError


class Step(enum.IntEnum):
    """One launch step: ``int(step)`` its number, :attr:`title` and :attr:`party` its words."""

    title: str
    party: str

    def __new__(cls, number: int, title: str, party: str) -> Step:
        step = int.__new__(cls, number)
        step._value_ = number
        step.title = title
        step.party = party
        return step

    LAUNCH_REQUESTED = (1, "launch requested", "guest owner → VM tool")
    NODE_SEV_INFO = (2, "node SEV info", "VM tool → host")
    PDH_EXPORTED = (3, "PDH and chain exported", "host → hypervisor → firmware")
    PLATFORM_VERIFIED = (4, "platform verified", "VM tool → guest owner")
    SESSION_MADE = (5, "session made", "guest owner")
    BLOBS_PASSED = (6, "launch blobs passed", "VM tool → host")
    SEV_GUEST_BUILT = (7, "sev-guest object built", "host")
    STARTED_PAUSED = (8, "hypervisor started paused (-S)", "host → hypervisor")
    LAUNCH_MEASURED = (9, "firmware launch measured", "hypervisor → firmware")
    MEASUREMENT_READ = (10, "measurement read", "hypervisor → host → VM tool")
    MEASUREMENT_CHECKED = (11, "measurement checked", "guest owner")
    SECRET_INJECTED = (12, "secret injected", "host → hypervisor → firmware")
    RESUMED_BOOTED = (13, "resumed, guest booted", "host → hypervisor → guest")

    @classmethod
    def of(cls, number: object) -> Step:
        """The step numbered ``number`` (an int from the wire), or FormatError."""
        if isinstance(number, bool) or not isinstance(number, int):
            raise FormatError("launch step", "step", "expected a step number", value=number)
        found = _BY_NUMBER.get(number)
        if found is None:
            raise FormatError("launch step", "step", "a launch has steps 1 to 13", value=number)
        return found

    def __str__(self) -> str:
        return f"step {int(self)} ({self.title})"


_BY_NUMBER = {int(step): step for step in Step}


class Outcome(enum.StrEnum):
    """How a recorded step ended, as the host's timeline and the VM tool report it."""

    OK = "ok"
    FAILED = "failed"
