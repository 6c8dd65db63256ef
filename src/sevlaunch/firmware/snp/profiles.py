"""What an SNP-capable EPYC generation's firmware reports (sev-snp.md §2, §4): the SNP API
version and build, the installed TCB, CPUID family/model/stepping, PLATFORM_INFO and the
report version it writes.

Figures are those of real reports: Milan fw 1.55.29 with TCB bl 4, tee 0, snp 0x18, ucode
0xdb, CPUID 19h/01h/1 and PLATFORM_INFO 0x25; Genoa fw 1.55.39 with bl 9, snp 0x17, ucode
0x48, CPUID 19h/11h/1; Turin fw 1.55.61 with fmc 0, bl 1, tee 0, snp 2, ucode 0x47 and
PLATFORM_INFO 0x67 (its CPUID model 02h and report version 5 are plausible values). Naples and
Rome have no SNP: their firmware does not know the SNP commands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sevlaunch.formats.snp.tcb import Generation, TcbVersion


@dataclass(frozen=True)
class SnpFirmwareVersion:
    """An installed (or committed) SNP firmware: its API version, build and TCB (u64)."""

    major: int
    minor: int
    build: int
    tcb: int

    @property
    def version(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.build)


@dataclass(frozen=True)
class SnpProfile:
    generation: Generation
    firmware: SnpFirmwareVersion
    cpuid_family: int
    cpuid_model: int
    cpuid_stepping: int
    platform_info: int
    report_version: int = 3

    @property
    def fms(self) -> int:
        """CPUID(1).EAX of the host (the SECRETS page's FMS field)."""
        family, model = self.cpuid_family, self.cpuid_model
        low_family = min(family, 0xF)
        ext_family = family - 0xF if family > 0xF else 0
        return (
            ext_family << 20
            | (model >> 4) << 16
            | low_family << 8
            | (model & 0xF) << 4
            | self.cpuid_stepping
        )

    def tcb(self, value: int) -> TcbVersion:
        return TcbVersion.from_int(value, self.generation.layout)

    def with_firmware(self, firmware: SnpFirmwareVersion) -> SnpProfile:
        return replace(self, firmware=firmware)


def _tcb(generation: Generation, **svns: int) -> int:
    fmc = svns.pop("fmc", 0) if generation is Generation.TURIN else None
    return TcbVersion(generation.layout, fmc=fmc, **svns).to_int()


SNP_PROFILES: dict[str, SnpProfile] = {
    "milan": SnpProfile(
        Generation.MILAN,
        SnpFirmwareVersion(
            1, 55, 29, _tcb(Generation.MILAN, bootloader=4, tee=0, snp=0x18, microcode=0xDB)
        ),
        0x19,
        0x01,
        1,
        0x25,
    ),
    "genoa": SnpProfile(
        Generation.GENOA,
        SnpFirmwareVersion(
            1, 55, 39, _tcb(Generation.GENOA, bootloader=9, tee=0, snp=0x17, microcode=0x48)
        ),
        0x19,
        0x11,
        1,
        0x25,
    ),
    "turin": SnpProfile(
        Generation.TURIN,
        SnpFirmwareVersion(
            1, 55, 61, _tcb(Generation.TURIN, fmc=0, bootloader=1, tee=0, snp=2, microcode=0x47)
        ),
        0x1A,
        0x02,
        0,
        0x67,
        report_version=5,
    ),
}


def snp_profile(name: str) -> SnpProfile | None:
    """The SNP facts of the SEV profile ``name``, None for a generation without SNP."""
    return SNP_PROFILES.get(name.lower())
