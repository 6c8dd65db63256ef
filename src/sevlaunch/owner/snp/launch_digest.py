"""The SNP launch digest as QEMU + KVM produce it (sev-snp.md §3.3–3.5), the value a report's
MEASUREMENT must hold; sev-snp-measure's ``--mode snp`` computes the same.

GCTX.LD starts at 48 zero bytes and absorbs one PAGE_INFO per 4 KiB page, in order: the OVMF
image as NORMAL pages ending at 4 GiB, then OVMF's SEV metadata sections (kernel hashes as a
NORMAL page when direct boot is measured), then one VMSA per vCPU, the boot vCPU first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from sevlaunch.errors import UnsuitableFirmwareError, UsageError
from sevlaunch.formats.hashes import KernelHashes
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.formats.snp.metadata import MetadataSection, SectionType, SevMetadata
from sevlaunch.formats.snp.pageinfo import PAGE_INFO_SIZE, VMSA_GPA, PageType
from sevlaunch.formats.vmsa import BSP_EIP, CpuSignature, reset_vmsa

PAGE = 4096
LD_SIZE = 48
FOUR_GIB = 1 << 32
ZERO_CONTENTS = bytes(LD_SIZE)
SNP_ACTIVE = 0x1
DEFAULT_GUEST_FEATURES = SNP_ACTIVE  # upstream QEMU + KVM >= 6.11
_LENGTH = PAGE_INFO_SIZE.to_bytes(2, "little")

_SECTION_PAGES = {
    SectionType.SNP_SEC_MEM: PageType.ZERO,
    SectionType.SNP_SECRETS: PageType.SECRETS,
    SectionType.CPUID: PageType.CPUID,
}


def extend(ld: bytes, page_type: PageType, gpa: int, contents: bytes = ZERO_CONTENTS) -> bytes:
    """One SNP_LAUNCH_UPDATE: LD' = SHA-384(PAGE_INFO{LD, contents, type, gpa}).

    Equal to ``sha384(PageInfo(ld, contents, page_type, gpa).to_bytes())``, built inline
    because it runs once per page of the firmware.
    """
    return hashlib.sha384(
        ld + contents + _LENGTH + bytes((page_type, 0, 0, 0, 0, 0)) + gpa.to_bytes(8, "little")
    ).digest()


def extend_pages(ld: bytes, data: bytes, gpa: int) -> bytes:
    """NORMAL pages holding ``data`` (a multiple of 4 KiB) from ``gpa`` on."""
    for off in range(0, len(data), PAGE):
        page_hash = hashlib.sha384(data[off : off + PAGE]).digest()
        ld = extend(ld, PageType.NORMAL, gpa + off, page_hash)
    return ld


def ovmf_hash(ovmf: bytes) -> bytes:
    """LD after the firmware's pages (sev-snp-measure's ``--ovmf-hash`` seed)."""
    if not ovmf or len(ovmf) % PAGE:
        raise UsageError(f"an OVMF image is a whole number of 4 KiB pages, got {len(ovmf)} bytes")
    return extend_pages(bytes(LD_SIZE), ovmf, FOUR_GIB - len(ovmf))


@dataclass(frozen=True)
class SnpFirmware:
    """What the digest needs of an OVMF build: its footer and SEV metadata."""

    footer: OvmfFooterTable
    metadata: SevMetadata

    @classmethod
    def from_image(cls, ovmf: bytes) -> SnpFirmware:
        footer = OvmfFooterTable.from_image(ovmf)
        metadata = SevMetadata.from_image(ovmf, footer)
        if metadata is None:
            raise UnsuitableFirmwareError(
                "sev_snp_metadata",
                "this OVMF has no SEV metadata (footer entry dc886566-…), so it cannot launch "
                "an SNP guest: use an SNP-capable build such as OVMF.amdsev.fd",
                value=None,
            )
        return cls(footer, metadata)

    @property
    def has_kernel_hashes(self) -> bool:
        return self.metadata.find(SectionType.SNP_KERNEL_HASHES) is not None

    def kernel_hashes_page(self, hashes: KernelHashes, section: MetadataSection) -> bytes:
        area = self.footer.hashes_area
        offset = (area.base - section.gpa) if area is not None else 0
        if not 0 <= offset <= PAGE - len(hashes.to_bytes()):
            raise UnsuitableFirmwareError(
                "sev_hash_table",
                f"the kernel-hashes table at {area.base if area else 0:#x} lies outside the "
                f"SNP_KERNEL_HASHES page at {section.gpa:#x}",
                value=area,
            )
        table = hashes.to_bytes()
        return bytes(offset) + table + bytes(PAGE - offset - len(table))


def _pages(section: MetadataSection) -> Iterator[int]:
    return iter(range(section.gpa, section.gpa + section.size, PAGE))


def metadata_digest(ld: bytes, firmware: SnpFirmware, hashes: KernelHashes | None) -> bytes:
    """Extend ``ld`` with the metadata sections as QEMU queues them."""
    if hashes is not None and not firmware.has_kernel_hashes:
        raise UnsuitableFirmwareError(
            "sev_snp_metadata",
            "Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section: "
            "this OVMF cannot measure a direct kernel boot (use OVMF.amdsev.fd)",
            value=[s.section_type for s in firmware.metadata.sections],
        )
    for section in firmware.metadata.sections:
        if section.section_type == SectionType.SNP_KERNEL_HASHES and hashes is not None:
            ld = extend_pages(ld, firmware.kernel_hashes_page(hashes, section), section.gpa)
            continue
        page_type = _SECTION_PAGES.get(section.kind or SectionType.SVSM_CAA, PageType.ZERO)
        for gpa in _pages(section):
            ld = extend(ld, page_type, gpa)
    return ld


def vmsa_pages(
    vcpus: int, cpu: CpuSignature, guest_features: int, ap_reset_address: int | None
) -> tuple[bytes, ...]:
    """The VMSAs KVM measures at LAUNCH_FINISH: the BSP's, then one per AP."""
    if vcpus < 1:
        raise UsageError(f"an SNP guest has at least one vCPU, got {vcpus}")
    bsp = reset_vmsa(BSP_EIP, cpu, legacy=False, sev_features=guest_features).to_bytes()
    if vcpus == 1:
        return (bsp,)
    if not ap_reset_address:
        raise UnsuitableFirmwareError(
            "sev_es_reset_block",
            "more than one vCPU needs the firmware's SEV-ES reset address, and this OVMF's "
            "footer table has none",
            value=ap_reset_address,
        )
    ap = reset_vmsa(ap_reset_address, cpu, legacy=False, sev_features=guest_features).to_bytes()
    return (bsp, *([ap] * (vcpus - 1)))


def snp_launch_digest(
    ovmf: bytes,
    *,
    vcpus: int,
    cpu: CpuSignature,
    guest_features: int = DEFAULT_GUEST_FEATURES,
    hashes: KernelHashes | None = None,
    seed: bytes | None = None,
) -> bytes:
    """The 48-byte MEASUREMENT of a QEMU SNP guest.

    ``seed`` is a precomputed :func:`ovmf_hash` of the same image (its pages are then not
    hashed again); ``ovmf`` must still hold at least the image's last 4 KiB for the metadata.
    """
    if not guest_features & SNP_ACTIVE:
        raise UsageError(
            f"guest features {guest_features:#x} lack bit 0 (SNPActive), which KVM always sets"
        )
    firmware = SnpFirmware.from_image(ovmf)
    if seed is not None and len(seed) != LD_SIZE:
        raise UsageError(f"an OVMF hash is {LD_SIZE} bytes, got {len(seed)}")
    ld = seed if seed is not None else ovmf_hash(ovmf)
    ld = metadata_digest(ld, firmware, hashes)
    reset = firmware.footer.sev_es_reset_address
    for page in vmsa_pages(vcpus, cpu, guest_features, reset):
        ld = extend(ld, PageType.VMSA, VMSA_GPA, hashlib.sha384(page).digest())
    return ld
