"""What the machine hands an SNP launch at its finish: each vCPU's VMSA as KVM syncs it
(``sev_features`` SNPActive, as upstream QEMU with KVM >= 6.11 gives) and the CPUID table QEMU
fills from the vCPU model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.formats.snp.cpuid import CpuidTable
from sevlaunch.formats.vmsa import BSP_EIP, CpuSignature, qemu_cpu_option, reset_vmsa
from sevlaunch.vmm.snp import SnpGuest
from sevlaunch.vmm.snp_cpuid import qemu_cpuid_table

if TYPE_CHECKING:
    from sevlaunch.vmm.machine import MachineSpec

SNP_ACTIVE = 0x1


def _cpu(spec: MachineSpec, snp: SnpGuest) -> CpuSignature:
    host = snp.info.host_cpu_model if snp.info else None
    return qemu_cpu_option(spec.cpu_model, host)


def snp_vmsas(spec: MachineSpec, snp: SnpGuest, firmware: bytes) -> tuple[bytes, ...]:
    """The boot vCPU's VMSA, then one per AP at the firmware's SEV-ES reset address."""
    cpu = _cpu(spec, snp)
    bsp = reset_vmsa(BSP_EIP, cpu, legacy=False, sev_features=SNP_ACTIVE).to_bytes()
    if spec.vcpus == 1:
        return (bsp,)
    reset = OvmfFooterTable.from_image(firmware).sev_es_reset_address
    if not reset:
        from sevlaunch.errors import UsageError

        raise UsageError("SEV-ES reset address is zero; failed to locate and/or save reset vector")
    ap = reset_vmsa(reset, cpu, legacy=False, sev_features=SNP_ACTIVE).to_bytes()
    return (bsp, *([ap] * (spec.vcpus - 1)))


def snp_cpuid(spec: MachineSpec, snp: SnpGuest) -> CpuidTable:
    cfg = snp.config
    return qemu_cpuid_table(_cpu(spec, snp), cfg.cbitpos, cfg.reduced_phys_bits)
