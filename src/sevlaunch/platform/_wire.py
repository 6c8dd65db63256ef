"""The platform protocol's field codecs: integers, byte strings, text and memory regions
(see :mod:`sevlaunch.platform.protocol` for the frame layout)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sevlaunch.errors import ProtocolError

MAX_REGIONS = 4096
MAX_MESSAGE = 4096
_U64_LIMIT = 1 << 64


@dataclass(frozen=True)
class Region:
    """Bytes of emulated physical memory at ``paddr``."""

    paddr: int
    data: bytes

    def __post_init__(self) -> None:
        if self.paddr < 0 or self.paddr + len(self.data) > _U64_LIMIT:
            raise ProtocolError(
                "region.paddr",
                f"region [{self.paddr:#x}, +{len(self.data):#x}) must lie within the 64-bit "
                "physical address space",
                value=self.paddr,
            )

    @property
    def end(self) -> int:
        return self.paddr + len(self.data)


class Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def uint(self, name: str, value: int, size: int) -> Writer:
        if not 0 <= value < (1 << (8 * size)):
            raise ProtocolError(name, f"value does not fit in {size} bytes", value=value)
        self.parts.append(value.to_bytes(size, "little"))
        return self

    def blob(self, name: str, data: bytes) -> Writer:
        self.uint(f"{name}.length", len(data), 4)
        self.parts.append(bytes(data))
        return self

    def text(self, name: str, value: str) -> Writer:
        """UTF-8 behind a u16 length, cut to MAX_MESSAGE bytes (whole characters)."""
        raw = value.encode()[:MAX_MESSAGE].decode("utf-8", "ignore").encode()
        self.uint(f"{name}.length", len(raw), 2)
        self.parts.append(raw)
        return self

    def regions(self, regions: tuple[Region, ...]) -> Writer:
        if len(regions) > MAX_REGIONS:
            raise ProtocolError(
                "regions.count", f"at most {MAX_REGIONS} regions", value=len(regions)
            )
        self.uint("regions.count", len(regions), 4)
        for r in regions:
            self.uint("region.paddr", r.paddr, 8).blob("region", r.data)
        return self

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class Cursor:
    def __init__(self, what: str, data: bytes) -> None:
        self.what = what
        self.data = memoryview(data)
        self.pos = 0

    def take(self, name: str, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise ProtocolError(
                f"{self.what}.{name}",
                f"needs {size} bytes at offset {self.pos} but the payload has "
                f"{len(self.data) - self.pos} left (truncated frame?)",
                value=len(self.data),
            )
        out = bytes(self.data[self.pos : end])
        self.pos = end
        return out

    def uint(self, name: str, size: int) -> int:
        return int.from_bytes(self.take(name, size), "little")

    def blob(self, name: str) -> bytes:
        return self.take(name, self.uint(f"{name}.length", 4))

    def text(self, name: str, size_bytes: int) -> str:
        raw = self.take(name, self.uint(f"{name}.length", size_bytes))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{self.what}.{name}", "not UTF-8") from exc

    def regions(self) -> tuple[Region, ...]:
        count = self.uint("regions.count", 4)
        if count > MAX_REGIONS:
            raise ProtocolError(
                f"{self.what}.regions.count", f"at most {MAX_REGIONS} regions", value=count
            )
        out = tuple(Region(self.uint("region.paddr", 8), self.blob("region")) for _ in range(count))
        check_disjoint(out)
        return out

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(
                f"{self.what}.trailing",
                f"{len(self.data) - self.pos} bytes after the last field",
                value=len(self.data) - self.pos,
            )


def check_disjoint(regions: tuple[Region, ...]) -> None:
    """Regions must not overlap, so that memory has one meaning per address."""
    ordered = sorted((r for r in regions if r.data), key=lambda r: r.paddr)
    for a, b in itertools.pairwise(ordered):
        if b.paddr < a.end:
            raise ProtocolError(
                "regions",
                f"regions at {a.paddr:#x} (+{len(a.data):#x}) and {b.paddr:#x} overlap",
                value=b.paddr,
            )
