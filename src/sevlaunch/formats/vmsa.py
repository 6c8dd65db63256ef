"""The SEV-ES VMSA page (``struct sev_es_save_area``) and the reset state QEMU/KVM put in it.

An SEV-ES guest's register state lives in one 4096-byte VMSA per vCPU; LAUNCH_UPDATE_VMSA
measures each page after the launch data, so the owner must rebuild them byte for byte
(firmware-API doc §6). :class:`Vmsa` models the named fields of the page at the offsets of
Linux ``arch/x86/include/asm/svm.h``; every other byte is kept in ``reserved`` so that
``to_bytes(from_bytes(page)) == page`` for any page.

:func:`reset_vmsas` builds the pages as QEMU resets a vCPU and KVM's ``sev_es_sync_vmsa``
copies it: the BSP starts at ``0xFFFFFFF0``, APs at the SEV-ES reset address of the OVMF
footer table, RDX holds the CPUID(1).EAX signature of the ``-cpu`` model, and only the
KVM_SEV_INIT2 VM types (``legacy-vm-type=off``) copy the FPU reset state (MXCSR 0x1F80,
FCW 0x37F) into the page. Pure: used by the owner tools and the emulated hypervisor alike.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError, UsageError
from sevlaunch.formats import generations
from sevlaunch.formats._codec import Reader, check_len, le_bytes

STRUCTURE = "SEV-ES VMSA"
VMSA_SIZE = 4096
SEGMENT_SIZE = 16
BSP_EIP = 0xFFFF_FFF0

SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr")

#: (field, offset, size) of every integer field modelled, in offset order (svm.h).
SCALARS: tuple[tuple[str, int, int], ...] = (
    ("vmpl0_ssp", 0xA0, 8),
    ("vmpl1_ssp", 0xA8, 8),
    ("vmpl2_ssp", 0xB0, 8),
    ("vmpl3_ssp", 0xB8, 8),
    ("u_cet", 0xC0, 8),
    ("vmpl", 0xCA, 1),
    ("cpl", 0xCB, 1),
    ("efer", 0xD0, 8),
    ("xss", 0x140, 8),
    ("cr4", 0x148, 8),
    ("cr3", 0x150, 8),
    ("cr0", 0x158, 8),
    ("dr7", 0x160, 8),
    ("dr6", 0x168, 8),
    ("rflags", 0x170, 8),
    ("rip", 0x178, 8),
    ("dr0", 0x180, 8),
    ("dr1", 0x188, 8),
    ("dr2", 0x190, 8),
    ("dr3", 0x198, 8),
    ("dr0_addr_mask", 0x1A0, 8),
    ("dr1_addr_mask", 0x1A8, 8),
    ("dr2_addr_mask", 0x1B0, 8),
    ("dr3_addr_mask", 0x1B8, 8),
    ("rsp", 0x1D8, 8),
    ("s_cet", 0x1E0, 8),
    ("ssp", 0x1E8, 8),
    ("isst_addr", 0x1F0, 8),
    ("rax", 0x1F8, 8),
    ("star", 0x200, 8),
    ("lstar", 0x208, 8),
    ("cstar", 0x210, 8),
    ("sfmask", 0x218, 8),
    ("kernel_gs_base", 0x220, 8),
    ("sysenter_cs", 0x228, 8),
    ("sysenter_esp", 0x230, 8),
    ("sysenter_eip", 0x238, 8),
    ("cr2", 0x240, 8),
    ("g_pat", 0x268, 8),
    ("dbgctl", 0x270, 8),
    ("br_from", 0x278, 8),
    ("br_to", 0x280, 8),
    ("last_excp_from", 0x288, 8),
    ("last_excp_to", 0x290, 8),
    ("pkru", 0x2E8, 4),
    ("rcx", 0x308, 8),
    ("rdx", 0x310, 8),
    ("rbx", 0x318, 8),
    ("rbp", 0x328, 8),
    ("rsi", 0x330, 8),
    ("rdi", 0x338, 8),
    ("r8", 0x340, 8),
    ("r9", 0x348, 8),
    ("r10", 0x350, 8),
    ("r11", 0x358, 8),
    ("r12", 0x360, 8),
    ("r13", 0x368, 8),
    ("r14", 0x370, 8),
    ("r15", 0x378, 8),
    ("guest_exit_info_1", 0x390, 8),
    ("guest_exit_info_2", 0x398, 8),
    ("guest_exit_int_info", 0x3A0, 8),
    ("guest_nrip", 0x3A8, 8),
    ("sev_features", 0x3B0, 8),
    ("vintr_ctrl", 0x3B8, 8),
    ("guest_exit_code", 0x3C0, 8),
    ("virtual_tom", 0x3C8, 8),
    ("tlb_id", 0x3D0, 8),
    ("pcpu_id", 0x3D8, 8),
    ("event_inj", 0x3E0, 8),
    ("xcr0", 0x3E8, 8),
    ("x87_dp", 0x400, 8),
    ("mxcsr", 0x408, 4),
    ("x87_ftw", 0x40C, 2),
    ("x87_fsw", 0x40E, 2),
    ("x87_fcw", 0x410, 2),
    ("x87_fop", 0x412, 2),
    ("x87_ds", 0x414, 2),
    ("x87_cs", 0x416, 2),
    ("x87_rip", 0x418, 8),
)

#: (field, offset, size) of the register files kept as bytes.
BLOBS: tuple[tuple[str, int, int], ...] = (
    ("fpreg_x87", 0x420, 80),
    ("fpreg_xmm", 0x470, 256),
    ("fpreg_ymm", 0x570, 256),
)


def modelled_ranges() -> Iterator[tuple[str, int, int]]:
    """Every modelled field as (name, offset, size), segments first."""
    for index, name in enumerate(SEGMENTS):
        yield name, index * SEGMENT_SIZE, SEGMENT_SIZE
    yield from SCALARS
    yield from BLOBS


@dataclass(frozen=True)
class Segment:
    """A ``struct vmcb_seg``: u16 selector, u16 attrib, u32 limit, u64 base."""

    selector: int = 0
    attrib: int = 0
    limit: int = 0
    base: int = 0

    @classmethod
    def from_bytes(cls, r: Reader, name: str, offset: int) -> Self:
        return cls(
            r.u16(f"{name}.selector", offset),
            r.u16(f"{name}.attrib", offset + 2),
            r.u32(f"{name}.limit", offset + 4),
            r.u64(f"{name}.base", offset + 8),
        )

    def to_bytes(self, name: str) -> bytes:
        def enc(value: int, size: int, part: str) -> bytes:
            return le_bytes(value, size, structure=STRUCTURE, field=f"{name}.{part}")

        return (
            enc(self.selector, 2, "selector")
            + enc(self.attrib, 2, "attrib")
            + enc(self.limit, 4, "limit")
            + enc(self.base, 8, "base")
        )


_NULL = Segment()
_FPREG_X87 = bytes(80)
_FPREG_XMM = bytes(256)


@dataclass(frozen=True)
class Vmsa:
    """One VMSA page. Fields not named here stay in ``reserved`` (the page with every
    modelled field zeroed), so parsing and serialising a page never loses a byte."""

    es: Segment = _NULL
    cs: Segment = _NULL
    ss: Segment = _NULL
    ds: Segment = _NULL
    fs: Segment = _NULL
    gs: Segment = _NULL
    gdtr: Segment = _NULL
    ldtr: Segment = _NULL
    idtr: Segment = _NULL
    tr: Segment = _NULL
    vmpl0_ssp: int = 0
    vmpl1_ssp: int = 0
    vmpl2_ssp: int = 0
    vmpl3_ssp: int = 0
    u_cet: int = 0
    vmpl: int = 0
    cpl: int = 0
    efer: int = 0
    xss: int = 0
    cr4: int = 0
    cr3: int = 0
    cr0: int = 0
    dr7: int = 0
    dr6: int = 0
    rflags: int = 0
    rip: int = 0
    dr0: int = 0
    dr1: int = 0
    dr2: int = 0
    dr3: int = 0
    dr0_addr_mask: int = 0
    dr1_addr_mask: int = 0
    dr2_addr_mask: int = 0
    dr3_addr_mask: int = 0
    rsp: int = 0
    s_cet: int = 0
    ssp: int = 0
    isst_addr: int = 0
    rax: int = 0
    star: int = 0
    lstar: int = 0
    cstar: int = 0
    sfmask: int = 0
    kernel_gs_base: int = 0
    sysenter_cs: int = 0
    sysenter_esp: int = 0
    sysenter_eip: int = 0
    cr2: int = 0
    g_pat: int = 0
    dbgctl: int = 0
    br_from: int = 0
    br_to: int = 0
    last_excp_from: int = 0
    last_excp_to: int = 0
    pkru: int = 0
    rcx: int = 0
    rdx: int = 0
    rbx: int = 0
    rbp: int = 0
    rsi: int = 0
    rdi: int = 0
    r8: int = 0
    r9: int = 0
    r10: int = 0
    r11: int = 0
    r12: int = 0
    r13: int = 0
    r14: int = 0
    r15: int = 0
    guest_exit_info_1: int = 0
    guest_exit_info_2: int = 0
    guest_exit_int_info: int = 0
    guest_nrip: int = 0
    sev_features: int = 0
    vintr_ctrl: int = 0
    guest_exit_code: int = 0
    virtual_tom: int = 0
    tlb_id: int = 0
    pcpu_id: int = 0
    event_inj: int = 0
    xcr0: int = 0
    x87_dp: int = 0
    mxcsr: int = 0
    x87_ftw: int = 0
    x87_fsw: int = 0
    x87_fcw: int = 0
    x87_fop: int = 0
    x87_ds: int = 0
    x87_cs: int = 0
    x87_rip: int = 0
    fpreg_x87: bytes = _FPREG_X87
    fpreg_xmm: bytes = _FPREG_XMM
    fpreg_ymm: bytes = _FPREG_XMM
    reserved: bytes = bytes(VMSA_SIZE)

    def __post_init__(self) -> None:
        check_len(STRUCTURE, "reserved", self.reserved, VMSA_SIZE)
        for name, _offset, size in BLOBS:
            check_len(STRUCTURE, name, getattr(self, name), size)
        page = bytearray(self.reserved)
        for _name, offset, size in modelled_ranges():
            page[offset : offset + size] = bytes(size)
        object.__setattr__(self, "reserved", bytes(page))

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a whole 4096-byte page."""
        r = Reader(STRUCTURE, bytes(data))
        r.expect_size(VMSA_SIZE)
        values: dict[str, object] = {
            name: Segment.from_bytes(r, name, i * SEGMENT_SIZE) for i, name in enumerate(SEGMENTS)
        }
        for name, offset, size in SCALARS:
            values[name] = r.uint(name, offset, size)
        for name, offset, size in BLOBS:
            values[name] = r.raw(name, offset, size)
        return cls(reserved=bytes(data), **values)  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        page = bytearray(self.reserved)
        for index, name in enumerate(SEGMENTS):
            segment: Segment = getattr(self, name)
            page[index * SEGMENT_SIZE : (index + 1) * SEGMENT_SIZE] = segment.to_bytes(name)
        for name, offset, size in SCALARS:
            page[offset : offset + size] = le_bytes(
                getattr(self, name), size, structure=STRUCTURE, field=name
            )
        for name, offset, size in BLOBS:
            page[offset : offset + size] = getattr(self, name)
        return bytes(page)

    def differences(self, other: Vmsa) -> list[str]:
        """Names of the fields (and ``reserved``) in which two pages differ, for messages."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


# -- CPU signatures -------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSignature:
    """Family, model and stepping as CPUID(1).EAX encodes them (AMD CPUID spec #25481):
    family above 0xF is 0xF plus an extended family, the model's high nibble is extended."""

    family: int
    model: int
    stepping: int

    def __post_init__(self) -> None:
        for name, value, limit in (
            ("family", self.family, 0xF + 0xFF),
            ("model", self.model, 0xFF),
            ("stepping", self.stepping, 0xF),
        ):
            if not 0 <= value <= limit:
                raise UsageError(f"CPU {name} must be within 0..{limit}, got {value}")

    def to_int(self) -> int:
        """CPUID(1).EAX, which KVM puts in RDX at reset."""
        base_family = min(self.family, 0xF)
        ext_family = self.family - 0xF if self.family > 0xF else 0
        return (
            (ext_family << 20)
            | ((self.model >> 4) << 16)
            | (base_family << 8)
            | ((self.model & 0xF) << 4)
            | self.stepping
        )

    @classmethod
    def from_int(cls, value: int) -> Self:
        """Decode a CPUID(1).EAX value; bits outside family, model and stepping must be 0."""
        if not 0 <= value <= 0x0FFF_0FFF or value & 0xF000:
            raise UsageError(
                f"CPU signature {value:#x} is not a CPUID(1).EAX value: expected bits 0-11 and "
                "16-27 only (e.g. 0xa00f11 for family 25 model 1 stepping 1)"
            )
        base_family = (value >> 8) & 0xF
        family = base_family + ((value >> 20) & 0xFF) if base_family == 0xF else base_family
        model = (value >> 4) & 0xF
        if base_family in (0x6, 0xF):
            model |= ((value >> 16) & 0xF) << 4
        return cls(family, model, value & 0xF)

    def __str__(self) -> str:
        return f"family {self.family} model {self.model} stepping {self.stepping}"


#: QEMU's built-in x86 CPU models (target/i386/cpu.c ``builtin_x86_defs``) an SEV-ES guest
#: runs with; their versions (``-v1``, ``-v2``...) and aliases keep family, model, stepping.
QEMU_CPU_MODELS: dict[str, CpuSignature] = {
    "qemu64": CpuSignature(15, 107, 1),
    "EPYC": CpuSignature(23, 1, 2),
    "EPYC-Rome": CpuSignature(23, 49, 0),
    "EPYC-Milan": CpuSignature(25, 1, 1),
    "EPYC-Genoa": CpuSignature(25, 17, 0),
    "EPYC-Turin": CpuSignature(26, 0, 0),
}
_ALIASES = {"EPYC-IBPB": "EPYC"}
#: The QEMU model matching each emulated EPYC generation (for ``-cpu host``).
GENERATION_MODELS = generations.GENERATION_MODELS
_VERSION = re.compile(r"-v[0-9]+$")


def qemu_cpu_signature(name: str) -> CpuSignature:
    """The signature of a QEMU CPU model name (``EPYC-Milan``, ``EPYC-v4``...)."""
    base = _VERSION.sub("", name)
    base = _ALIASES.get(base, base)
    try:
        return QEMU_CPU_MODELS[base]
    except KeyError as exc:
        known = ", ".join(QEMU_CPU_MODELS)
        raise UsageError(
            f"unknown QEMU CPU model {name!r}: expected one of {known} (or a version such as "
            "EPYC-v4); for another CPU give its CPUID signature or family, model and stepping"
        ) from exc


_CPU_PROPS = ("family", "model", "stepping")


def qemu_cpu_option(option: str, host_model: str | None = None) -> CpuSignature:
    """The signature QEMU's ``-cpu MODEL[,prop=value...]`` gives the vCPUs.

    QEMU's ``family=``, ``model=`` and ``stepping=`` CPU properties override the model's;
    feature flags do not touch the signature. ``host`` and ``max`` under KVM take the host
    CPU's, given here as the QEMU model of the host's generation (``host_model``).
    """
    name, *props = option.split(",")
    if name in ("host", "max"):
        if host_model is None:
            raise UsageError(
                f"-cpu {name}: the host CPU's signature is not known here; name a CPU model "
                "(e.g. -cpu EPYC-Milan) or give family=,model=,stepping="
            )
        name = host_model
    signature = qemu_cpu_signature(name)
    overrides: dict[str, int] = {}
    for prop in props:
        key, sep, value = prop.partition("=")
        if sep and key in _CPU_PROPS:
            try:
                overrides[key] = int(value, 0)
            except ValueError as exc:
                raise UsageError(f"-cpu {option}: {key}={value!r} is not a number") from exc
    return dataclasses.replace(signature, **overrides) if overrides else signature


# -- reset state ----------------------------------------------------------------------------

#: What KVM_SEV_INIT2 adds over the legacy KVM_SEV_ES_INIT: the FPU reset state.
INIT2_MXCSR = 0x1F80
INIT2_FCW = 0x37F


def reset_vmsa(eip: int, cpu: CpuSignature, *, legacy: bool, sev_features: int = 0) -> Vmsa:
    """One vCPU's VMSA at reset, starting at ``eip`` (real mode: CS base = eip & ~0xFFFF)."""
    if not 0 <= eip <= 0xFFFF_FFFF:
        raise UsageError(f"a reset address is 32 bits, got {eip:#x}")
    data = Segment(0, 0x93, 0xFFFF, 0)
    return Vmsa(
        es=data,
        cs=Segment(0xF000, 0x9B, 0xFFFF, eip & 0xFFFF_0000),
        ss=data,
        ds=data,
        fs=data,
        gs=data,
        gdtr=Segment(0, 0, 0xFFFF, 0),
        ldtr=Segment(0, 0x82, 0xFFFF, 0),
        idtr=Segment(0, 0, 0xFFFF, 0),
        tr=Segment(0, 0x8B, 0xFFFF, 0),
        efer=0x1000,  # EFER.SVME, which KVM sets
        cr4=0x40,  # CR4.MCE, which KVM sets
        cr0=0x10,  # CR0.ET
        dr7=0x400,
        dr6=0xFFFF_0FF0,
        rflags=0x2,
        rip=eip & 0xFFFF,
        g_pat=0x0007_0406_0007_0406,
        rdx=cpu.to_int(),
        sev_features=sev_features,
        xcr0=0x1,
        mxcsr=0 if legacy else INIT2_MXCSR,
        x87_fcw=0 if legacy else INIT2_FCW,
    )


def reset_vmsas(
    vcpus: int, cpu: CpuSignature, ap_reset_address: int | None, *, legacy: bool
) -> tuple[bytes, ...]:
    """The pages LAUNCH_UPDATE_VMSA measures, in vCPU order: the BSP, then identical APs."""
    if vcpus < 1:
        raise UsageError(f"an SEV-ES guest has at least one vCPU, got {vcpus}")
    bsp = reset_vmsa(BSP_EIP, cpu, legacy=legacy).to_bytes()
    if vcpus == 1:
        return (bsp,)
    if not ap_reset_address:
        raise FormatError(
            STRUCTURE,
            "ap_reset_address",
            "the application processors start at the firmware's SEV-ES reset address, but "
            "none was given (the OVMF footer table has no SEV-ES reset block, or it is 0); "
            "use an SEV-ES capable OVMF such as OVMF.amdsev.fd",
            value=ap_reset_address,
        )
    ap = reset_vmsa(ap_reset_address, cpu, legacy=legacy).to_bytes()
    return (bsp, *([ap] * (vcpus - 1)))
