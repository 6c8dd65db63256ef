"""LAUNCH_START's 128-byte session blob and the 48-byte LAUNCH_MEASURE blob."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, check_len

SESSION_STRUCTURE = "session blob"
SESSION_SIZE = 0x80
MEASUREMENT_STRUCTURE = "launch measurement"
MEASUREMENT_SIZE = 0x30


@dataclass(frozen=True)
class Session:
    """NONCE ‖ WRAP_TK ‖ WRAP_IV ‖ WRAP_MAC ‖ POLICY_MAC (firmware-API doc §4)."""

    nonce: bytes
    wrap_tk: bytes
    wrap_iv: bytes
    wrap_mac: bytes
    policy_mac: bytes

    _FIELDS = (
        ("nonce", 0x00, 16),
        ("wrap_tk", 0x10, 32),
        ("wrap_iv", 0x30, 16),
        ("wrap_mac", 0x40, 32),
        ("policy_mac", 0x60, 32),
    )

    def __post_init__(self) -> None:
        for name, _, size in self._FIELDS:
            check_len(SESSION_STRUCTURE, name, getattr(self, name), size)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(SESSION_STRUCTURE, data)
        r.expect_size(SESSION_SIZE)
        return cls(*(r.raw(name, off, size) for name, off, size in cls._FIELDS))

    def to_bytes(self) -> bytes:
        return self.nonce + self.wrap_tk + self.wrap_iv + self.wrap_mac + self.policy_mac


@dataclass(frozen=True)
class Measurement:
    """LAUNCH_MEASURE's output: the 32-byte HMAC then the firmware's 16-byte MNONCE."""

    measure: bytes
    mnonce: bytes

    def __post_init__(self) -> None:
        check_len(MEASUREMENT_STRUCTURE, "measure", self.measure, 32)
        check_len(MEASUREMENT_STRUCTURE, "mnonce", self.mnonce, 16)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(MEASUREMENT_STRUCTURE, data)
        r.expect_size(MEASUREMENT_SIZE)
        return cls(r.raw("measure", 0, 32), r.raw("mnonce", 32, 16))

    def to_bytes(self) -> bytes:
        return self.measure + self.mnonce
