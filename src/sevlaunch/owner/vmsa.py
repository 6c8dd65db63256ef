"""The guest owner's view of SEV-ES VMSAs: which pages the launch digest must include.

An SEV-ES measurement covers one VMSA per vCPU, so the owner must know what QEMU/KVM put in
them: the vCPU count (``-smp``), the CPU model's signature (``-cpu``), the AP reset address
(from the firmware) and whether KVM used the legacy SEV-ES init (``legacy-vm-type``).
:class:`EsVmsas` holds those choices, or explicit pages captured elsewhere, and
:func:`es_pages` turns them into the pages for a given firmware. The page layout and reset
state live in :mod:`sevlaunch.formats.vmsa`, which the emulated hypervisor uses as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sevlaunch.errors import FormatError, UnsuitableFirmwareError, UsageError
from sevlaunch.formats.vmsa import (
    BSP_EIP,
    INIT2_FCW,
    INIT2_MXCSR,
    QEMU_CPU_MODELS,
    VMSA_SIZE,
    CpuSignature,
    Vmsa,
    qemu_cpu_signature,
    reset_vmsa,
    reset_vmsas,
)
from sevlaunch.owner.launch_digest import MeasuredFirmware

__all__ = [
    "BSP_EIP",
    "QEMU_CPU_MODELS",
    "VMSA_SIZE",
    "CpuSignature",
    "EsVmsas",
    "VcpuType",
    "Vmsa",
    "es_pages",
    "legacy_from_option",
    "reset_vmsa",
    "reset_vmsas",
    "vcpu_type",
]

LEGACY_VM_TYPES = ("on", "off", "auto")
ES_ADVICE = (
    "use an OVMF built with SEV-ES support (OvmfPkg/AmdSev/AmdSevX64.dsc, e.g. OVMF.amdsev.fd "
    "from Fedora's or RHEL's edk2-ovmf package), the image QEMU really loaded"
)


def legacy_from_option(value: str) -> bool:
    """Whether KVM used the legacy SEV-ES init for ``legacy-vm-type=value``.

    ``auto`` is resolved as QEMU 9.1 and later do (``sev_kvm_type``): the legacy
    KVM_X86_DEFAULT_VM type unless a sev-guest property needs KVM_SEV_INIT2, and no
    ``sev-guest`` property does; so ``auto`` means ``on`` (FPU state not in the VMSA).
    """
    if value not in LEGACY_VM_TYPES:
        raise UsageError(f"legacy-vm-type is on, off or auto, got {value!r}")
    return value != "off"


@dataclass(frozen=True)
class VcpuType:
    """A vCPU's CPUID signature and the words it was given in (for messages)."""

    signature: CpuSignature
    name: str

    def describe(self) -> str:
        if self.name in QEMU_CPU_MODELS or self.name.startswith("EPYC"):
            return f"{self.name} ({self.signature})"
        return str(self.signature)


def vcpu_type(
    *,
    name: str | None = None,
    sig: int | None = None,
    family: int | None = None,
    model: int | None = None,
    stepping: int | None = None,
) -> VcpuType:
    """The vCPU type from exactly one of: a QEMU model name, a signature, or F/M/S."""
    triple = (family, model, stepping)
    forms = [name is not None, sig is not None, any(v is not None for v in triple)]
    if sum(forms) != 1:
        raise UsageError(
            "give the vCPU type one way: a QEMU CPU model (--vcpu-type EPYC-Milan), a CPUID "
            "signature (--vcpu-sig 0xa00f11) or --vcpu-family/--vcpu-model/--vcpu-stepping"
        )
    if name is not None:
        return VcpuType(qemu_cpu_signature(name), name)
    if sig is not None:
        return VcpuType(CpuSignature.from_int(sig), f"signature {sig:#x}")
    if family is None or model is None or stepping is None:
        raise UsageError("--vcpu-family, --vcpu-model and --vcpu-stepping go together")
    signature = CpuSignature(family, model, stepping)
    return VcpuType(signature, str(signature))


@dataclass(frozen=True)
class EsVmsas:
    """How an SEV-ES guest's VMSAs come about: built from the vCPU type, or given as pages
    (``bsp`` for vCPU 0, ``ap`` for every other vCPU)."""

    vcpus: int
    cpu: VcpuType | None = None
    legacy: bool = True
    bsp: bytes | None = field(default=None, repr=False)
    ap: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.vcpus < 1:
            raise UsageError(f"an SEV-ES guest has at least one vCPU, got {self.vcpus}")
        if (self.cpu is None) == (self.bsp is None):
            raise UsageError("SEV-ES VMSAs are either built from a vCPU type or given as files")
        for name in ("bsp", "ap"):
            page = getattr(self, name)
            if page is not None:
                Vmsa.from_bytes(page)  # a whole 4096-byte page
        if self.bsp is not None and self.vcpus > 1 and self.ap is None:
            raise UsageError(
                f"{self.vcpus} vCPUs need the AP VMSA too (--vmsa-cpu1): every vCPU after "
                "the first starts at the firmware's SEV-ES reset address"
            )

    @property
    def explicit(self) -> bool:
        return self.bsp is not None

    def pages(self, ap_reset_address: int | None) -> tuple[bytes, ...]:
        """The pages in vCPU order (the reset address is used only when building them)."""
        if self.bsp is not None:
            return (self.bsp, *([self.ap or b""] * (self.vcpus - 1)))
        if self.cpu is None:
            raise UsageError("SEV-ES VMSAs need a vCPU type or the VMSA pages themselves")
        return reset_vmsas(self.vcpus, self.cpu.signature, ap_reset_address, legacy=self.legacy)

    def with_legacy(self, legacy: bool) -> EsVmsas:
        """The same guest under the other KVM init; given pages get the FPU state patched."""
        if self.bsp is None:
            return replace(self, legacy=legacy)
        return replace(
            self,
            legacy=legacy,
            bsp=_fpu_reset(self.bsp, legacy),
            ap=_fpu_reset(self.ap, legacy) if self.ap is not None else None,
        )


def _fpu_reset(page: bytes, legacy: bool) -> bytes:
    vmsa = Vmsa.from_bytes(page)
    return replace(
        vmsa,
        mxcsr=0 if legacy else INIT2_MXCSR,
        x87_fcw=0 if legacy else INIT2_FCW,
    ).to_bytes()


def es_pages(firmware: MeasuredFirmware, es: EsVmsas) -> tuple[bytes, ...]:
    """The VMSA pages for ``es`` under ``firmware``, whose footer gives the AP reset address.

    QEMU refuses to start an SEV-ES guest whose firmware has no SEV-ES reset block ("failed
    to locate and/or save reset vector"), so building pages for such a firmware is refused.
    """
    if es.explicit:
        return es.pages(None)
    try:
        address = firmware.footer().sev_es_reset_address
    except FormatError as exc:
        raise UnsuitableFirmwareError(
            "footer_table",
            f"firmware {firmware.name} cannot run an SEV-ES guest: QEMU reads the AP reset "
            f"address from its OVMF footer table ({exc}); {ES_ADVICE}",
            value=exc.value,
        ) from exc
    if not address:
        raise UnsuitableFirmwareError(
            "sev_es_reset_block",
            f"firmware {firmware.name} has no SEV-ES reset address (footer-table entry "
            "00f771de-1a7e-4fcb-890e-68c77e2fb44e missing or 0): QEMU refuses to start an "
            f"SEV-ES guest with it; {ES_ADVICE}",
            value=address,
        )
    return es.pages(address)
