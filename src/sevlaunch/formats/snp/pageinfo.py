"""PAGE_INFO (0x70 B), the structure SNP_LAUNCH_UPDATE hashes into the launch digest
(sev-snp.md §3.2–3.3): ``LD' = SHA-384(PAGE_INFO)`` with ``DIGEST_CUR = LD``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, check_len, le_bytes

STRUCTURE = "SNP PAGE_INFO"
PAGE_INFO_SIZE = 0x70
VMSA_GPA = 0xFFFF_FFFF_F000


class PageType(enum.IntEnum):
    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6

    @property
    def measures_contents(self) -> bool:
        """Only NORMAL and VMSA pages put a digest of their contents into PAGE_INFO."""
        return self in (PageType.NORMAL, PageType.VMSA)


@dataclass(frozen=True)
class PageInfo:
    """Bytes 0x63–0x67: IMI_PAGE, a reserved zero byte, then VMPL1, VMPL2, VMPL3 permissions,
    as coconut-svsm's igvmmeasure and the mushroom project lay them out (the latter measures
    non-zero VMPL1 permissions on real hardware). virtee/sev and sev-snp-measure write
    VMPL3, VMPL2, VMPL1, reserved instead; QEMU passes zeros, where both agree."""

    digest_cur: bytes
    contents: bytes
    page_type: PageType
    gpa: int
    imi_page: int = 0
    vmpl1_perms: int = 0
    vmpl2_perms: int = 0
    vmpl3_perms: int = 0

    def __post_init__(self) -> None:
        check_len(STRUCTURE, "digest_cur", self.digest_cur, 48)
        check_len(STRUCTURE, "contents", self.contents, 48)
        le_bytes(self.gpa, 8, structure=STRUCTURE, field="gpa")
        for name in ("imi_page", "vmpl1_perms", "vmpl2_perms", "vmpl3_perms"):
            le_bytes(getattr(self, name), 1, structure=STRUCTURE, field=name)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data)
        r.expect_size(PAGE_INFO_SIZE)
        if (length := r.u16("length", 0x60)) != PAGE_INFO_SIZE:
            raise r.fail("length", 0x60, f"expected {PAGE_INFO_SIZE:#x}", length)
        raw_type = r.u8("page_type", 0x62)
        try:
            page_type = PageType(raw_type)
        except ValueError as exc:
            raise r.fail("page_type", 0x62, "expected 1..6", raw_type) from exc
        r.zeros("reserved", 0x64, 1)
        return cls(
            digest_cur=r.raw("digest_cur", 0, 48),
            contents=r.raw("contents", 0x30, 48),
            page_type=page_type,
            imi_page=r.u8("imi_page", 0x63),
            vmpl1_perms=r.u8("vmpl1_perms", 0x65),
            vmpl2_perms=r.u8("vmpl2_perms", 0x66),
            vmpl3_perms=r.u8("vmpl3_perms", 0x67),
            gpa=r.u64("gpa", 0x68),
        )

    def to_bytes(self) -> bytes:
        return (
            self.digest_cur
            + self.contents
            + PAGE_INFO_SIZE.to_bytes(2, "little")
            + bytes(
                (
                    self.page_type,
                    self.imi_page,
                    0,
                    self.vmpl1_perms,
                    self.vmpl2_perms,
                    self.vmpl3_perms,
                )
            )
            + self.gpa.to_bytes(8, "little")
        )
