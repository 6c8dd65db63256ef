"""What the hypervisor needs from the SEV platform: KVM's SEV ioctls, as one async interface.

QEMU reaches the PSP through KVM (KVM_MEMORY_ENCRYPT_OP) and, for capabilities, through
/dev/sev. :class:`SevPlatform` is that surface; :mod:`sevlaunch.vmm.platform_port` implements
it on the emulated platform service. Physical addresses here are guest-physical: the emulated
memory controller uses them as the encryption tweak (silicon uses system-physical addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PlatformInfo:
    """PLATFORM_STATUS plus the host facts QEMU reads from CPUID."""

    api_major: int
    api_minor: int
    build_id: int
    es_initialised: bool
    cbitpos: int
    reduced_phys_bits: int
    #: The QEMU CPU model of the host's EPYC generation (what ``-cpu host`` shows), if known.
    host_cpu_model: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """``query-sev-capabilities``: PDH, PEK ‖ OCA ‖ CEK, GET_ID's first chip id, cbitpos."""

    pdh: bytes
    cert_chain: bytes
    cpu0_id: bytes
    cbitpos: int
    reduced_phys_bits: int


class SevPlatform(Protocol):
    async def info(self) -> PlatformInfo: ...

    async def capabilities(self) -> Capabilities: ...

    async def launch_start(self, policy: int, godh: bytes | None, session: bytes | None) -> int:
        """LAUNCH_START then ACTIVATE on a free ASID (KVM's sev_guest_init); returns the handle."""
        ...

    async def launch_update_data(self, handle: int, paddr: int, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` in place; returns the ciphertext the hypervisor keeps."""
        ...

    async def launch_update_vmsa(self, handle: int, paddr: int, vmsa: bytes) -> bytes: ...

    async def launch_measure(self, handle: int) -> bytes:
        """The 48-byte measurement blob."""
        ...

    async def launch_secret(
        self, handle: int, header: bytes, paddr: int, trans: bytes, guest_len: int
    ) -> bytes:
        """LAUNCH_SECRET; returns the ciphertext now at ``paddr`` (``guest_len`` bytes)."""
        ...

    async def launch_finish(self, handle: int) -> None: ...

    async def attestation(self, handle: int, mnonce: bytes) -> bytes: ...

    async def guest_read(self, handle: int, paddr: int, ciphertext: bytes) -> bytes:
        """The memory controller decrypting for the guest itself (not a firmware command)."""
        ...

    async def guest_write(self, handle: int, paddr: int, plaintext: bytes) -> bytes:
        """The memory controller encrypting a guest store; returns the ciphertext."""
        ...

    async def teardown(self, handle: int) -> None:
        """DEACTIVATE, DF_FLUSH and DECOMMISSION, as KVM does when the VM is destroyed."""
        ...
