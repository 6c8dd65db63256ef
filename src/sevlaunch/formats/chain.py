"""Certificate chain files as sevctl, AMD and the firmware lay them out.

- platform chain (sevctl ``export``): PDH ‖ PEK ‖ OCA ‖ CEK, optionally ‖ ASK ‖ ARK
  (``export --full``);
- AMD CA file (``ask_ark_<gen>.cert``): ASK ‖ ARK;
- PDH_CERT_EXPORT's certificate buffer: PEK ‖ OCA ‖ CEK (3 × 0x824 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from sevlaunch.errors import FormatError
from sevlaunch.formats import sevcert
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.sevcert import SevCert, Usage

_N = sevcert.SIZE


def _expect_usage(structure: str, name: str, index: int, cert: SevCert, usage: Usage) -> None:
    if cert.usage is not usage:
        raise FormatError(
            structure,
            name,
            f"certificate {index} should be the {usage.name} (usage {int(usage):#x}) but has "
            f"usage {cert.usage.name} ({int(cert.usage):#x}); is the file in PDH, PEK, OCA, CEK order?",
            offset=index * _N + 8,
            value=cert.usage,
        )


def _sev_certs(structure: str, data: bytes, names: tuple[str, ...]) -> list[SevCert]:
    certs = []
    for i, name in enumerate(names):
        try:
            cert = SevCert.from_bytes(data[i * _N : (i + 1) * _N])
        except FormatError as exc:
            off = None if exc.offset is None else exc.offset + i * _N
            raise FormatError(
                structure, f"{name}.{exc.field}", exc.reason, offset=off, value=exc.value
            ) from exc
        _expect_usage(structure, name, i, cert, Usage[name.upper()])
        certs.append(cert)
    return certs


@dataclass(frozen=True)
class CaChain:
    """AMD's CA file: the ASK then the ARK."""

    ask: AmdCert
    ark: AmdCert

    STRUCTURE = "AMD CA file (ASK ‖ ARK)"

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        try:
            ask, rest = AmdCert.parse_prefix(data)
        except FormatError as exc:
            raise cls._error("ask", exc, 0) from exc
        try:
            ark = AmdCert.from_bytes(rest, allow_unsigned=True)
        except FormatError as exc:
            raise cls._error("ark", exc, len(data) - len(rest)) from exc
        if ask.key_usage is not Usage.ASK or ark.key_usage is not Usage.ARK:
            raise FormatError(
                cls.STRUCTURE,
                "key_usage",
                f"expected ASK then ARK, got {ask.key_usage.name} then {ark.key_usage.name}",
                value=(ask.key_usage, ark.key_usage),
            )
        return cls(ask, ark)

    def to_bytes(self) -> bytes:
        return self.ask.to_bytes() + self.ark.to_bytes()

    @classmethod
    def _error(cls, name: str, exc: FormatError, base: int) -> FormatError:
        """Re-raise a certificate's error with the file's offsets and the certificate named."""
        off = None if exc.offset is None else exc.offset + base
        return FormatError(
            cls.STRUCTURE, f"{name}.{exc.field}", exc.reason, offset=off, value=exc.value
        )


@dataclass(frozen=True)
class CertExport:
    """PDH_CERT_EXPORT's certificate buffer: PEK ‖ OCA ‖ CEK."""

    pek: SevCert
    oca: SevCert
    cek: SevCert

    STRUCTURE = "PDH_CERT_EXPORT certificate chain (PEK ‖ OCA ‖ CEK)"
    SIZE = 3 * _N

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != cls.SIZE:
            raise FormatError(
                cls.STRUCTURE,
                "length",
                f"expected {cls.SIZE} bytes, got {len(data)}",
                value=len(data),
            )
        pek, oca, cek = _sev_certs(cls.STRUCTURE, data, ("pek", "oca", "cek"))
        return cls(pek, oca, cek)

    def to_bytes(self) -> bytes:
        return self.pek.to_bytes() + self.oca.to_bytes() + self.cek.to_bytes()


@dataclass(frozen=True)
class PlatformChain:
    """A platform's chain: PDH, PEK, OCA, CEK and, when exported ``--full``, AMD's CA."""

    pdh: SevCert
    pek: SevCert
    oca: SevCert
    cek: SevCert
    ca: CaChain | None = None

    STRUCTURE = "platform certificate chain (PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK])"

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) < 4 * _N:
            raise FormatError(
                cls.STRUCTURE,
                "length",
                f"expected at least {4 * _N} bytes (four SEV certificates), got {len(data)}",
                value=len(data),
            )
        pdh, pek, oca, cek = _sev_certs(cls.STRUCTURE, data[: 4 * _N], ("pdh", "pek", "oca", "cek"))
        rest = data[4 * _N :]
        ca = None
        if rest:
            try:
                ca = CaChain.from_bytes(rest)
            except FormatError as exc:
                off = None if exc.offset is None else exc.offset + 4 * _N
                raise FormatError(
                    cls.STRUCTURE, f"ca.{exc.field}", exc.reason, offset=off, value=exc.value
                ) from exc
        return cls(pdh, pek, oca, cek, ca)

    @classmethod
    def from_export(cls, pdh: SevCert, export: CertExport) -> Self:
        return cls(pdh, export.pek, export.oca, export.cek)

    def to_bytes(self) -> bytes:
        body = b"".join(c.to_bytes() for c in (self.pdh, self.pek, self.oca, self.cek))
        return body + (self.ca.to_bytes() if self.ca else b"")

    def export(self) -> CertExport:
        return CertExport(self.pek, self.oca, self.cek)
