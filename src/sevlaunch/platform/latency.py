"""What a PSP command costs on real hardware, so a simulated busy host is honest.

Figures are the orders of magnitude seen on EPYC parts: LAUNCH_START about 4 ms (an ECDH and
key derivations on the PSP's slow core), LAUNCH_UPDATE_DATA 4-8 MiB/s (the PSP encrypts and
hashes through a DMA engine), everything else well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

LAUNCH_START = 0x30
LAUNCH_UPDATE_DATA = 0x31
_UPDATE_LEN_OFFSET = 0x10
MIB = 1024 * 1024


@dataclass(frozen=True)
class Latency:
    """Seconds a command keeps the PSP busy; :data:`NONE` costs nothing."""

    launch_start: float = 0.004
    update_bytes_per_second: float = 6 * MIB
    other: float = 0.0005

    def cost(self, command: int, buffer: bytes) -> float:
        if command == LAUNCH_START:
            return self.launch_start
        if command == LAUNCH_UPDATE_DATA and len(buffer) >= _UPDATE_LEN_OFFSET + 4:
            length = int.from_bytes(buffer[_UPDATE_LEN_OFFSET : _UPDATE_LEN_OFFSET + 4], "little")
            return self.other + length / self.update_bytes_per_second
        return self.other


NONE = Latency(launch_start=0.0, update_bytes_per_second=float("inf"), other=0.0)
REAL = Latency()
MODELS = {"none": NONE, "real": REAL}
