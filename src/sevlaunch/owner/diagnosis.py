"""The usual mistakes behind a launch-measurement mismatch, as variants of the owner's inputs.

Each variant is the owner's claimed launch with one or more named mistakes applied: the
kernel-hashes table left out, the command line with or without trailing whitespace or
newline, the initrd missing, another of the given firmware images, TEK and TIK swapped, and
for SEV-ES the other ``legacy-vm-type``, other vCPU counts and the other QEMU CPU models.
:func:`sevlaunch.owner.measurement.diagnose` checks them against the measurement; this module
only builds them (hashlib, no MAC) so the list can be tested on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sevlaunch.errors import UnsuitableFirmwareError
from sevlaunch.formats.vmsa import QEMU_CPU_MODELS
from sevlaunch.owner.launch_digest import EMPTY_SHA256, DirectBoot, MeasuredFirmware
from sevlaunch.owner.vmsa import EsVmsas, VcpuType, es_pages

if TYPE_CHECKING:
    from hashlib import _Hash


class Mistake(enum.Enum):
    OTHER_FIRMWARE = "other-firmware"
    KERNEL_HASHES_OFF = "kernel-hashes-off"
    CMDLINE_NO_TRAILING_NEWLINE = "cmdline-no-trailing-newline"
    CMDLINE_TRAILING_NEWLINE = "cmdline-trailing-newline"
    CMDLINE_NO_TRAILING_WHITESPACE = "cmdline-no-trailing-whitespace"
    CMDLINE_TRIMMED = "cmdline-trimmed"
    CMDLINE_EMPTY = "cmdline-empty"
    INITRD_MISSING = "initrd-missing"
    KEYS_SWAPPED = "keys-swapped"
    LEGACY_VM_TYPE = "legacy-vm-type"
    VCPU_COUNT = "vcpu-count"
    VCPU_TYPE = "vcpu-type"
    GUEST_FEATURES = "guest-features"  # SNP: the VMSA's SEV_FEATURES


@dataclass(frozen=True)
class Finding:
    """One mistake, in words a user can act on."""

    mistake: Mistake
    text: str


@dataclass(frozen=True)
class Variant:
    """A launch digest under some mistakes (none: the inputs as given)."""

    findings: tuple[Finding, ...]
    digest: bytes


@dataclass(frozen=True)
class KeyVariant:
    findings: tuple[Finding, ...]
    tik: bytes = field(repr=False)


@dataclass(frozen=True)
class Diagnosis:
    """What would have matched; ``explanations`` is empty when no usual mistake explains it."""

    explanations: tuple[tuple[Finding, ...], ...]
    tried: int
    es: bool = False

    @property
    def explained(self) -> bool:
        return bool(self.explanations)

    def describe(self) -> str:
        if not self.explanations:
            es = (
                ", SEV-ES legacy-vm-type on/off, vCPU counts and QEMU CPU models" if self.es else ""
            )
            return (
                f"None of the usual mistakes explains the measurement ({self.tried} "
                f"variant{'' if self.tried == 1 else 's'} tried: kernel hashes on/off, "
                "command-line whitespace and newline, initrd "
                f"missing, each firmware given, TEK and TIK swapped{es}). The guest may run other "
                "code than you expect, or the platform values (API version, build, policy) or "
                "the TIK belong to another launch. Do not trust this guest."
            )
        lines = []
        for findings in self.explanations:
            if not findings:
                lines.append("The measurement matches the inputs as given.")
            else:
                lines.append(
                    "The measurement matches if " + " and ".join(f.text for f in findings) + "."
                )
        lines.append(
            "If that is the launch you meant, correct the input and validate again; "
            "otherwise do not trust this guest."
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "explained": self.explained,
            "es": self.es,
            "tried": self.tried,
            "explanations": [
                [{"mistake": f.mistake.value, "text": f.text} for f in findings]
                for findings in self.explanations
            ],
        }


def _show(cmdline: bytes) -> str:
    return repr(cmdline.decode(errors="backslashreplace"))


def cmdline_variants(cmdline: bytes) -> list[tuple[bytes, Finding]]:
    """Command lines the guest may really have had, each once, the given one excluded."""
    options = [
        (
            cmdline.rstrip(b"\r\n"),
            Mistake.CMDLINE_NO_TRAILING_NEWLINE,
            "the kernel command line has no trailing newline",
        ),
        (
            cmdline + b"\n",
            Mistake.CMDLINE_TRAILING_NEWLINE,
            "the kernel command line ends with a newline (as when read from a file)",
        ),
        (
            cmdline.rstrip(),
            Mistake.CMDLINE_NO_TRAILING_WHITESPACE,
            "the kernel command line has no trailing whitespace",
        ),
        (
            cmdline.strip(),
            Mistake.CMDLINE_TRIMMED,
            "the kernel command line has no leading or trailing whitespace",
        ),
        (b"", Mistake.CMDLINE_EMPTY, "QEMU was given no kernel command line"),
    ]
    seen = {cmdline}
    out = []
    for variant, mistake, text in options:
        if variant in seen:
            continue
        seen.add(variant)
        shown = f"{text} ({_show(variant)})" if variant else text
        out.append((variant, Finding(mistake, shown)))
    return out


def boot_variants(
    boot: DirectBoot | None,
) -> Iterator[tuple[tuple[Finding, ...], DirectBoot | None]]:
    """The direct boot as given, then with command-line and initrd mistakes, then no table."""
    if boot is None:
        yield (), None
        return
    cmdlines = [(boot.cmdline, ()), *((c, (f,)) for c, f in cmdline_variants(boot.cmdline))]
    initrds: list[tuple[bytes, tuple[Finding, ...]]] = [(boot.initrd_sha256, ())]
    if boot.initrd_sha256 != EMPTY_SHA256:
        missing = Finding(Mistake.INITRD_MISSING, "QEMU was given no initrd (or an empty one)")
        initrds.append((EMPTY_SHA256, (missing,)))
    for initrd, initrd_findings in initrds:
        for cmdline, cmdline_findings in cmdlines:
            variant = replace(boot, cmdline=cmdline, initrd_sha256=initrd)
            yield (*cmdline_findings, *initrd_findings), variant
    yield (
        (
            Finding(
                Mistake.KERNEL_HASHES_OFF,
                "QEMU did not measure the kernel-hashes table (sev-guest kernel-hashes=off, "
                "QEMU's default; libvirt <launchSecurity kernelHashes='no'>), so the kernel, "
                "initrd and command line are not covered by the measurement",
            ),
        ),
        None,
    )


def digest_variants(
    firmwares: Sequence[MeasuredFirmware],
    boot: DirectBoot | None,
    es: EsVmsas | None = None,
) -> Iterator[Variant]:
    """Launch digests for each firmware given (the first is the claimed one), boot variant
    and, for SEV-ES, VMSA variant.

    A firmware that cannot take a kernel-hashes table (or, for SEV-ES, has no reset address)
    is skipped for the variants that need one.
    """
    if not firmwares:
        return
    claimed = firmwares[0]
    for index, firmware in enumerate(firmwares):
        fw_findings: tuple[Finding, ...] = ()
        if index:
            fw_findings = (
                Finding(
                    Mistake.OTHER_FIRMWARE,
                    f"the guest ran firmware {firmware.name} instead of {claimed.name}",
                ),
            )
        try:
            pages = _es_pages(firmware, es)
        except UnsuitableFirmwareError:
            continue
        for boot_findings, variant in boot_variants(boot):
            try:
                state = _boot_state(firmware, variant)
            except UnsuitableFirmwareError:
                continue
            for es_findings, vmsas in pages:
                h = state.copy()
                for page in vmsas:
                    h.update(page)
                yield Variant((*fw_findings, *boot_findings, *es_findings), h.digest())


def _boot_state(firmware: MeasuredFirmware, boot: DirectBoot | None) -> _Hash:
    """The hash state after the firmware and (for a direct boot) the kernel-hashes table."""
    state = firmware.state.copy()
    if boot is not None:
        firmware.hashes_area()
        state.update(boot.hashes().to_bytes())
    return state


def _es_pages(
    firmware: MeasuredFirmware, es: EsVmsas | None
) -> list[tuple[tuple[Finding, ...], tuple[bytes, ...]]]:
    """Each VMSA variant's pages under this firmware, built once (none for plain SEV)."""
    if es is None:
        return [((), ())]
    out = []
    for findings, variant in es_variants(es):
        try:
            out.append((findings, es_pages(firmware, variant)))
        except UnsuitableFirmwareError:
            if not findings:
                raise
    return out


def _counts(vcpus: int) -> list[int]:
    """vCPU counts to try besides the given one: 1..8 and four either side of it."""
    candidates = set(range(1, 9)) | set(range(max(1, vcpus - 4), vcpus + 5))
    return sorted(candidates - {vcpus})


def es_variants(es: EsVmsas) -> Iterator[tuple[tuple[Finding, ...], EsVmsas]]:
    """The VMSAs as given, then under the other KVM init, other vCPU counts and CPU models
    (and their combinations), fewest changes first."""
    legacies: list[tuple[tuple[Finding, ...], bool]] = [((), es.legacy)]
    legacies.append(((_legacy_finding(not es.legacy),), not es.legacy))
    counts: list[tuple[tuple[Finding, ...], int]] = [((), es.vcpus)]
    counts += [((_count_finding(n, es.vcpus),), n) for n in _counts(es.vcpus)]
    cpus: list[tuple[tuple[Finding, ...], VcpuType | None]] = [((), es.cpu)]
    if es.cpu is not None:
        cpus += [((_cpu_finding(other, es.cpu),), other) for other in _other_cpus(es.cpu)]
    combos = [
        ((*lf, *cf, *tf), legacy, count, cpu)
        for lf, legacy in legacies
        for cf, count in counts
        for tf, cpu in cpus
    ]
    combos.sort(key=lambda c: len(c[0]))
    for findings, legacy, count, cpu in combos:
        variant = es.with_legacy(legacy) if legacy != es.legacy else es
        if es.explicit and count > 1 and variant.ap is None:
            continue
        yield findings, replace(variant, vcpus=count, cpu=cpu)


def _other_cpus(given: VcpuType) -> list[VcpuType]:
    seen = {given.signature}
    out = []
    for name, signature in QEMU_CPU_MODELS.items():
        if signature not in seen:
            seen.add(signature)
            out.append(VcpuType(signature, name))
    return out


def _legacy_finding(legacy: bool) -> Finding:
    if legacy:
        text = (
            "KVM used the legacy SEV-ES init (legacy-vm-type=on, or auto as QEMU 9.1+ resolves "
            "it): the VMSAs hold no FPU state (MXCSR and FCW 0)"
        )
    else:
        text = (
            "KVM used KVM_SEV_INIT2 (legacy-vm-type=off): the VMSAs hold the FPU reset state "
            "(MXCSR 0x1F80, FCW 0x37F)"
        )
    return Finding(Mistake.LEGACY_VM_TYPE, text)


def _count_finding(count: int, given: int) -> Finding:
    return Finding(
        Mistake.VCPU_COUNT,
        f"the guest had {count} vCPU{'s' if count != 1 else ''}, not {given} "
        "(QEMU -smp, libvirt <vcpu>)",
    )


def _cpu_finding(cpu: VcpuType, given: VcpuType) -> Finding:
    default = " (QEMU's default when no -cpu is given)" if cpu.name == "qemu64" else ""
    return Finding(
        Mistake.VCPU_TYPE,
        f"the vCPUs were {cpu.describe()}{default}, not {given.describe()} "
        "(QEMU -cpu, libvirt <cpu><model>)",
    )


def key_variants(tik: bytes, tek: bytes | None) -> list[KeyVariant]:
    """The TIK as given, and the TEK in its place when both are known."""
    out = [KeyVariant((), tik)]
    if tek is not None and tek != tik:
        swapped = Finding(
            Mistake.KEYS_SWAPPED,
            "the TEK and TIK are swapped (the key given as TIK is the TEK; a --tk file holds "
            "TEK then TIK)",
        )
        out.append(KeyVariant((swapped,), tek))
    return out
