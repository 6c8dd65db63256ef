"""The one step table: numbers 1-13 in order, DESIGN.md's parties, strict parsing."""

from __future__ import annotations

import pytest

from sevlaunch.errors import FormatError
from sevlaunch.protocol import Step


def test_thirteen_steps_numbered_in_order() -> None:
    assert [int(s) for s in Step] == list(range(1, 14))
    assert len({s.title for s in Step}) == 13


def test_wording_agrees_with_the_design() -> None:
    assert Step.PDH_EXPORTED.party == "host → hypervisor → firmware"
    assert Step.STARTED_PAUSED.title == "hypervisor started paused (-S)"
    assert str(Step.MEASUREMENT_CHECKED) == "step 11 (measurement checked)"
    assert all(len(s.party) <= 32 for s in Step)  # the host's timeline column


@pytest.mark.parametrize("bad", [0, 14, -1, True, "8", None, 8.0])
def test_of_refuses_what_is_not_a_step(bad: object) -> None:
    with pytest.raises(FormatError) as caught:
        Step.of(bad)
    assert caught.value.field == "step"


def test_of_accepts_each_number() -> None:
    assert [Step.of(n) for n in range(1, 14)] == list(Step)
