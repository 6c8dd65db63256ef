"""The reverse map on its own: assignment, the refusals RMPUPDATE answers, release."""

from __future__ import annotations

import pytest

from sevlaunch.errors import CommandRefusedError
from sevlaunch.firmware.snp.rmp import Rmp, RmpError


def test_assign_refuses_a_page_in_use_and_firmware_pages() -> None:
    rmp = Rmp()
    rmp.assign(0x1000, 1, 0x5000)
    with pytest.raises(RmpError) as info:
        rmp.assign(0x1000, 2, 0x5000)
    assert info.value.code == "FAIL_INUSE"
    rmp.take_for_firmware(0x9000, owner=0x9000)
    with pytest.raises(RmpError):
        rmp.assign(0x9000, 1, 0)
    with pytest.raises(RmpError) as info:
        rmp.make_shared(0x9000)
    assert info.value.code == "FAIL_PERMISSION"
    with pytest.raises(CommandRefusedError):
        rmp.take_for_firmware(0x1000, owner=1)


@pytest.mark.parametrize(("paddr", "asid", "gpa"), [(0x1008, 1, 0), (0x1000, 0, 0), (0x1000, 1, 8)])
def test_bad_input(paddr: int, asid: int, gpa: int) -> None:
    with pytest.raises(CommandRefusedError):
        Rmp().assign(paddr, asid, gpa)


def test_release_returns_the_owner_and_its_asid_pages() -> None:
    rmp = Rmp()
    rmp.take_for_firmware(0x9000, owner=0x9000)
    rmp.assign(0x1000, 1, 0)
    rmp.assign(0x2000, 2, 0)
    rmp.release_owner(0x9000, 1)
    assert rmp.get(0x9000) is None
    assert rmp.get(0x1000) is None
    assert rmp.get(0x2000) is not None
    rmp.make_shared(0x2000)
    assert rmp.get(0x2000) is None
    rmp.require_shared(0x2000, "response")
