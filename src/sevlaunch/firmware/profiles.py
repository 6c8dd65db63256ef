"""Profiles of the real EPYC generations: firmware API version, build, C-bit, ASID split.

Sources for the figures (public captures of real parts):

- cbitpos: CPUID 0x8000001F EBX[5:0]; 47 on Naples and Rome, 51 on Milan and Genoa (QEMU and
  libvirt documentation examples; libvirt's Milan domcaps example reports 51).
- Naples: "SEV API:0.17 build:1" updating to build 22 (AMDESE/AMDSEV issue 32); 15 ASIDs
  (CPUID 0x8000001F ECX = 0xf, AMDSEV issue 41) and no SEV-ES (SEV-ES arrived with Rome).
- Rome: API 0.24 build 15 (libvirt's ``virsh domlaunchsecinfo`` example); 509 ASIDs.
- Milan: API 1.55 build 21 (the fam19h model 0x firmware in AMDSEV issue 271); 509 ASIDs,
  split 99 SEV-ES / 410 SEV with the common BIOS setting (AMDSEV issues 81 and 140: "SEV
  supported: 410 ASIDs", "SEV-ES and SEV-SNP supported: 99 ASIDs").
- Genoa: API 1.55 (the last legacy-SEV API revision); 1006 ASIDs split 255 SEV-ES / 751 SEV
  (kvm_amd on a Zen 4 part, AMDSEV issue 246: "SEV enabled (ASIDs 256 - 1006)"). The build id
  37 is a plausible value, not one pinned by a public capture.
- Turin: API 1.55; the ASID split is Genoa's and the build id a plausible value (no public
  capture pins them); it is here for SEV-SNP, whose facts are in :mod:`.snp.profiles`.

SEV-ES guests use ASIDs ``1..max_es_asids``; SEV guests use the ASIDs that follow
(``max_es_asids + 1 .. max_es_asids + max_sev_asids``), as KVM splits them by CPUID
0x8000001F EDX (minimum SEV ASID). libvirt reports these counts as ``max-es-guests`` and
``max-guests``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sevlaunch.errors import UsageError


@dataclass(frozen=True)
class Profile:
    """What one EPYC generation's SEV firmware reports about itself."""

    name: str
    api_major: int
    api_minor: int
    build_id: int
    cbitpos: int
    reduced_phys_bits: int
    max_sev_asids: int
    max_es_asids: int

    @property
    def api_version(self) -> tuple[int, int]:
        return (self.api_major, self.api_minor)

    @property
    def supports_es(self) -> bool:
        return self.max_es_asids > 0

    @property
    def es_asids(self) -> range:
        """ASIDs an SEV-ES guest may be activated on."""
        return range(1, self.max_es_asids + 1)

    @property
    def sev_asids(self) -> range:
        """ASIDs a plain SEV guest may be activated on."""
        first = self.max_es_asids + 1
        return range(first, first + self.max_sev_asids)

    @property
    def supports_attestation(self) -> bool:
        """ATTESTATION exists from API 0.23 on (firmware-API doc §7)."""
        return self.api_version >= (0, 23)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("naples", 0, 17, 22, 47, 1, max_sev_asids=15, max_es_asids=0),
        Profile("rome", 0, 24, 15, 47, 1, max_sev_asids=410, max_es_asids=99),
        Profile("milan", 1, 55, 21, 51, 1, max_sev_asids=410, max_es_asids=99),
        Profile("genoa", 1, 55, 37, 51, 1, max_sev_asids=751, max_es_asids=255),
        Profile("turin", 1, 55, 61, 51, 1, max_sev_asids=751, max_es_asids=255),
    )
}


def profile(name: str) -> Profile:
    """The profile called ``name``, or a UsageError listing the known ones."""
    try:
        return PROFILES[name.lower()]
    except KeyError as exc:
        raise UsageError(
            f"unknown platform profile {name!r}; choose one of {', '.join(PROFILES)}"
        ) from exc
