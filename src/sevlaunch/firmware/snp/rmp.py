"""The reverse map (RMP): who owns each 4 KiB page of system physical memory.

On silicon the hypervisor edits entries with the RMPUPDATE instruction (KVM's
``rmp_make_private``/``rmp_make_shared``) and the firmware edits them for the pages it
validates or takes for itself; here one table serves both, and only entries that are not
hypervisor-owned are stored. A page is

- hypervisor-owned (no entry): shared, e.g. the guest-message pages;
- assigned to a guest ASID at a GPA, not yet validated: what KVM makes before
  SNP_LAUNCH_UPDATE;
- validated: measured and encrypted by SNP_LAUNCH_UPDATE (VMSA pages flagged as such);
- a firmware page (a guest context), immutable until the context is decommissioned.

RMPUPDATE refuses to assign a page that is assigned already (FAIL_INUSE), so no page can be in
two guests, and SNP_LAUNCH_UPDATE refuses a page that is not assigned to the guest's ASID or
that it validated before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sevlaunch.errors import CommandRefusedError
from sevlaunch.formats.status import Status

PAGE = 4096


@dataclass
class RmpEntry:
    asid: int  # 0 for a firmware page
    gpa: int
    validated: bool = False
    vmsa: bool = False
    firmware: bool = False
    owner: int = 0  # the guest context (its GCTX page address) a page belongs to


class RmpError(CommandRefusedError):
    """RMPUPDATE's failure codes (FAIL_INPUT, FAIL_PERMISSION, FAIL_INUSE) as a refusal."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        super().__init__(Status.INVALID_PAGE_STATE, f"RMPUPDATE {code}: {detail}")


def page_of(paddr: int) -> int:
    if paddr % PAGE:
        raise CommandRefusedError(Status.INVALID_ADDRESS, f"{paddr:#x} is not page aligned")
    return paddr // PAGE


@dataclass
class Rmp:
    entries: dict[int, RmpEntry] = field(default_factory=dict)

    def get(self, paddr: int) -> RmpEntry | None:
        return self.entries.get(paddr // PAGE)

    def assign(self, paddr: int, asid: int, gpa: int) -> None:
        """``rmp_make_private``: the page goes to ``asid`` at ``gpa``, not validated."""
        pfn = page_of(paddr)
        if asid <= 0:
            raise RmpError("FAIL_INPUT", "a guest page needs an ASID")
        if gpa % PAGE:
            raise RmpError("FAIL_INPUT", f"GPA {gpa:#x} is not page aligned")
        current = self.entries.get(pfn)
        if current is not None:
            whose = "a firmware page" if current.firmware else f"ASID {current.asid}"
            raise RmpError("FAIL_INUSE", f"page {paddr:#x} is assigned to {whose} already")
        self.entries[pfn] = RmpEntry(asid, gpa)

    def make_shared(self, paddr: int) -> None:
        """``rmp_make_shared``: back to the hypervisor (the guest loses the page)."""
        pfn = page_of(paddr)
        current = self.entries.get(pfn)
        if current is not None and current.firmware:
            raise RmpError("FAIL_PERMISSION", f"page {paddr:#x} is a firmware page")
        self.entries.pop(pfn, None)

    def take_for_firmware(self, paddr: int, owner: int) -> None:
        pfn = page_of(paddr)
        if pfn in self.entries:
            raise CommandRefusedError(
                Status.INVALID_PAGE_STATE, f"page {paddr:#x} is not a hypervisor page"
            )
        self.entries[pfn] = RmpEntry(0, 0, firmware=True, owner=owner)

    def require_shared(self, paddr: int, what: str) -> None:
        if paddr // PAGE in self.entries:
            raise CommandRefusedError(
                Status.INVALID_PAGE_STATE, f"the {what} page {paddr:#x} is not hypervisor-owned"
            )

    def release_owner(self, owner: int, asid: int) -> None:
        """Decommission: the context page and the guest's pages return to the hypervisor
        (on silicon the hypervisor reclaims them; the emulator does it in one step)."""
        gone = [
            pfn
            for pfn, entry in self.entries.items()
            if entry.owner == owner or (asid and entry.asid == asid and not entry.firmware)
        ]
        for pfn in gone:
            del self.entries[pfn]

    def clear(self) -> None:
        self.entries.clear()
