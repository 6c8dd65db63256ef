"""System physical memory as the PSP sees it: what its DMA engine reads and writes.

Here in ``formats`` (pure, no firmware) because both ends use it: the firmware emulator reads
and writes it, and the platform client and the VMM hand it over without loading the firmware.

The firmware never owns memory; every command that moves data names physical addresses in a
:class:`Memory` the caller passes in (the VMM's guest RAM, the platform service's bounce
buffers). A memory that cannot serve a range raises :class:`~sevlaunch.errors.AddressError`,
which the firmware turns into INVALID_ADDRESS.
"""

from __future__ import annotations

from typing import Protocol

from sevlaunch.errors import AddressError

PAGE_SIZE = 1 << 16
ADDRESS_LIMIT = 1 << 64


class Memory(Protocol):
    """Byte-addressed physical memory."""

    def read(self, paddr: int, length: int) -> bytes:
        """``length`` bytes from ``paddr``; raises AddressError outside the memory."""
        ...

    def write(self, paddr: int, data: bytes) -> None:
        """Store ``data`` at ``paddr``; raises AddressError outside the memory."""
        ...


def check_range(paddr: int, length: int, limit: int = ADDRESS_LIMIT) -> None:
    """Raise AddressError unless ``[paddr, paddr + length)`` lies within ``[0, limit)``."""
    if paddr < 0 or length < 0 or paddr + length > limit:
        raise AddressError(paddr, length, f"outside the physical address space [0, {limit:#x})")


class SparseMemory:
    """A 64-bit physical address space stored as a dict of pages (64 KiB by default).

    Bytes never written read as zero, so a multi-GiB guest costs only the pages it touches.
    Large pages keep bulk copies (LAUNCH_UPDATE_DATA of a firmware image) to a few slices.
    """

    def __init__(self, page_size: int = PAGE_SIZE) -> None:
        self._pages: dict[int, bytearray] = {}
        self.page_size = page_size

    def read(self, paddr: int, length: int) -> bytes:
        check_range(paddr, length)
        page_size = self.page_size
        index, offset = divmod(paddr, page_size)
        if offset + length <= page_size:  # the common case: one page
            page = self._pages.get(index)
            return bytes(length) if page is None else bytes(page[offset : offset + length])
        parts: list[bytes] = []
        end = paddr + length
        while paddr < end:
            index, offset = divmod(paddr, page_size)
            take = min(page_size - offset, end - paddr)
            page = self._pages.get(index)
            parts.append(bytes(take) if page is None else bytes(page[offset : offset + take]))
            paddr += take
        return b"".join(parts)

    def write(self, paddr: int, data: bytes) -> None:
        check_range(paddr, len(data))
        page_size = self.page_size
        view = memoryview(data)
        done = 0
        while done < len(data):
            index, offset = divmod(paddr + done, page_size)
            take = min(page_size - offset, len(data) - done)
            page = self._pages.get(index)
            if page is None:
                if take == page_size:
                    self._pages[index] = bytearray(view[done : done + take])
                    done += take
                    continue
                page = self._pages[index] = bytearray(page_size)
            page[offset : offset + take] = view[done : done + take]
            done += take

    @property
    def pages_in_use(self) -> int:
        return len(self._pages)


class Overlay:
    """``base`` memory with a private scratch window at ``[window, window + size)``.

    The firmware's typed conveniences put their command inputs and outputs (certificates,
    session blobs, measurement buffers) in the window so that a caller passes only the memory
    the guest lives in.
    """

    def __init__(self, base: Memory, window: int, size: int) -> None:
        self.base = base
        self.window = window
        self.size = size
        self.scratch = SparseMemory()

    def _inside(self, paddr: int, length: int) -> bool:
        if self.window <= paddr < self.window + self.size:
            check_range(paddr - self.window, length, self.size)
            return True
        return False

    def read(self, paddr: int, length: int) -> bytes:
        if self._inside(paddr, length):
            return self.scratch.read(paddr - self.window, length)
        return self.base.read(paddr, length)

    def write(self, paddr: int, data: bytes) -> None:
        if self._inside(paddr, len(data)):
            self.scratch.write(paddr - self.window, data)
        else:
            self.base.write(paddr, data)
