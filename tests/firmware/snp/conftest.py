"""SNP-ready platforms: the session's factory state with its SNP PKI made once per
generation (an RSA-4096 ASVK), and a guest builder that plays KVM's part of a launch."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sevlaunch.firmware import PROFILES, Firmware
from tests.firmware.helpers import seeded_rng
from tests.firmware.snp.helpers import SnpGuestLaunch

MakeSnpFw = Callable[..., Firmware]


def _with_snp(state: bytes, profile: str) -> bytes:
    fw = Firmware(PROFILES[profile], rng=seeded_rng(5).randbytes, state=state)
    fw.snp.init()
    return fw.persistent_state()


@pytest.fixture(scope="session")
def snp_states(factory_state: bytes) -> dict[str, bytes]:
    return {}


@pytest.fixture
def make_snp_fw(factory_state: bytes, snp_states: dict[str, bytes]) -> MakeSnpFw:
    """A platform of ``profile`` with SNP initialised (SEV left UNINIT)."""

    def make(profile: str = "milan", seed: int = 1, **kwargs: object) -> Firmware:
        if profile not in snp_states:
            snp_states[profile] = _with_snp(factory_state, profile)
        fw = Firmware(
            PROFILES[profile],
            rng=seeded_rng(seed).randbytes,
            state=snp_states[profile],
            **kwargs,  # type: ignore[arg-type]
        )
        fw.snp.init()
        return fw

    return make


@pytest.fixture
def snp_fw(make_snp_fw: MakeSnpFw) -> Firmware:
    return make_snp_fw()


@pytest.fixture
def launched(snp_fw: Firmware) -> SnpGuestLaunch:
    """A running guest: one firmware page, SNP_SEC_MEM, SECRETS and CPUID pages."""
    guest = SnpGuestLaunch(snp_fw)
    guest.start()
    guest.standard_pages()
    guest.finish()
    return guest
