"""Every emulated EPYC generation has the QEMU CPU model ``-cpu host`` means on it, one the
VMSA's CPU signature table knows."""

from __future__ import annotations

from sevlaunch.firmware.profiles import PROFILES
from sevlaunch.formats.generations import GENERATION_MODELS
from sevlaunch.formats.vmsa import qemu_cpu_signature


def test_every_profile_has_a_known_cpu_model() -> None:
    assert set(GENERATION_MODELS) == set(PROFILES)
    families = {name: qemu_cpu_signature(model).family for name, model in GENERATION_MODELS.items()}
    assert families == {"naples": 23, "rome": 23, "milan": 25, "genoa": 25, "turin": 26}
