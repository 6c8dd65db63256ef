"""The SEV state codes as the firmware API document numbers them (PSTATE and GSTATE)."""

from __future__ import annotations

import re

import pytest

from sevlaunch.formats.states import GuestState, PlatformState
from tests.conftest import SHARED

DOC = SHARED / "docs" / "sev-firmware-api.md"


def _table(machine: str) -> dict[str, int]:
    """``### <machine> state machine (XSTATE: NAME 0, NAME 1, ...)`` of the document."""
    if not DOC.exists():
        pytest.skip(f"{DOC} is absent: the shared documents live beside the checkout")
    heading = re.search(rf"### {machine} state machine \(\w+: ([^)]*)\)", DOC.read_text())
    assert heading is not None, f"no {machine} state machine heading in {DOC}"
    pairs = (item.split() for item in heading.group(1).split(","))
    return {name: int(code) for name, code in pairs}


@pytest.mark.parametrize(
    ("machine", "states"), [("Platform", PlatformState), ("Guest", GuestState)]
)
def test_every_code_is_the_documents(machine: str, states: type[PlatformState]) -> None:
    assert {s.name: s.value for s in states} == _table(machine)
