"""The physical memory a PSP call may touch: exactly the regions the caller sent.

The firmware reads its inputs from, and writes its outputs to, physical addresses named in the
command buffer. Over the socket the caller sends those bytes along; this memory lets the
firmware touch nothing else (so a hostile length cannot make the service allocate or read
without bound) and records what was written so only that travels back.
"""

from __future__ import annotations

from sevlaunch.errors import AddressError
from sevlaunch.platform.protocol import Region


def _merge(regions: tuple[Region, ...]) -> list[tuple[int, bytearray]]:
    """Sort and join adjacent regions (they are already known not to overlap)."""
    merged: list[tuple[int, bytearray]] = []
    for r in sorted(regions, key=lambda r: r.paddr):
        if merged and merged[-1][0] + len(merged[-1][1]) == r.paddr:
            merged[-1][1].extend(r.data)
        else:
            merged.append((r.paddr, bytearray(r.data)))
    return merged


class RegionMemory:
    """A :class:`sevlaunch.firmware.Memory` over the caller's regions that records writes."""

    def __init__(self, regions: tuple[Region, ...] = ()) -> None:
        self._chunks = _merge(regions)
        self._written: list[tuple[int, int]] = []

    def _locate(self, paddr: int, length: int, verb: str) -> tuple[bytearray, int]:
        for base, data in self._chunks:
            if base <= paddr and paddr + length <= base + len(data):
                return data, paddr - base
        raise AddressError(
            paddr,
            length,
            f"the firmware tried to {verb} memory the request did not supply; send that "
            "range as a region of the request",
        )

    def read(self, paddr: int, length: int) -> bytes:
        if length == 0:
            return b""
        data, off = self._locate(paddr, length, "read")
        return bytes(data[off : off + length])

    def write(self, paddr: int, data: bytes) -> None:
        if not data:
            return
        chunk, off = self._locate(paddr, len(data), "write")
        chunk[off : off + len(data)] = data
        self._written.append((paddr, paddr + len(data)))

    def written(self) -> tuple[Region, ...]:
        """The written ranges, joined where they touch, with their current contents."""
        spans: list[list[int]] = []
        for start, end in sorted(self._written):
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        return tuple(Region(start, self.read(start, end - start)) for start, end in spans)
