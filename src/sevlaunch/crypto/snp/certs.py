"""Loading AMD's SNP certificates and reading the VCEK/VLEK extensions (sev-snp.md §6.2).

Serial number 0: every VCEK and VLEK carries it, which RFC 5280 forbids, and pyca/cryptography
loads such a certificate with a ``CryptographyDeprecationWarning``. :func:`load_cert` silences
exactly that warning (category and message) for the one parse call, records the fact as
:attr:`SnpCert.serial_zero`, and the chain verifier accepts it only for a VCEK or VLEK leaf,
never for an ARK, ASK or ASVK. Should a future pyca refuse such certificates outright, the
error surfaces as a FormatError saying so rather than an unexplained ValueError.
"""

from __future__ import annotations

import binascii
import datetime
import hashlib
import warnings
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

from sevlaunch.errors import FormatError
from sevlaunch.formats._cached import cached
from sevlaunch.formats.snp.tcb import TcbLayout, TcbVersion

STRUCTURE = "AMD SNP certificate"
AMD_ARC = "1.3.6.1.4.1.3704.1"
_SERIAL_WARNING = r"Parsed a serial number which wasn't positive"
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True, eq=False)
class SnpCert:
    """One certificate with the facts the verifier asks for often, computed once (pyca
    builds a new Name object on every ``subject`` access)."""

    raw: bytes = field(repr=False)  # the DER as read (b"": re-encode it from ``cert``)
    cert: x509.Certificate = field(repr=False, compare=False)
    serial: int = 0  # read once, under the warning filter (pyca warns on every read of 0)

    @cached
    def der(self) -> bytes:
        return self.raw or self.cert.public_bytes(serialization.Encoding.DER)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SnpCert) and self.der == other.der

    def __hash__(self) -> int:
        return hash(self.der)

    @property
    def serial_zero(self) -> bool:
        return self.serial == 0

    @cached
    def tbs(self) -> bytes:
        """The signed TBSCertificate: the first element of the certificate's DER, as signed
        (pyca's ``tbs_certificate_bytes`` re-encodes it on every access)."""
        der = self.der
        _, start, _ = _tlv(der, 0)
        _, _, end = _tlv(der, start)
        return der[start:end]

    @cached
    def fields(self) -> TbsFields:
        return tbs_fields(self.tbs)

    @cached
    def raw_extensions(self) -> tuple[tuple[bytes, bytes], ...]:
        """(OID contents, extnValue contents) of every extension, as signed."""
        return tbs_extensions(self.tbs, self.fields.extensions_at)

    @property
    def issuer(self) -> bytes:
        """The issuer Name as DER, exactly as signed."""
        return self.fields.issuer

    @property
    def subject(self) -> bytes:
        return self.fields.subject

    @cached
    def common_name(self) -> str:
        return name_cn(self.subject)

    @cached
    def issuer_name(self) -> str:
        return name_cn(self.issuer)

    @cached
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, lowercase hex (how roots are pinned)."""
        return hashlib.sha256(self.der).hexdigest()

    @cached
    def public_key(self) -> CertificatePublicKeyTypes:
        """The subject's key; pyca parses it lazily, so a malformed SubjectPublicKeyInfo in a
        certificate that parsed is a FormatError here."""
        try:
            return self.cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise FormatError(STRUCTURE, "subjectPublicKeyInfo", f"unreadable: {exc}") from exc

    @cached
    def extensions(self) -> AmdExtensions:
        return amd_extensions(self)

    def to_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


# --- names straight from the DER --------------------------------------------------------------
# pyca builds a Name object tree on every ``subject`` access, which costs more than a
# signature check; the verifier only needs byte equality and the CN, so read them here.

_CN_OID = bytes.fromhex("0603550403")  # OBJECT IDENTIFIER 2.5.4.3 (commonName)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, contents start, end) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise FormatError(STRUCTURE, "der", "truncated DER element", offset=pos)
    tag, length, start = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > len(data):
            raise FormatError(STRUCTURE, "der", "bad DER length", offset=pos)
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    if start + length > len(data):
        raise FormatError(STRUCTURE, "der", "DER element overruns its container", offset=pos)
    return tag, start, start + length


@dataclass(frozen=True)
class TbsFields:
    """What the chain checks read from a TBSCertificate, as DER (or parsed times)."""

    signature_algorithm: bytes  # the AlgorithmIdentifier, as signed
    issuer: bytes
    not_before: datetime.datetime
    not_after: datetime.datetime
    subject: bytes
    extensions_at: int = 0  # where subjectPublicKeyInfo ends: the unique IDs and extensions


def tbs_fields(tbs: bytes) -> TbsFields:
    """Walk a TBSCertificate: version, serial, signature, issuer, validity, subject."""
    _, pos, _ = _tlv(tbs, 0)
    if tbs[pos] == 0xA0:  # [0] version
        pos = _tlv(tbs, pos)[2]
    pos = _tlv(tbs, pos)[2]  # serialNumber
    _, _, alg_end = _tlv(tbs, pos)
    algorithm = tbs[pos:alg_end]
    _, _, issuer_end = _tlv(tbs, alg_end)
    issuer = tbs[alg_end:issuer_end]
    _, start, validity_end = _tlv(tbs, issuer_end)
    tag1, s1, e1 = _tlv(tbs, start)
    tag2, s2, e2 = _tlv(tbs, e1)
    _, _, subject_end = _tlv(tbs, validity_end)
    return TbsFields(
        algorithm,
        issuer,
        _der_time(tag1, tbs[s1:e1]),
        _der_time(tag2, tbs[s2:e2]),
        tbs[validity_end:subject_end],
        _tlv(tbs, subject_end)[2],
    )


def tbs_extensions(tbs: bytes, pos: int) -> tuple[tuple[bytes, bytes], ...]:
    """The [3] extensions of a TBSCertificate from ``pos`` on (the unique IDs are skipped)."""
    out = []
    while pos < len(tbs):
        tag, start, end = _tlv(tbs, pos)
        if tag == 0xA3:
            _, item, items_end = _tlv(tbs, start)  # SEQUENCE OF Extension
            while item < items_end:
                _, field_pos, ext_end = _tlv(tbs, item)
                _, oid_start, oid_end = _tlv(tbs, field_pos)
                tag, value_start, value_end = _tlv(tbs, oid_end)
                if tag == 0x01:  # critical BOOLEAN
                    tag, value_start, value_end = _tlv(tbs, value_end)
                out.append((tbs[oid_start:oid_end], tbs[value_start:value_end]))
                item = ext_end
        pos = end
    return tuple(out)


def _der_time(tag: int, text: bytes) -> datetime.datetime:
    """UTCTime (YYMMDDHHMMSSZ, 1950–2049) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    try:
        if tag == 0x17 and len(text) == 13 and text.endswith(b"Z"):
            year = int(text[0:2])
            year += 1900 if year >= 50 else 2000
            rest = text[2:12]
        elif tag == 0x18 and len(text) == 15 and text.endswith(b"Z"):
            year, rest = int(text[0:4]), text[4:14]
        else:
            raise ValueError("not a UTC time")
        month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
        return datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError as exc:
        raise FormatError(STRUCTURE, "validity", f"bad DER time {text!r}: {exc}") from exc


def name_cn(name: bytes) -> str:
    """The first commonName of a DER Name, or "" without one."""
    at = name.find(_CN_OID)
    if at < 0:
        return ""
    _, start, end = _tlv(name, at + len(_CN_OID))
    return name[start:end].decode("utf-8", "replace")


def load_cert(data: bytes) -> SnpCert:
    """One certificate, DER or PEM."""
    if _PEM_BEGIN in data:
        certs = load_certs(data)
        if len(certs) != 1:
            raise FormatError(STRUCTURE, "pem", f"expected one certificate, found {len(certs)}")
        return certs[0]
    return _from_der(data)


_PEM_END = b"-----END CERTIFICATE-----"


def load_certs(data: bytes) -> tuple[SnpCert, ...]:
    """Every certificate of a PEM bundle (KDS ``cert_chain``: ASK or ASVK, then ARK), or the
    one certificate of a DER file.

    PEM blocks are decoded here so that each certificate keeps its original DER (pyca would
    re-encode it for every ``public_bytes`` call); text between blocks is ignored, as
    comments in published bundles are.
    """
    if _PEM_BEGIN not in data:
        return (_from_der(data),)
    blocks = []
    for chunk in data.split(_PEM_BEGIN)[1:]:
        body, end, _ = chunk.partition(_PEM_END)
        if not end:
            raise FormatError(STRUCTURE, "pem", "a BEGIN CERTIFICATE line without its END line")
        blocks.append(body)
    certs = []
    for index, body in enumerate(blocks):
        try:
            der = binascii.a2b_base64(body)
        except binascii.Error as exc:
            raise FormatError(
                STRUCTURE, "pem", f"certificate {index + 1}: bad base64: {exc}"
            ) from exc
        certs.append(_from_der(der))
    return tuple(certs)


def _from_der(data: bytes) -> SnpCert:
    try:
        with warnings.catch_warnings():
            # deliberate: AMD issues VCEKs/VLEKs with serial 0 (see the module docstring)
            warnings.filterwarnings("ignore", _SERIAL_WARNING, CryptographyDeprecationWarning)
            return _wrap(data, x509.load_der_x509_certificate(data))
    except (ValueError, x509.InvalidVersion) as exc:
        reason = str(exc)
        if "serial" in reason.lower():
            reason += " (AMD's VCEK/VLEK carry serial 0; this pyca version refuses it)"
        raise FormatError(STRUCTURE, "der", f"not an X.509 certificate: {reason}") from exc


def _wrap(der: bytes, cert: x509.Certificate) -> SnpCert:
    """Call under the serial-number warning filter: pyca parses the serial lazily."""
    return SnpCert(der, cert, cert.serial_number)


# --- the AMD extensions ----------------------------------------------------------------------


@dataclass(frozen=True)
class AmdExtensions:
    """The VCEK/VLEK extensions under 1.3.6.1.4.1.3704.1; None where a certificate lacks one."""

    struct_version: int | None = None
    product_name: str | None = None
    bl_spl: int | None = None
    tee_spl: int | None = None
    snp_spl: int | None = None
    ucode_spl: int | None = None
    fmc_spl: int | None = None
    hwid: bytes | None = None
    csp_id: str | None = None

    def tcb(self, layout: TcbLayout) -> TcbVersion | None:
        """The TCB the certificate was issued for, or None if an SPL is missing."""
        parts = (self.bl_spl, self.tee_spl, self.snp_spl, self.ucode_spl)
        if any(p is None for p in parts) or not all(0 <= (p or 0) <= 0xFF for p in parts):
            return None
        fmc = self.fmc_spl if layout is TcbLayout.TURIN else None
        if layout is TcbLayout.TURIN and (fmc is None or not 0 <= fmc <= 0xFF):
            return None
        return TcbVersion(
            layout, self.bl_spl or 0, self.tee_spl or 0, self.snp_spl or 0, self.ucode_spl or 0, fmc
        )

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.__dict__)
        out["hwid"] = self.hwid.hex() if self.hwid is not None else None
        return out


_INT_OIDS = {
    "1": "struct_version",
    "3.1": "bl_spl",
    "3.2": "tee_spl",
    "3.3": "snp_spl",
    "3.8": "ucode_spl",
    "3.9": "fmc_spl",
}


_AMD_OID = bytes.fromhex("2b060104019c7801")  # the contents of OID 1.3.6.1.4.1.3704.1


def amd_extensions(cert: SnpCert) -> AmdExtensions:
    """Decode the AMD extensions (DER INTEGER / IA5String inside the extension value; hwID raw
    bytes as KDS stores it, or a DER OCTET STRING as others write it), read from the TBS."""
    values: dict[str, object] = {}
    for oid_bytes, raw in cert.raw_extensions:
        if not oid_bytes.startswith(_AMD_OID) or any(b & 0x80 for b in oid_bytes[8:]):
            continue  # not ours (every AMD arc below .3704.1 is one byte)
        suffix = ".".join(str(b) for b in oid_bytes[8:])
        oid = f"{AMD_ARC}.{suffix}"
        if suffix in _INT_OIDS:
            values[_INT_OIDS[suffix]] = _der_integer(raw, oid)
        elif suffix == "2":
            values["product_name"] = _der_string(raw, oid)
        elif suffix == "5":
            values["csp_id"] = _der_string(raw, oid)
        elif suffix == "4":
            values["hwid"] = _hwid(raw)
    return AmdExtensions(**values)  # type: ignore[arg-type]


def _der_tlv(raw: bytes, oid: str) -> tuple[int, bytes]:
    """One DER TLV that spans ``raw`` exactly: (tag, contents)."""
    if len(raw) < 2:
        raise FormatError(STRUCTURE, oid, "extension value is too short", value=raw.hex())
    tag, length, pos = raw[0], raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(raw) < 2 + count:
            raise FormatError(STRUCTURE, oid, "bad DER length", value=raw.hex())
        length, pos = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
    if pos + length != len(raw):
        raise FormatError(STRUCTURE, oid, "DER length does not match the value", value=raw.hex())
    return tag, raw[pos:]


def _der_integer(raw: bytes, oid: str) -> int:
    tag, body = _der_tlv(raw, oid)
    if tag != 0x02 or not body:
        raise FormatError(STRUCTURE, oid, "expected a DER INTEGER", value=raw.hex())
    return int.from_bytes(body, "big", signed=True)


def _der_string(raw: bytes, oid: str) -> str:
    tag, body = _der_tlv(raw, oid)
    if tag not in (0x16, 0x0C, 0x13):  # IA5String, UTF8String, PrintableString
        raise FormatError(STRUCTURE, oid, "expected a DER string", value=raw.hex())
    return body.decode("utf-8", "replace")


def _hwid(raw: bytes) -> bytes:
    """KDS stores the 64 (Turin: 8) bytes raw; accept a DER OCTET STRING wrapping them too."""
    if len(raw) in (66, 10) and raw[0] == 0x04 and raw[1] == len(raw) - 2:
        return raw[2:]
    return raw
