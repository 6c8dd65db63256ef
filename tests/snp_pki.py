"""A synthetic AMD-shaped SNP PKI for tests: ARK → ASK → VCEK and ARK → ASVK → VLEK, signed
RSA-PSS SHA-384 (salt 48) like AMD's, with the AMD extensions, and reports signed by the leaf.

RSA-2048 keeps key generation fast; nothing in the chain rules depends on the key size. The
ARK is trusted through ``trusted_arks`` (its fingerprint), since it is not one of AMD's.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.crypto.snp.certs import SnpCert, load_cert
from sevlaunch.formats.snp import AttestationReport, Generation, TcbVersion

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
AT = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
AMD = "1.3.6.1.4.1.3704.1."


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return bytes((0x02, len(body))) + body


def der_ia5(text: str) -> bytes:
    return bytes((0x16, len(text))) + text.encode()


def _ext(suffix: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(AMD + suffix), value)


def issue(
    subject: str,
    issuer: str,
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    signer: rsa.RSAPrivateKey,
    *,
    serial: int = 1,
    extensions: tuple[x509.UnrecognizedExtension, ...] = (),
    ca: bool = False,
    not_after: datetime.datetime | None = None,
    padding_: padding.PSS | padding.PKCS1v15 = PSS,
) -> SnpCert:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(START)
        .not_valid_after(not_after or START + datetime.timedelta(days=3650))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    cert = builder.sign(signer, hashes.SHA384(), rsa_padding=padding_)
    return load_cert(cert.public_bytes(serialization.Encoding.DER))


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@functools.cache
def ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@dataclass(frozen=True)
class Tcb:
    bl: int = 3
    tee: int = 0
    snp: int = 8
    ucode: int = 115
    fmc: int = 0


def vcek_extensions(
    product: Generation, tcb: Tcb, hwid: bytes | None, csp_id: str | None = None
) -> tuple[x509.UnrecognizedExtension, ...]:
    turin = product is Generation.TURIN
    exts = [
        _ext("1", der_int(1 if turin else 0)),
        _ext("2", der_ia5(product.value)),
        _ext("3.1", der_int(tcb.bl)),
        _ext("3.2", der_int(tcb.tee)),
        _ext("3.3", der_int(tcb.snp)),
        _ext("3.8", der_int(tcb.ucode)),
    ]
    if turin:
        exts.append(_ext("3.9", der_int(tcb.fmc)))
    if hwid is not None:
        exts.append(_ext("4", hwid))
    if csp_id is not None:
        exts.append(_ext("5", der_ia5(csp_id)))
    return tuple(exts)


@dataclass(frozen=True)
class Pki:
    product: Generation
    ark: SnpCert
    ask: SnpCert
    asvk: SnpCert
    vcek: SnpCert
    vlek: SnpCert

    @property
    def trusted(self) -> dict[str, Generation]:
        return {self.ark.fingerprint: self.product}

    def ca_pem(self, vlek: bool = False) -> bytes:
        return (self.asvk if vlek else self.ask).to_pem() + self.ark.to_pem()


CHIP_ID = bytes(range(1, 65))
CSP = "CN=cloud.example"


def chip_id_for(product: Generation) -> bytes:
    return CHIP_ID[:8] + bytes(56) if product is Generation.TURIN else CHIP_ID


@functools.cache
def pki(product: Generation = Generation.MILAN, tcb: Tcb = Tcb()) -> Pki:
    p = product.value
    ark_key, ask_key, asvk_key = rsa_key(f"ark{p}"), rsa_key(f"ask{p}"), rsa_key(f"asvk{p}")
    ark = issue(f"ARK-{p}", f"ARK-{p}", ark_key.public_key(), ark_key, serial=0x10000, ca=True)
    ask = issue(f"SEV-{p}", f"ARK-{p}", ask_key.public_key(), ark_key, serial=0x10001, ca=True)
    asvk = issue(
        f"SEV-VLEK-{p}", f"ARK-{p}", asvk_key.public_key(), ark_key, serial=0x10101, ca=True
    )
    hwid = chip_id_for(product)[: product.hwid_size]
    vcek = issue(
        "SEV-VCEK",
        f"SEV-{p}",
        ec_key(f"vcek{p}").public_key(),
        ask_key,
        extensions=vcek_extensions(product, tcb, hwid),
    )
    vlek = issue(
        "SEV-VLEK",
        f"SEV-VLEK-{p}",
        ec_key(f"vlek{p}").public_key(),
        asvk_key,
        extensions=vcek_extensions(product, tcb, None, CSP),
    )
    return Pki(product, ark, ask, asvk, vcek, vlek)


_CPUID = {
    Generation.MILAN: (0x19, 0x01),
    Generation.GENOA: (0x19, 0x11),
    Generation.TURIN: (0x1A, 0x02),
}


def make_report(
    product: Generation = Generation.MILAN,
    tcb: Tcb = Tcb(),
    *,
    vlek: bool = False,
    **changes: object,
) -> AttestationReport:
    """A v3 report of ``product`` at ``tcb`` everywhere, signed by the synthetic leaf."""
    value = TcbVersion(
        product.layout,
        tcb.bl,
        tcb.tee,
        tcb.snp,
        tcb.ucode,
        tcb.fmc if product is Generation.TURIN else None,
    ).to_int()
    fam, mod = _CPUID[product]
    base = AttestationReport(
        version=3,
        guest_svn=0,
        policy=0x30000,
        family_id=bytes(16),
        image_id=bytes(16),
        vmpl=0,
        signature_algo=1,
        current_tcb=value,
        platform_info=0x25,
        key_info=4 if vlek else 0,
        report_data=bytes(range(64)),
        measurement=bytes(range(48)),
        host_data=bytes(32),
        id_key_digest=bytes(48),
        author_key_digest=bytes(48),
        report_id=bytes(32),
        report_id_ma=b"\xff" * 32,
        reported_tcb=value,
        chip_id=chip_id_for(product),
        committed_tcb=value,
        current_build=4,
        current_minor=55,
        current_major=1,
        committed_build=4,
        committed_minor=55,
        committed_major=1,
        launch_tcb=value,
        signature=bytes(512),
        cpuid_fam_id=fam,
        cpuid_mod_id=mod,
        cpuid_step=1,
    )
    return sign_report(dataclasses.replace(base, **changes), product, tcb, vlek=vlek)  # type: ignore[arg-type]


def sign_report(
    report: AttestationReport,
    product: Generation = Generation.MILAN,
    tcb: Tcb = Tcb(),
    *,
    vlek: bool = False,
) -> AttestationReport:
    key = ec_key(f"{'vlek' if vlek else 'vcek'}{product.value}")
    pki(product, tcb)  # the certificate for this key exists
    sig = ecdsa.sign(key, report.signed_bytes())
    return dataclasses.replace(report, signature=sig.to_bytes())


def crl(
    ark_label: str,
    issuer: str,
    revoked: tuple[int, ...] = (),
    *,
    last: datetime.datetime = START,
    next_: datetime.datetime | None = None,
    signer: rsa.RSAPrivateKey | None = None,
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name(issuer))
        .last_update(last)
        .next_update(next_ or last + datetime.timedelta(days=3650))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
        )
    key = signer or rsa_key(ark_label)
    return builder.sign(key, hashes.SHA384(), rsa_padding=PSS).public_bytes(
        serialization.Encoding.DER
    )
