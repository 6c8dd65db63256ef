"""One factory-fresh platform per test session (RSA-4096 key generation is slow); every test
gets its own Firmware built from that persistent state."""

from __future__ import annotations

from typing import Protocol

import pytest

from sevlaunch.firmware import PROFILES, Firmware, Profile
from tests.firmware.helpers import seeded_rng

MILAN = PROFILES["milan"]


class MakeFw(Protocol):
    def __call__(self, profile: Profile = ..., seed: int = ...) -> Firmware: ...


@pytest.fixture(scope="session")
def factory_state() -> bytes:
    return Firmware(MILAN, rng=seeded_rng(99).randbytes).persistent_state()


@pytest.fixture
def make_fw(factory_state: bytes) -> MakeFw:
    def make(profile: Profile = MILAN, seed: int = 1) -> Firmware:
        return Firmware(profile, rng=seeded_rng(seed).randbytes, state=factory_state)

    return make


@pytest.fixture
def fw(make_fw: MakeFw) -> Firmware:
    """A milan platform in UNINIT."""
    return make_fw()


@pytest.fixture
def es_fw(fw: Firmware) -> Firmware:
    """A milan platform initialised with SEV-ES."""
    fw.init(es=True)
    return fw
