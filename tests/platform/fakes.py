"""A small in-memory firmware for the service tests: fast, and able to tell on the service.

It implements just enough of the SEV API for the transport (PLATFORM_STATUS, INIT, SHUTDOWN,
PDH_GEN, GET_ID with the length query, PDH_CERT_EXPORT as plain bytes) and records how many
commands ran at once, so a test can prove the service serialises them. Command 0xEE raises an
unexpected exception, standing in for a firmware bug.
"""

from __future__ import annotations

import struct
import threading
import time

from sevlaunch.errors import AddressError
from sevlaunch.formats.status import Status
from sevlaunch.platform.memory import RegionMemory
from sevlaunch.platform.protocol import ProfileReply

CRASH = 0xEE
PLATFORM_STATUS, INIT, SHUTDOWN, PDH_CERT_EXPORT, PDH_GEN, GET_ID = (
    0x04,
    0x01,
    0x02,
    0x08,
    0x09,
    0x0C,
)
PROFILE = ProfileReply("fake", 1, 55, 21, 51, 1, 410, 99)


class FakeFirmware:
    def __init__(self, state: bytes | None = None, *, delay: float = 0.0) -> None:
        if state is None:
            state = b"chip" + bytes(60) + struct.pack("<I", 0)
        self.chip_id, self.pdh_generation = state[:64], struct.unpack("<I", state[64:68])[0]
        self.initialised = False
        self.delay = delay
        self.running = 0
        self.max_running = 0
        self.calls = 0
        self._count = threading.Lock()

    def persistent_state(self) -> bytes:
        return self.chip_id + struct.pack("<I", self.pdh_generation)

    def execute_verbose(
        self, command: int, buffer: bytes, memory: RegionMemory
    ) -> tuple[int, bytes, str]:
        status, out = self.execute(command, buffer, memory)
        return status, out, "" if status == Status.SUCCESS else f"fake says {status.name}"

    def execute(self, command: int, buffer: bytes, memory: RegionMemory) -> tuple[Status, bytes]:
        with self._count:
            self.running += 1
            self.calls += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self._execute(command, buffer, memory)
        finally:
            with self._count:
                self.running -= 1

    def _execute(self, command: int, buffer: bytes, memory: RegionMemory) -> tuple[Status, bytes]:
        if command == CRASH:
            raise RuntimeError("firmware bug")
        if command == PLATFORM_STATUS:
            return Status.SUCCESS, struct.pack(
                "<BBBBHxBI", 1, 55, int(self.initialised), 0, 0, 21, 0
            )
        if command == INIT:
            if self.initialised:
                return Status.INVALID_PLATFORM_STATE, buffer
            self.initialised = True
            return Status.SUCCESS, buffer
        if command == SHUTDOWN:
            self.initialised = False
            return Status.SUCCESS, buffer
        if command == PDH_GEN:
            if not self.initialised:
                return Status.INVALID_PLATFORM_STATE, buffer
            self.pdh_generation += 1
            return Status.SUCCESS, buffer
        if command == GET_ID:
            return self._get_id(buffer, memory)
        if command == PDH_CERT_EXPORT:
            paddr = struct.unpack_from("<Q", buffer)[0]
            memory.write(paddr, b"PDH%d" % self.pdh_generation)
            return Status.SUCCESS, buffer
        return Status.INVALID_COMMAND, buffer

    def _get_id(self, buffer: bytes, memory: RegionMemory) -> tuple[Status, bytes]:
        if len(buffer) != 12:
            return Status.INVALID_LENGTH, buffer
        paddr, length = struct.unpack("<QI", buffer)
        if length < 64:
            return Status.INVALID_LENGTH, struct.pack("<QI", paddr, 64)
        try:
            memory.write(paddr, self.chip_id)
        except AddressError:
            return Status.INVALID_ADDRESS, buffer
        return Status.SUCCESS, struct.pack("<QI", paddr, 64)

    def signed_cek(self) -> bytes:
        return b"signed-cek"

    def ca_chain(self) -> bytes:
        return b"ask-ark"

    def ark(self) -> bytes:
        return b"ark"

    def guest_read(self, handle: int, paddr: int, length: int, memory: RegionMemory) -> bytes:
        return bytes(b ^ 0xFF for b in memory.read(paddr, length))

    def guest_write(self, handle: int, paddr: int, data: bytes, memory: RegionMemory) -> None:
        memory.write(paddr, bytes(b ^ 0xFF for b in data))

    def snp_host(self, request: bytes, memory: RegionMemory) -> bytes:
        """Echoes the request, so the wire and the service's plumbing can be checked."""
        return b"snp:" + request


def fake_factory(profile: str, state: bytes | None) -> tuple[FakeFirmware, ProfileReply]:
    return FakeFirmware(state), ProfileReply(profile, 1, 55, 21, 51, 1, 410, 99)
