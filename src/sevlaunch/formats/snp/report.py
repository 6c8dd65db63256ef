"""The SNP attestation report, 1184 bytes (sev-snp.md §4.1), versions 2, 3, 4 and 5.

Version 4 is read with the mitigation vectors at 0x1F8/0x200 as version 5 has them: virtee
parses 4 as 3 (reserved there), but a Turin v4 report has been seen carrying them, and
reading them loses nothing (on a v3-shaped v4 report they are zero).

A version above 5 is parsed by the prefix every version shares (through CURRENT_MIT_VECTOR)
and flagged :attr:`AttestationReport.known_version` False, its bytes 0x208–0x29F kept raw in
``extension``. Reserved ranges of known versions must be zero (as go-sev-guest enforces);
the policy, PLATFORM_INFO and KEY_INFO words keep their reserved bits so that the verifier,
not the parser, refuses them by name. The 512-byte signature is kept as bytes: only its
algorithm decides how it reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from typing import Self

from sevlaunch.formats._cached import cached
from sevlaunch.formats._codec import Reader, check_len, le_bytes
from sevlaunch.formats.snp.ecdsa import SIGNATURE_SIZE, EcdsaSignature
from sevlaunch.formats.snp.policy import KeyInfo, PlatformInfo, SnpPolicy
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion

STRUCTURE = "SNP attestation report"
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0  # the signature covers bytes [0, 0x2A0)
KNOWN_VERSIONS = (2, 3, 4, 5)
LATEST_VERSION = 5

# (name, offset, size); an int field when size <= 8 and the name is not in _BYTE_FIELDS
_LAYOUT: tuple[tuple[str, int, int], ...] = (
    ("version", 0x000, 4),
    ("guest_svn", 0x004, 4),
    ("policy", 0x008, 8),
    ("family_id", 0x010, 16),
    ("image_id", 0x020, 16),
    ("vmpl", 0x030, 4),
    ("signature_algo", 0x034, 4),
    ("current_tcb", 0x038, 8),
    ("platform_info", 0x040, 8),
    ("key_info", 0x048, 4),
    ("report_data", 0x050, 64),
    ("measurement", 0x090, 48),
    ("host_data", 0x0C0, 32),
    ("id_key_digest", 0x0E0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("reported_tcb", 0x180, 8),
    ("cpuid_fam_id", 0x188, 1),
    ("cpuid_mod_id", 0x189, 1),
    ("cpuid_step", 0x18A, 1),
    ("chip_id", 0x1A0, 64),
    ("committed_tcb", 0x1E0, 8),
    ("current_build", 0x1E8, 1),
    ("current_minor", 0x1E9, 1),
    ("current_major", 0x1EA, 1),
    ("committed_build", 0x1EC, 1),
    ("committed_minor", 0x1ED, 1),
    ("committed_major", 0x1EE, 1),
    ("launch_tcb", 0x1F0, 8),
    ("launch_mit_vector", 0x1F8, 8),
    ("current_mit_vector", 0x200, 8),
)
_BYTE_FIELDS = frozenset(n for n, _, size in _LAYOUT if size > 8)
_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _struct() -> struct.Struct:
    """One little-endian struct for every field, reserved gaps skipped."""
    fmt, pos = "<", 0
    for name, off, size in _LAYOUT:
        fmt += f"{off - pos}x" if off > pos else ""
        fmt += f"{size}s" if name in _BYTE_FIELDS else _INT_CODES[size]
        pos = off + size
    return struct.Struct(fmt)


_STRUCT = _struct()
_NAMES = tuple(n for n, _, _ in _LAYOUT)
_CHECKS = tuple((n, size, 0 if n in _BYTE_FIELDS else 1 << (8 * size)) for n, _, size in _LAYOUT)
_V3_FIELDS = frozenset(("cpuid_fam_id", "cpuid_mod_id", "cpuid_step"))
_MIT_FIELDS = frozenset(("launch_mit_vector", "current_mit_vector"))
MIT_VERSION = 4  # see the module docstring
EXTENSION_OFFSET = 0x208
EXTENSION_SIZE = SIGNED_SIZE - EXTENSION_OFFSET
TCB_FIELDS = ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")


@dataclass(frozen=True)
class AttestationReport:
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    key_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    signature: bytes = field(repr=False)
    cpuid_fam_id: int = 0  # v3 and later
    cpuid_mod_id: int = 0
    cpuid_step: int = 0
    launch_mit_vector: int = 0  # v4 and later
    current_mit_vector: int = 0
    extension: bytes = field(default=b"", repr=False)  # versions > 5: 0x208..0x29F as found

    def __post_init__(self) -> None:
        for name, size, limit in _CHECKS:
            value = getattr(self, name)
            if limit:
                if not (type(value) is int and 0 <= value < limit):
                    le_bytes(value, size, structure=STRUCTURE, field=name)  # raises
            elif len(value) != size:
                check_len(STRUCTURE, name, value, size)
        check_len(STRUCTURE, "signature", self.signature, SIGNATURE_SIZE)
        if self.version < 2:
            raise Reader(STRUCTURE, b"").fail(
                "version", 0, "SNP reports start at version 2", self.version
            )
        v3, mit = self.version >= 3, self.version >= MIT_VERSION
        for names, present, since in ((_V3_FIELDS, v3, 3), (_MIT_FIELDS, mit, MIT_VERSION)):
            for name in names:
                if not present and getattr(self, name):
                    raise Reader(STRUCTURE, b"").fail(
                        name, None, f"exists from version {since} on", getattr(self, name)
                    )
        want = EXTENSION_SIZE if not self.known_version else 0
        check_len(STRUCTURE, "extension", self.extension, want)

    @property
    def known_version(self) -> bool:
        return self.version in KNOWN_VERSIONS

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(STRUCTURE, data)
        r.expect_size(REPORT_SIZE)
        version = r.u32("version", 0)
        if version < 2:
            raise r.fail("version", 0, "SNP reports start at version 2", version)
        r.zeros("reserved_4c", 0x4C, 4)
        if version >= 3:
            r.zeros("reserved_18b", 0x18B, 0x1A0 - 0x18B)
        else:
            r.zeros("reserved_188", 0x188, 0x1A0 - 0x188)
        r.zeros("reserved_1eb", 0x1EB, 1)
        r.zeros("reserved_1ef", 0x1EF, 1)
        values: dict[str, object] = dict(zip(_NAMES, _STRUCT.unpack_from(data), strict=True))
        if version in KNOWN_VERSIONS:
            start = EXTENSION_OFFSET if version >= MIT_VERSION else 0x1F8
            r.zeros("reserved_tail", start, SIGNED_SIZE - start)  # so v2–v4 fields read 0
        else:
            values["extension"] = data[EXTENSION_OFFSET:SIGNED_SIZE]
        values["signature"] = data[SIGNED_SIZE:]
        return cls(**values)  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        out = bytearray(REPORT_SIZE)
        for name, off, size in _LAYOUT:
            value = getattr(self, name)
            out[off : off + size] = (
                value if name in _BYTE_FIELDS else value.to_bytes(size, "little")
            )
        if self.extension:
            out[EXTENSION_OFFSET:SIGNED_SIZE] = self.extension
        out[SIGNED_SIZE:] = self.signature
        return bytes(out)

    def signed_bytes(self) -> bytes:
        """Bytes 0x000–0x29F, what the VCEK/VLEK signs."""
        return self.to_bytes()[:SIGNED_SIZE]

    # -- typed views ---------------------------------------------------------------------

    @cached
    def guest_policy(self) -> SnpPolicy:
        return SnpPolicy.from_int(self.policy)

    @cached
    def platform(self) -> PlatformInfo:
        return PlatformInfo.from_int(self.platform_info)

    @cached
    def key(self) -> KeyInfo:
        return KeyInfo.from_int(self.key_info)

    @property
    def ecdsa_signature(self) -> EcdsaSignature:
        """The signature as ECDSA P-384 (raises FormatError if its reserved part is not zero)."""
        return EcdsaSignature.from_bytes(self.signature)

    @cached
    def generation(self) -> Generation | None:
        """From CPUID (v3+); for v2 a chip id of 8 significant bytes means Turin, else None."""
        if self.version >= 3:
            return Generation.from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)
        if any(self.chip_id[:8]) and not any(self.chip_id[8:]):
            return Generation.TURIN
        return None

    def tcb(self, name: str, layout: TcbLayout | None = None) -> TcbVersion:
        """One of :data:`TCB_FIELDS` decoded in ``layout`` (default: the generation's,
        Milan/Genoa when the generation is unknown)."""
        if name not in TCB_FIELDS:
            raise ValueError(f"{name!r} is not a TCB field")
        if layout is None:
            gen = self.generation
            layout = gen.layout if gen else TcbLayout.MILAN
        key = (name, layout)
        found = self._tcbs.get(key)
        if found is None:
            found = self._tcbs[key] = TcbVersion.from_int(getattr(self, name), layout)
        return found

    @cached
    def _tcbs(self) -> dict[tuple[str, TcbLayout], TcbVersion]:
        return {}

    @property
    def current_version(self) -> tuple[int, int, int]:
        return (self.current_major, self.current_minor, self.current_build)

    @property
    def committed_version(self) -> tuple[int, int, int]:
        return (self.committed_major, self.committed_minor, self.committed_build)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: integers stay integers, byte strings become hex."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.hex() if isinstance(value, bytes) else value
        return out
