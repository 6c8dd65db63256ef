"""Why an SNP MEASUREMENT differs from the owner's digest: the usual mistakes, tried as
variants of the claimed launch (sev-snp.md §3), as ``owner validate`` does for SEV.

Tried: each firmware given, kernel hashes on/off, command-line whitespace and newline, the
initrd missing, other vCPU counts and QEMU CPU models, and other guest features (DebugSwap
on/off first: the default of older AMD host kernels). Each firmware's pages are hashed once;
a variant only re-runs the metadata pages and the VMSAs.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sevlaunch.errors import UnsuitableFirmwareError
from sevlaunch.formats.snp.pageinfo import VMSA_GPA, PageType
from sevlaunch.owner.diagnosis import (
    Finding,
    Mistake,
    Variant,
    _count_finding,
    _counts,
    _cpu_finding,
    _other_cpus,
    boot_variants,
)
from sevlaunch.owner.launch_digest import DirectBoot
from sevlaunch.owner.snp.launch_digest import (
    SnpFirmware,
    extend,
    metadata_digest,
    ovmf_hash,
    vmsa_pages,
)
from sevlaunch.owner.vmsa import VcpuType

#: SEV_FEATURES bits besides SNPActive (sev-snp-measure's README names them).
FEATURE_NAMES = {
    1: "vTOM",
    2: "ReflectVC",
    3: "RestrictedInjection",
    4: "AlternateInjection",
    5: "DebugSwap",
    6: "PreventHostIBS",
    7: "BTBIsolation",
    8: "VmplSSS",
    9: "SecureTSC",
    10: "VmgexitParameter",
    12: "IbsVirtualization",
    14: "VmsaRegProt",
    15: "SmtProtection",
}


@dataclass(frozen=True)
class SnpLaunch:
    """The launch the owner claims: firmware images (the first is the claimed one, the rest
    candidates), vCPUs, guest features and the direct boot, if any."""

    firmwares: tuple[tuple[str, bytes], ...]
    vcpus: int
    cpu: VcpuType
    guest_features: int = 0x1
    boot: DirectBoot | None = None


@dataclass(frozen=True)
class SnpDiagnosis:
    explanations: tuple[tuple[Finding, ...], ...]
    tried: int

    @property
    def explained(self) -> bool:
        return bool(self.explanations)

    def describe(self) -> str:
        if not self.explanations:
            return (
                f"None of the usual mistakes explains the measurement ({self.tried} "
                f"variant{'' if self.tried == 1 else 's'} tried: each firmware given, "
                "kernel hashes on/off, command-line whitespace and "
                "newline, initrd missing, vCPU counts, QEMU CPU models and guest features). The "
                "guest may run other code than you expect. Do not trust this guest."
            )
        lines = [
            "The measurement matches the inputs as given."
            if not f
            else "The measurement matches if " + " and ".join(x.text for x in f) + "."
            for f in self.explanations
        ]
        lines.append(
            "If that is the launch you meant, correct the input and validate again; "
            "otherwise do not trust this guest."
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "explained": self.explained,
            "tried": self.tried,
            "explanations": [
                [{"mistake": f.mistake.value, "text": f.text} for f in findings]
                for findings in self.explanations
            ],
        }


def _features_finding(features: int, given: int) -> Finding:
    changed = features ^ given
    names = [
        f"{FEATURE_NAMES.get(b, f'bit {b}')} {'on' if features >> b & 1 else 'off'}"
        for b in range(64)
        if changed >> b & 1
    ]
    return Finding(
        Mistake.GUEST_FEATURES,
        f"the guest features were {features:#x}, not {given:#x} ({', '.join(names)}; the host "
        "kernel and QEMU choose them, e.g. DebugSwap was on by default in AMD's 6.6-based host "
        "kernels)",
    )


def _features(given: int) -> list[int]:
    out = [given ^ (1 << 5), 0x1, 0x21]
    out += [given ^ (1 << b) for b in FEATURE_NAMES]
    seen = {given}
    return [f for f in out if f & 1 and not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]


VmsaChoice = tuple[tuple[Finding, ...], int, VcpuType, int]


def vmsa_variants(launch: SnpLaunch) -> list[VmsaChoice]:
    """(findings, vCPUs, CPU, features): as given, then one change, then two; fewest first."""
    counts = [((), launch.vcpus)] + [
        ((_count_finding(n, launch.vcpus),), n) for n in _counts(launch.vcpus)
    ]
    cpus = [((), launch.cpu)] + [
        ((_cpu_finding(c, launch.cpu),), c) for c in _other_cpus(launch.cpu)
    ]
    feats = [((), launch.guest_features)] + [
        ((_features_finding(f, launch.guest_features),), f)
        for f in _features(launch.guest_features)
    ]
    combos = [
        ((*a, *b, *c), n, cpu, f)
        for (a, n), (b, cpu), (c, f) in itertools.product(counts, cpus, feats)
    ]
    combos = [c for c in combos if len(c[0]) <= 2]
    combos.sort(key=lambda c: len(c[0]))
    return combos


def snp_digest_variants(launch: SnpLaunch) -> Iterator[Variant]:
    claimed = launch.firmwares[0][0] if launch.firmwares else ""
    choices = vmsa_variants(launch)
    vmsa_hashes: dict[tuple[int, int, int, int | None], tuple[bytes, ...]] = {}
    for index, (name, image) in enumerate(launch.firmwares):
        fw = (
            (
                Finding(
                    Mistake.OTHER_FIRMWARE, f"the guest ran firmware {name} instead of {claimed}"
                ),
            )
            if index
            else ()
        )
        try:
            firmware = SnpFirmware.from_image(image)
            seed = ovmf_hash(image)
        except UnsuitableFirmwareError:
            continue
        reset = firmware.footer.sev_es_reset_address
        for boot_findings, boot in boot_variants(launch.boot):
            try:
                base = metadata_digest(seed, firmware, boot.hashes() if boot else None)
            except UnsuitableFirmwareError:
                continue
            for vm_findings, count, cpu, features in choices:
                key = (min(count, 2), cpu.signature.to_int(), features, reset)
                if key not in vmsa_hashes:
                    try:
                        pages = vmsa_pages(min(count, 2), cpu.signature, features, reset)
                    except UnsuitableFirmwareError:
                        vmsa_hashes[key] = ()
                        continue
                    vmsa_hashes[key] = tuple(hashlib.sha384(p).digest() for p in pages)
                hashes = vmsa_hashes[key]
                if not hashes:
                    continue
                ld = base
                for i in range(count):
                    ld = extend(ld, PageType.VMSA, VMSA_GPA, hashes[min(i, 1)])
                yield Variant((*fw, *boot_findings, *vm_findings), ld)


def snp_diagnose(measurement: bytes, launch: SnpLaunch) -> SnpDiagnosis:
    """Every variant with the fewest mistakes whose digest is ``measurement``."""
    tried, best = 0, None
    found: list[tuple[Finding, ...]] = []
    for variant in snp_digest_variants(launch):
        tried += 1
        if variant.digest != measurement:
            continue
        size = len(variant.findings)
        if best is None or size < best:
            best, found = size, [variant.findings]
        elif size == best and variant.findings not in found:
            found.append(variant.findings)
    return SnpDiagnosis(tuple(found), tried)


def claimed_digest(launch: SnpLaunch) -> bytes:
    """The digest of the launch exactly as claimed (the first variant)."""
    return next(snp_digest_variants(launch)).digest
