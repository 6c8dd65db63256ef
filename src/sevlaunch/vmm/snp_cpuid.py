"""The CPUID table QEMU hands an SNP guest (``snp_launch_update_cpuid``): KVM's CPUID entries
for the vCPU model, with the features QEMU strips for SNP (``sev_snp_mask_cpuid_features``)
cleared and XSAVE's base size in leaf 0xD as QEMU encodes it.

The emulated vCPU has no KVM to ask, so the entries are those of an AMD EPYC vCPU with the
model's signature: vendor AuthenticAMD, the signature in Fn1 EAX, common features, and
Fn8000_001F with the C-bit position and reduced physical bits. The page is not measured
(its PAGE_INFO contents are zero); the firmware only checks that it holds nothing it refuses.
"""

from __future__ import annotations

from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable
from sevlaunch.formats.vmsa import CpuSignature

_AUTHENTIC_AMD = (0x68747541, 0x444D4163, 0x69746E65)  # "Auth", "cAMD", "enti": EBX, ECX, EDX
_FN1_ECX = 0x7ED8320B  # SSE3..AVX, RDRAND, with TSC_DEADLINE (bit 24) set as KVM reports it
_FN1_EDX = 0x178BFBFF
_FN7_EBX = 0x219C91AB  # FSGSBASE, TSC_ADJUST (bit 1), BMI, AVX2, SMEP, ...
_FN7_EDX = 0xFC000010  # FSRM and the speculation controls KVM reports (bits 26-31)
_FN8_EBX = 0x0300D205  # CLZERO, IBPB, ..., VIRT_SSBD (bit 25)


def mask_features(entry: CpuidEntry) -> CpuidEntry:
    """QEMU's ``sev_snp_mask_cpuid_features``."""
    from dataclasses import replace

    if entry.eax_in == 1:
        return replace(entry, ecx=entry.ecx & ~(1 << 24))
    if entry.eax_in == 7 and entry.ecx_in == 0:
        return replace(entry, ebx=entry.ebx & ~(1 << 1), edx=entry.edx & ~(0x3F << 26))
    if entry.eax_in == 0x8000_0008:
        return replace(entry, ebx=entry.ebx & ~(1 << 25))
    return entry


def qemu_cpuid_table(cpu: CpuSignature, cbitpos: int, reduced_phys_bits: int) -> CpuidTable:
    ebx, ecx, edx = _AUTHENTIC_AMD
    entries = [
        CpuidEntry(0, eax=0x10, ebx=ebx, ecx=ecx, edx=edx),
        CpuidEntry(1, eax=cpu.to_int(), ebx=0x00000800, ecx=_FN1_ECX, edx=_FN1_EDX),
        CpuidEntry(7, 0, eax=0, ebx=_FN7_EBX, ecx=0x0040069C, edx=_FN7_EDX),
        CpuidEntry(0xD, 0, eax=0x7, ebx=0x240, ecx=0x340, xcr0_in=1),
        CpuidEntry(0xD, 1, eax=0xF, ebx=0x240, xcr0_in=1),
        CpuidEntry(0x8000_0000, eax=0x8000_0021, ebx=ebx, ecx=ecx, edx=edx),
        CpuidEntry(0x8000_0001, eax=cpu.to_int(), ecx=0x75C237FF, edx=0x2FD3FBFF),
        CpuidEntry(0x8000_0008, eax=0x3030, ebx=_FN8_EBX),
        CpuidEntry(0x8000_001F, eax=0x1, ebx=cbitpos & 0x3F | (reduced_phys_bits & 0x3F) << 6),
    ]
    return CpuidTable(tuple(mask_features(e) for e in entries))
