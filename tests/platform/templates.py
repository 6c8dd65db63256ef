"""One generated platform per test process: RSA-4096 key generation costs seconds, so every
test that needs a real platform starts from a copy of this one."""

from __future__ import annotations

import functools

from sevlaunch.firmware import PROFILES, Firmware
from sevlaunch.platform.state import StoredState


@functools.cache
def template_state() -> bytes:
    """The bytes of a state file for a fresh, UNINIT milan platform (its SNP PKI made)."""
    firmware = Firmware(PROFILES["milan"])
    firmware.snp.init()
    firmware.snp.shutdown()
    return StoredState("milan", firmware.persistent_state()).to_bytes()
