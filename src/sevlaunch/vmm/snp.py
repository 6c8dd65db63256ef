"""QEMU's SEV-SNP guest (target/i386/sev.c, ``sev-snp-guest``), driving KVM's SNP ops.

``uninit → launch-update`` at accelerator init (SNP_LAUNCH_START); the firmware image is only
*queued* as NORMAL pages when the flash is mapped (``sev_snp_launch_update_data``), and the
kernel-hashes table kept for later. On the first transition to running
(``sev_snp_launch_finish``) the OVMF SEV metadata sections are queued after it (SNP_SEC_MEM
as ZERO, SNP_SECRETS as SECRETS, CPUID as CPUID with the table filled in,
SNP_KERNEL_HASHES as a NORMAL page holding the table when kernel hashes are on, else ZERO,
anything else ZERO), every queued range goes to SNP_LAUNCH_UPDATE page by page, KVM measures
the VMSAs (boot vCPU first) and SNP_LAUNCH_FINISH takes the ID block, ID auth and host data.
There is no measurement for the host to read: the guest asks the firmware for a report.
Error texts are QEMU's; a failure there makes QEMU exit(1), and so does the VMM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sevlaunch.errors import FirmwareError, SnpLaunchError, VmmError
from sevlaunch.formats.hashes import PADDED_SIZE
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.formats.snp.cpuid import CpuidTable
from sevlaunch.formats.snp.metadata import SectionType, SevMetadata
from sevlaunch.formats.status import qemu_error_text
from sevlaunch.vmm.cmdline.config import SevSnpGuestConfig
from sevlaunch.vmm.memory import GuestMemory
from sevlaunch.vmm.sev import SevState
from sevlaunch.vmm.snp_port import FinishConfig, SnpPlatform, SnpPlatformInfo

PAGE = 4096
NORMAL, VMSA, ZERO, UNMEASURED, SECRETS, CPUID = range(1, 7)
EIO = -5  # what KVM returns for a firmware error
_SECTION_TYPES = {SectionType.SNP_SEC_MEM: ZERO, SectionType.SNP_SECRETS: SECRETS}
PAGE_TYPE_NAMES = {
    NORMAL: "Normal",
    ZERO: "Zero",
    UNMEASURED: "Unmeasured",
    SECRETS: "Secrets",
    CPUID: "Cpuid",
}


@dataclass(frozen=True)
class LaunchUpdate:
    gpa: int
    length: int
    page_type: int


def _fw(exc: FirmwareError) -> str:
    return f"ret={EIO} fw_error={exc.status} '{qemu_error_text(exc.status)}'"


class SnpGuest:
    """One guest's SNP launch, from SNP_LAUNCH_START to SNP_LAUNCH_FINISH."""

    def __init__(self, platform: SnpPlatform, config: SevSnpGuestConfig) -> None:
        self.platform = platform
        self.config = config
        self.state = SevState.UNINIT
        self.handle = 0
        self.info: SnpPlatformInfo | None = None
        self.queue: list[LaunchUpdate] = []
        self.kernel_hashes: tuple[int, bytes] | None = None  # offset in the page, table

    async def kvm_init(self) -> None:
        """``sev_common_kvm_init`` and ``sev_snp_launch_start``."""
        cfg = self.config
        info = await self.platform.snp_info()
        if cfg.cbitpos != info.cbitpos:
            raise VmmError(
                f"sev_common_kvm_init: cbitpos check failed, host '{info.cbitpos}' "
                f"requested '{cfg.cbitpos}'"
            )
        if not 1 <= cfg.reduced_phys_bits <= 63:
            raise VmmError(
                "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range "
                f"of 1 to 63, requested '{cfg.reduced_phys_bits}'"
            )
        self.info = info
        try:
            self.handle = await self.platform.snp_launch_start(
                cfg.policy, cfg.guest_visible_workarounds
            )
        except FirmwareError as exc:
            raise VmmError(
                f"sev_snp_launch_start: SNP_LAUNCH_START {_fw(exc)}; "
                "sev_common_kvm_init: failed to create encryption context"
            ) from exc
        self.state = SevState.LAUNCH_UPDATE

    def encrypt_flash(self, gpa: int, length: int) -> None:
        """``sev_encrypt_flash``: queued, encrypted at launch finish."""
        if self.state is SevState.LAUNCH_UPDATE:
            self.queue.append(LaunchUpdate(gpa, length, NORMAL))

    def add_kernel_hashes(self, firmware: bytes, table: bytes) -> None:
        """``sev_snp_build_kernel_loader_hashes``: the table, placed at launch finish."""
        try:
            area = OvmfFooterTable.from_image(firmware).hashes_area
        except ValueError:
            area = None
        if area is None:
            raise VmmError("SEV: kernel specified but guest firmware has no hashes table GUID")
        if not area.base or area.size < PADDED_SIZE:
            raise VmmError(
                "SEV: guest firmware hashes table area is invalid "
                f"(base={area.base:#x} size={area.size:#x})"
            )
        self.kernel_hashes = (area.base & (PAGE - 1), table)

    # -- at the first transition to running ---------------------------------------------

    def _populate_metadata(self, memory: GuestMemory, firmware: bytes, cpuid: CpuidTable) -> None:
        """``snp_populate_metadata_pages``."""
        try:
            metadata = SevMetadata.from_image(firmware)
        except ValueError:
            metadata = None
        if metadata is None:
            raise SnpLaunchError("sev_snp_launch_finish: Failed to locate SEV metadata header")
        for section in metadata.sections:
            kind = section.kind
            page_type = _SECTION_TYPES.get(kind, ZERO) if kind is not None else ZERO
            if kind is SectionType.CPUID:
                memory.write(section.gpa, cpuid.to_page().ljust(section.size, b"\0"))
                page_type = CPUID
            elif kind is SectionType.SNP_KERNEL_HASHES and self.kernel_hashes is not None:
                offset, table = self.kernel_hashes  # set only with kernel-hashes=on
                page = bytes(offset) + table
                memory.write(section.gpa, page.ljust(section.size, b"\0"))
                page_type = NORMAL
            self.queue.append(LaunchUpdate(section.gpa, section.size, page_type))

    async def _update(self, memory: GuestMemory, item: LaunchUpdate) -> None:
        """``sev_snp_launch_update``: one range (KVM takes it 4 KiB per firmware call)."""
        data = memory.read(item.gpa, item.length)
        result = await self.platform.snp_launch_update(self.handle, item.gpa, item.page_type, data)
        memory.write(item.gpa, result.data)
        if result.status:
            lines = [
                f"SNP_LAUNCH_UPDATE ret={EIO} fw_error={result.status} "
                f"'{qemu_error_text(result.status)}'"
            ]
            if item.page_type == CPUID:
                lines += _cpuid_mismatches(data[:PAGE], result.data[:PAGE])
                lines.append("SEV-SNP: failed update CPUID page")
            raise SnpLaunchError("\n".join(lines))

    async def vm_running(
        self, memory: GuestMemory, firmware: bytes, vmsas: Sequence[bytes], cpuid: CpuidTable
    ) -> None:
        """``sev_vm_state_change`` → ``sev_snp_launch_finish``."""
        if self.state is SevState.RUNNING:
            return
        self._populate_metadata(memory, firmware, cpuid)
        for item in self.queue:
            await self._update(memory, item)
        for index, vmsa in enumerate(vmsas):
            result = await self.platform.snp_launch_vmsa(self.handle, index, vmsa)
            if result.status:
                raise SnpLaunchError(
                    f"SNP_LAUNCH_FINISH ret={EIO} fw_error={result.status} "
                    f"'{qemu_error_text(result.status)}'"
                )
        cfg = self.config
        finish = FinishConfig(
            cfg.id_block, cfg.id_auth, cfg.author_key_enabled, cfg.vcek_disabled, cfg.host_data
        )
        try:
            await self.platform.snp_launch_finish(self.handle, finish)
        except FirmwareError as exc:
            detail = f": {exc.detail}" if exc.detail else ""
            raise SnpLaunchError(f"SNP_LAUNCH_FINISH {_fw(exc)}{detail}") from exc
        self.state = SevState.RUNNING

    def query(self) -> dict[str, object]:
        """``query-sev`` for an SNP guest (SevInfo, union member ``sev-snp``)."""
        info = self.info
        return {
            "enabled": True,
            "api-major": info.api_major if info else 0,
            "api-minor": info.api_minor if info else 0,
            "build-id": info.build_id if info else 0,
            "state": self.state.value,
            "sev-type": "sev-snp",
            "snp-policy": self.config.policy,
        }


def _cpuid_mismatches(before: bytes, after: bytes) -> list[str]:
    """``sev_snp_cpuid_report_mismatches``."""
    try:
        old, new = CpuidTable.from_bytes(before), CpuidTable.from_bytes(after)
    except ValueError:
        return []
    if len(old.entries) != len(new.entries):
        return [
            "SEV-SNP: CPUID validation failed due to count mismatch, "
            f"provided: {len(old.entries)}, expected: {len(new.entries)}"
        ]
    out = []
    for was, now in zip(old.entries, new.entries, strict=True):
        if was != now:
            out.append(
                f"SEV-SNP: CPUID validation failed for function {was.eax_in:#x}, index: "
                f"{was.ecx_in:#x}, provided: eax:{was.eax:#010x}, ebx: {was.ebx:#010x}, "
                f"ecx: {was.ecx:#010x}, edx: {was.edx:#010x}, expected: eax:{now.eax:#010x}, "
                f"ebx: {now.ebx:#010x}, ecx: {now.ecx:#010x}, edx: {now.edx:#010x}"
            )
    return out
