"""The usual mistakes behind a launch-measurement mismatch, as variants of the owner's inputs.

Each variant is the owner's claimed launch with one or more named mistakes applied: the
kernel-hashes table left out, the command line with or without trailing whitespace or
newline, the initrd missing, another of the given firmware images, TEK and TIK swapped.
:func:`sevlaunch.owner.measurement.diagnose` checks them against the measurement; this module
only builds them (hashlib, no MAC) so the list can be tested on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sevlaunch.errors import UnsuitableFirmwareError
from sevlaunch.owner.launch_digest import EMPTY_SHA256, DirectBoot, MeasuredFirmware


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

    @property
    def explained(self) -> bool:
        return bool(self.explanations)

    def describe(self) -> str:
        if not self.explanations:
            return (
                f"None of the usual mistakes explains the measurement ({self.tried} variants "
                "tried: kernel hashes on/off, command-line whitespace and newline, initrd "
                "missing, each firmware given, TEK and TIK swapped). The guest may run other "
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
    firmwares: Sequence[MeasuredFirmware], boot: DirectBoot | None
) -> Iterator[Variant]:
    """Launch digests for each firmware given (the first is the claimed one) and boot variant.

    A firmware that cannot take a kernel-hashes table is skipped for variants that need one.
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
        for boot_findings, variant in boot_variants(boot):
            try:
                digest = firmware.digest(variant.hashes() if variant else None)
            except UnsuitableFirmwareError:
                continue
            yield Variant((*fw_findings, *boot_findings), digest)


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
