"""What a PSP command costs in the simulated busy host: LAUNCH_START its ECDH, LAUNCH_UPDATE_DATA
its length at the DMA engine's rate, the rest a constant; the ``none`` model nothing."""

from __future__ import annotations

import pytest

from sevlaunch.platform.latency import (
    LAUNCH_START,
    LAUNCH_UPDATE_DATA,
    MIB,
    MODELS,
    NONE,
    REAL,
    Latency,
)


def _update(length: int) -> bytes:
    """A LAUNCH_UPDATE_DATA buffer: handle, reserved, address, then the length at 0x10."""
    return bytes(0x10) + length.to_bytes(4, "little") + bytes(4)


def test_launch_start_costs_its_key_agreement() -> None:
    assert REAL.cost(LAUNCH_START, b"") == REAL.launch_start == pytest.approx(0.004)


def test_update_data_costs_its_length() -> None:
    one, four = (
        REAL.cost(LAUNCH_UPDATE_DATA, _update(MIB)),
        REAL.cost(LAUNCH_UPDATE_DATA, _update(4 * MIB)),
    )
    assert one == pytest.approx(REAL.other + MIB / REAL.update_bytes_per_second)
    assert four - REAL.other == pytest.approx(4 * (one - REAL.other))


def test_a_short_buffer_and_other_commands_cost_the_constant() -> None:
    assert REAL.cost(LAUNCH_UPDATE_DATA, bytes(0x13)) == REAL.other
    assert REAL.cost(0x01, _update(MIB)) == REAL.other
    assert Latency(other=0.25).cost(0x02, b"") == 0.25


def test_none_costs_nothing_and_the_models_are_named() -> None:
    assert {NONE.cost(c, _update(64 * MIB)) for c in (LAUNCH_START, LAUNCH_UPDATE_DATA, 0)} == {0.0}
    assert MODELS == {"none": NONE, "real": REAL}
