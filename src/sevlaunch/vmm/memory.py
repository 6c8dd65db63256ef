"""Guest physical memory as the hypervisor holds it: sparse 4 KiB pages.

For an SEV guest the pages the firmware encrypted hold ciphertext; the hypervisor never sees
the plaintext of guest-private memory, exactly as on real hardware.
"""

from __future__ import annotations

from sevlaunch.errors import VmmError

PAGE = 4096
FOUR_GIB = 1 << 32


class GuestMemory:
    """RAM from 0 to ``ram_size`` plus a firmware flash window ending at 4 GiB."""

    def __init__(self, ram_size: int, flash_size: int = 0) -> None:
        self.ram_size = ram_size
        self.flash_base = FOUR_GIB - flash_size
        self.flash_size = flash_size
        self._pages: dict[int, bytearray] = {}

    def _check(self, paddr: int, length: int) -> None:
        end = paddr + length
        in_ram = paddr >= 0 and end <= self.ram_size
        in_flash = self.flash_size and self.flash_base <= paddr and end <= FOUR_GIB
        if length < 0 or not (in_ram or in_flash):
            raise VmmError(
                f"guest physical range [{paddr:#x}, {end:#x}) is not backed by RAM or flash"
            )

    def read(self, paddr: int, length: int) -> bytes:
        self._check(paddr, length)
        out = bytearray()
        while length > 0:
            page, offset = divmod(paddr, PAGE)
            chunk = min(length, PAGE - offset)
            data = self._pages.get(page)
            out += data[offset : offset + chunk] if data is not None else bytes(chunk)
            paddr += chunk
            length -= chunk
        return bytes(out)

    def write(self, paddr: int, data: bytes) -> None:
        self._check(paddr, len(data))
        view = memoryview(data)
        while view:
            page, offset = divmod(paddr, PAGE)
            chunk = min(len(view), PAGE - offset)
            frame = self._pages.setdefault(page, bytearray(PAGE))
            frame[offset : offset + chunk] = view[:chunk]
            paddr += chunk
            view = view[chunk:]

    def contains(self, needle: bytes) -> bool:
        """Whether ``needle`` appears in the stored pages (tests use it to prove ciphertext-only
        RAM). A needle may straddle any number of adjacent pages; unwritten pages hold nothing."""
        keep = max(len(needle) - 1, 0)
        prev_index, tail = -2, b""
        for index in sorted(self._pages):
            window = (tail if index == prev_index + 1 else b"") + bytes(self._pages[index])
            if needle in window:
                return True
            prev_index, tail = index, window[max(len(window) - keep, 0) :] if keep else b""
        return False
