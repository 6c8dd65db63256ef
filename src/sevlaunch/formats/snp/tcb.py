"""TCB_VERSION (u64) and the EPYC generation that decides its layout (sev-snp.md §2.4, §4.3).

Milan and Genoa pack ``bl, tee, -, -, -, -, snp, ucode``; Turin and later pack
``fmc, bl, tee, snp, -, -, -, ucode``. The layout follows the chip's generation, never the
report version, so a :class:`TcbVersion` always carries its :class:`TcbLayout`; the reserved
bytes are kept so that every u64 round-trips exactly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError
from sevlaunch.formats._cached import cached
from sevlaunch.formats._codec import le_bytes

STRUCTURE = "TCB_VERSION"


class TcbLayout(enum.Enum):
    """Which byte holds which SVN."""

    MILAN = "milan"  # Milan and Genoa
    TURIN = "turin"  # Turin and later (adds the FMC SVN)


class Generation(enum.Enum):
    """An EPYC generation as AMD's key server names its products."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def layout(self) -> TcbLayout:
        return TcbLayout.TURIN if self is Generation.TURIN else TcbLayout.MILAN

    @property
    def hwid_size(self) -> int:
        """Bytes of CHIP_ID the VCEK's hwID holds (and the KDS URL names)."""
        return 8 if self is Generation.TURIN else 64

    @classmethod
    def parse(cls, text: str) -> Generation:
        for gen in cls:
            if gen.value.lower() == text.strip().lower():
                return gen
        known = ", ".join(g.value for g in cls)
        raise FormatError(
            "generation", "name", f"expected one of {known}, got {text!r}", value=text
        )

    @classmethod
    def from_cpuid(cls, family: int, model: int) -> Generation | None:
        """The generation of a v3+ report's CPUID_FAM_ID / CPUID_MOD_ID, or None if unknown.

        Genoa's 0xA0–0xAF (Bergamo, Siena) share the Genoa endpoint; virtee includes 0xAF.
        """
        if family == 0x19:
            if model <= 0x0F:
                return cls.MILAN
            if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
                return cls.GENOA
        if family == 0x1A and model <= 0x11:
            return cls.TURIN
        return None


# byte index of each component, per layout
_OFFSETS: dict[TcbLayout, dict[str, int]] = {
    TcbLayout.MILAN: {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    TcbLayout.TURIN: {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}
COMPONENTS = ("fmc", "bootloader", "tee", "snp", "microcode")
_MASKS = {lay: sum(0xFF << (8 * i) for i in offs.values()) for lay, offs in _OFFSETS.items()}


@dataclass(frozen=True, order=False)
class TcbVersion:
    """The SVNs of one TCB. ``fmc`` is None in the Milan/Genoa layout; ``reserved`` holds the
    u64 with every component byte cleared (zero on real chips, kept for exact round trips)."""

    layout: TcbLayout
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None
    reserved: int = 0

    def __post_init__(self) -> None:
        has_fmc = self.layout is TcbLayout.TURIN
        if (self.fmc is not None) != has_fmc:
            raise FormatError(
                STRUCTURE,
                "fmc",
                f"fmc is {'required' if has_fmc else 'absent'} in the {self.layout.value} layout",
                value=self.fmc,
            )
        for name in COMPONENTS:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 0xFF:
                raise FormatError(STRUCTURE, name, "an SVN is one byte", value=value)
        if self.reserved & _MASKS[self.layout] or not 0 <= self.reserved < 1 << 64:
            raise FormatError(STRUCTURE, "reserved", "overlaps a component", value=self.reserved)

    @classmethod
    def from_int(cls, value: int, layout: TcbLayout) -> Self:
        if not 0 <= value < 1 << 64:
            raise FormatError(STRUCTURE, "value", "a TCB_VERSION is a u64", value=value)
        # every field is valid by construction, so skip __post_init__'s checks (this runs
        # several times per report verification)
        made = object.__new__(cls)
        fields: dict[str, object] = {
            n: (value >> (8 * i)) & 0xFF for n, i in _OFFSETS[layout].items()
        }
        fields.setdefault("fmc", None)
        fields["layout"], fields["reserved"] = layout, value & ~_MASKS[layout]
        made.__dict__.update(fields)
        return made

    @classmethod
    def from_bytes(cls, data: bytes, layout: TcbLayout) -> Self:
        if len(data) != 8:
            raise FormatError(STRUCTURE, "length", f"expected 8 bytes, got {len(data)}")
        return cls.from_int(int.from_bytes(data, "little"), layout)

    def to_int(self) -> int:
        value = self.reserved
        for name, index in _OFFSETS[self.layout].items():
            value |= (getattr(self, name) or 0) << (8 * index)
        return value

    def to_bytes(self) -> bytes:
        return le_bytes(self.to_int(), 8, structure=STRUCTURE, field="value")

    def components(self) -> dict[str, int]:
        """The SVNs by name (``fmc`` only in the Turin layout); a fresh dict."""
        return dict(self._components)

    @cached
    def _components(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in COMPONENTS if getattr(self, n) is not None}

    def at_most(self, other: TcbVersion) -> bool:
        """Component-wise ``self <= other`` (TCBs are not totally ordered)."""
        theirs = other._components
        return all(v <= theirs.get(n, 0) for n, v in self._components.items())

    def lower_components(self, other: TcbVersion) -> list[str]:
        """The components in which ``self`` is below ``other``."""
        theirs = other._components
        return [n for n, v in self._components.items() if v < theirs.get(n, 0)]

    def same_components(self, other: TcbVersion) -> bool:
        return self._components == other._components

    def describe(self) -> str:
        parts = [
            f"{n}={v}" if n != "microcode" else f"ucode={v:#x}" for n, v in self._components.items()
        ]
        return " ".join(parts)
