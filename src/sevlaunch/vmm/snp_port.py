"""What the hypervisor needs from the platform for an SEV-SNP guest: KVM's SNP ioctls
(``KVM_SEV_SNP_LAUNCH_START/UPDATE/FINISH``, the guest-request exit) as one async interface.

Addresses are guest-physical; the platform side (KVM in reality) backs each GPA with a system
physical page it assigns in the RMP. :mod:`sevlaunch.vmm.snp_platform_port` implements it on the
emulated platform service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SnpPlatformInfo:
    """SNP_PLATFORM_STATUS plus what QEMU reads from the host CPU."""

    api_major: int
    api_minor: int
    build_id: int
    cbitpos: int
    reduced_phys_bits: int
    host_cpu_model: str | None = None


@dataclass(frozen=True)
class PageResult:
    """A range's SNP_LAUNCH_UPDATE: ``status`` 0 and the ciphertext of every page, or the
    firmware's status for the page at ``failed_gpa`` and the range as the firmware left it
    (for CPUID: the values it would accept)."""

    status: int
    data: bytes
    detail: str = ""
    failed_gpa: int | None = None


@dataclass(frozen=True)
class FinishConfig:
    """KVM_SEV_SNP_LAUNCH_FINISH's inputs."""

    id_block: bytes | None = None
    id_auth: bytes | None = None
    author_key: bool = False
    vcek_disabled: bool = False
    host_data: bytes = bytes(32)


class SnpPlatform(Protocol):
    async def snp_info(self) -> SnpPlatformInfo:
        """SNP brought up if it is not (the host kernel's SNP_INIT), then its status."""
        ...

    async def snp_launch_start(self, policy: int, gosvw: bytes) -> int:
        """KVM_SEV_SNP_LAUNCH_START (and the ASID binding); returns the context's handle."""
        ...

    async def snp_launch_update(
        self, handle: int, gpa: int, page_type: int, page: bytes
    ) -> PageResult:
        """One 4 KiB page at ``gpa`` made private and measured."""
        ...

    async def snp_launch_vmsa(self, handle: int, index: int, vmsa: bytes) -> PageResult:
        """vCPU ``index``'s VMSA, measured at INITIAL_VMSA_GPA as KVM does at LAUNCH_FINISH."""
        ...

    async def snp_launch_finish(self, handle: int, config: FinishConfig) -> None: ...

    async def snp_guest_request(self, handle: int, request: bytes) -> bytes:
        """The guest's SNP_GUEST_REQUEST exit: request page in, response page out."""
        ...

    async def snp_guest_read(self, handle: int, gpa: int, ciphertext: bytes) -> bytes:
        """The memory controller decrypting the guest's own read of private memory."""
        ...

    async def snp_teardown(self, handle: int) -> None:
        """SNP_DECOMMISSION, as KVM does when the VM is destroyed."""
        ...
