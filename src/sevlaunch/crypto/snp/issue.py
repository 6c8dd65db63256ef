"""Issuing AMD-shaped SNP certificates and CRLs, for an emulated AMD (sev-snp.md §6.1–6.4).

The shapes follow AMD's: subject and issuer OU=Engineering, C=US, L=Santa Clara, ST=CA,
O=Advanced Micro Devices, CN=...; RSASSA-PSS SHA-384 (MGF1-SHA-384, salt 48) for every
signature; ARK self-signed with keyUsage certSign|cRLSign, ASK/ASVK CA with path length 0
and AMD's CRL distribution point; VCEK/VLEK with an EC P-384 key and the AMD extensions under
1.3.6.1.4.1.3704.1 as DER INTEGER / IA5String, hwID as raw bytes.

One deliberate difference: AMD gives every VCEK serial number 0; pyca/cryptography refuses to
issue that, and an emulated key server wants to revoke individual VCEKs in tests, so the
caller names a positive serial. Validity is a parameter (pure: no clock here).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sevlaunch.crypto.snp.chain import PSS, SignerKind
from sevlaunch.formats.snp.tcb import Generation, TcbVersion

AMD_ARC = "1.3.6.1.4.1.3704.1."
KDS = "https://kdsintf.amd.com"


@dataclass(frozen=True)
class Validity:
    not_before: datetime.datetime
    not_after: datetime.datetime


def amd_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _builder(
    subject: str,
    issuer: str,
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    serial: int,
    validity: Validity,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(amd_name(subject))
        .issuer_name(amd_name(issuer))
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
    )


def _crl_point(product: Generation, kind: SignerKind) -> x509.CRLDistributionPoints:
    path = "vcek" if kind is SignerKind.VCEK else "vlek"
    uri = x509.UniformResourceIdentifier(f"{KDS}/{path}/v1/{product.value}/crl")
    return x509.CRLDistributionPoints([x509.DistributionPoint([uri], None, None, None)])


def _key_usage(*, crl_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


#: AMD's serial numbers: ARK 0x10000/0x20000/0x30000, ASK and ASVK per generation.
ARK_SERIALS = {Generation.MILAN: 0x10000, Generation.GENOA: 0x20000, Generation.TURIN: 0x30000}
ASK_SERIALS = {Generation.MILAN: 0x10001, Generation.GENOA: 0x20002, Generation.TURIN: 0x30001}
ASVK_SERIALS = {Generation.MILAN: 0x10101, Generation.GENOA: 0x20101, Generation.TURIN: 0x30101}


def issue_ark(key: rsa.RSAPrivateKey, product: Generation, validity: Validity) -> bytes:
    """The self-signed ARK-<product>, DER."""
    cn = f"ARK-{product.value}"
    builder = (
        _builder(cn, cn, key.public_key(), ARK_SERIALS[product], validity)
        .add_extension(_key_usage(crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_crl_point(product, SignerKind.VCEK), critical=False)
    )
    return _der(builder.sign(key, hashes.SHA384(), rsa_padding=PSS))


def issue_intermediate(
    key: rsa.RSAPublicKey,
    ark: rsa.RSAPrivateKey,
    product: Generation,
    kind: SignerKind,
    validity: Validity,
) -> bytes:
    """The ASK (VCEK chain) or ASVK (VLEK chain) signed by the ARK, DER."""
    serials = ASK_SERIALS if kind is SignerKind.VCEK else ASVK_SERIALS
    ark_id = x509.SubjectKeyIdentifier.from_public_key(ark.public_key())
    builder = (
        _builder(
            kind.intermediate_cn(product), f"ARK-{product.value}", key, serials[product], validity
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ark_id.digest, None, None), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(crl_sign=False), critical=True)
        .add_extension(_crl_point(product, kind), critical=False)
    )
    return _der(builder.sign(ark, hashes.SHA384(), rsa_padding=PSS))


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return bytes((0x02, len(body))) + body


def _der_ia5(text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > 127:
        raise ValueError("IA5String too long for a short-form length")
    return bytes((0x16, len(raw))) + raw


def _ext(suffix: str, value: bytes) -> x509.Extension[x509.UnrecognizedExtension]:
    oid = x509.ObjectIdentifier(AMD_ARC + suffix)
    return x509.Extension(oid, False, x509.UnrecognizedExtension(oid, value))


def amd_extensions(
    product: Generation,
    tcb: TcbVersion,
    *,
    hwid: bytes | None = None,
    csp_id: str | None = None,
    product_name: str | None = None,
) -> tuple[x509.Extension[x509.UnrecognizedExtension], ...]:
    """The VCEK (``hwid``) or VLEK (``csp_id``) extensions as KDS writes them: Milan/Genoa
    carry spl_4..7, Turin only 5..7 plus fmcSPL."""
    turin = product is Generation.TURIN
    exts = [
        _ext("1", _der_int(1 if turin else 0)),
        _ext("2", _der_ia5(product_name or product.value)),
        _ext("3.1", _der_int(tcb.bootloader)),
        _ext("3.2", _der_int(tcb.tee)),
    ]
    exts += [_ext(f"3.{n}", _der_int(0)) for n in ((5, 6, 7) if turin else (4, 5, 6, 7))]
    exts += [_ext("3.3", _der_int(tcb.snp)), _ext("3.8", _der_int(tcb.microcode))]
    if turin:
        exts.append(_ext("3.9", _der_int(tcb.fmc or 0)))
    if hwid is not None:
        exts.append(_ext("4", hwid))
    if csp_id is not None:
        exts.append(_ext("5", _der_ia5(csp_id)))
    return tuple(exts)


def issue_leaf(
    key: ec.EllipticCurvePublicKey,
    signer: rsa.RSAPrivateKey,
    product: Generation,
    kind: SignerKind,
    extensions: Iterable[x509.Extension[x509.UnrecognizedExtension]],
    *,
    serial: int,
    validity: Validity,
) -> bytes:
    """A VCEK (signed by the ASK) or VLEK (signed by the ASVK), DER."""
    builder = _builder(kind.leaf_cn, kind.intermediate_cn(product), key, serial, validity)
    for ext in extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return _der(builder.sign(signer, hashes.SHA384(), rsa_padding=PSS))


def issue_crl(
    ark: rsa.RSAPrivateKey,
    product: Generation,
    revoked: Iterable[tuple[int, datetime.datetime]],
    *,
    last_update: datetime.datetime,
    next_update: datetime.datetime,
) -> bytes:
    """The product CRL signed by the ARK, listing ``(serial, revocation date)`` pairs, DER."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(amd_name(f"ARK-{product.value}"))
        .last_update(last_update)
        .next_update(next_update)
    )
    for serial, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ark, hashes.SHA384(), rsa_padding=PSS)
    return crl.public_bytes(serialization.Encoding.DER)
