"""System physical memory as the PSP sees it; defined in :mod:`sevlaunch.formats.memory`
(shared with the platform client and the VMM, which never load the firmware)."""

from __future__ import annotations

from sevlaunch.formats.memory import (
    ADDRESS_LIMIT,
    PAGE_SIZE,
    Memory,
    Overlay,
    SparseMemory,
    check_range,
)

__all__ = ["ADDRESS_LIMIT", "PAGE_SIZE", "Memory", "Overlay", "SparseMemory", "check_range"]
