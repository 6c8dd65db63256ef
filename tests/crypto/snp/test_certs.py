"""Loading AMD's SNP certificates: serial-0 VCEKs load without a warning escaping, the AMD
extensions decode (Milan-B0 SPLs and 64-byte hwID; Turin's fmcSPL, no spl_4 and 8-byte hwID;
both hwID encodings of trustee's negative vectors)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from sevlaunch.crypto.snp.certs import amd_extensions, load_cert, load_certs
from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import TcbLayout

SNP = "snp"


def read(vectors: Path, rel: str) -> bytes:
    return (vectors / SNP / rel).read_bytes()


def test_serial_zero_loads_silently(vectors: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = load_cert(read(vectors, "virtee-sev/tests/vcek_milan.der"))
        assert cert.serial_zero
        assert cert.common_name == "SEV-VCEK"
        assert cert.issuer_name == "SEV-Milan"
    # the filter was scoped to the parse: pyca still warns for anyone else
    with pytest.warns(CryptographyDeprecationWarning, match="serial number"):
        _ = x509.load_der_x509_certificate(cert.der).serial_number


def test_milan_extensions(vectors: Path) -> None:
    ext = amd_extensions(load_cert(read(vectors, "virtee-sev/tests/vcek_milan.der")))
    assert ext.product_name == "Milan-B0"
    assert ext.struct_version == 0
    assert (ext.bl_spl, ext.tee_spl, ext.snp_spl, ext.ucode_spl) == (3, 0, 8, 0x73)
    assert ext.fmc_spl is None
    assert ext.hwid is not None
    assert len(ext.hwid) == 64
    tcb = ext.tcb(TcbLayout.MILAN)
    assert tcb is not None
    assert tcb.to_bytes() == bytes.fromhex("0300000000000873")
    assert ext.tcb(TcbLayout.TURIN) is None  # no fmcSPL


def test_turin_extensions(vectors: Path) -> None:
    cert = load_cert(read(vectors, "virtee-sev/tests/vcek_turin.der"))
    ext = amd_extensions(cert)
    assert ext.struct_version == 1
    assert ext.product_name == "Turin"
    assert ext.fmc_spl == 0
    assert ext.ucode_spl == 9
    assert ext.hwid == bytes.fromhex("1e550a8ee5cf9f4d")
    oids = {e.oid.dotted_string for e in cert.cert.extensions}
    assert "1.3.6.1.4.1.3704.1.3.4" not in oids
    assert ext.tcb(TcbLayout.TURIN) is not None


def test_two_byte_ucode(vectors: Path) -> None:
    bundle = load_certs(read(vectors, "routex-client-lua/tests-data/vcek-chain-milan.pem"))
    assert [c.common_name for c in bundle] == ["SEV-VCEK", "SEV-Milan", "ARK-Milan"]
    assert amd_extensions(bundle[0]).ucode_spl == 0xDB


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_both_hwid_encodings(vectors: Path, name: str) -> None:
    ext = amd_extensions(load_cert(read(vectors, f"trustee/test_data/snp/{name}")))
    assert ext.hwid == bytes(range(64))


def test_pem_bundles(vectors: Path) -> None:
    certs = load_certs(read(vectors, "trustee/src_snp/milan_ask_ark_asvk.pem"))
    assert [c.common_name for c in certs] == ["SEV-Milan", "ARK-Milan", "SEV-VLEK-Milan"]
    assert not any(c.serial_zero for c in certs)
    assert certs[1].fingerprint.startswith("69d063b4")
    with pytest.raises(FormatError, match="expected one certificate"):
        load_cert(read(vectors, "trustee/src_snp/milan_ask_ark_asvk.pem"))
    with pytest.raises(FormatError, match=r"not an X\.509 certificate"):
        load_cert(b"\x30\x03\x02\x01\x00")
    assert load_cert(certs[0].to_pem()) == certs[0]


def test_tbs_fields_match_pyca(vectors: Path) -> None:
    """Names, validity (UTCTime and, past 2049, GeneralizedTime) read from the DER agree
    with pyca's parse; a malformed time is a FormatError."""
    import datetime

    from sevlaunch.crypto.snp.certs import _der_time
    from tests.snp_pki import ec_key, issue, rsa_key

    late = datetime.datetime(2051, 6, 1, 12, 30, 5, tzinfo=datetime.UTC)
    synthetic = issue(
        "SEV-VCEK", "SEV-Milan", ec_key("t").public_key(), rsa_key("t"), not_after=late
    )
    real = load_cert(read(vectors, "virtee-sev/tests/vcek_turin.der"))
    for cert in (synthetic, real):
        assert cert.fields.not_before == cert.cert.not_valid_before_utc
        assert cert.fields.not_after == cert.cert.not_valid_after_utc
        assert cert.subject == cert.cert.subject.public_bytes()
        assert cert.issuer == cert.cert.issuer.public_bytes()
    assert synthetic.fields.not_after == late
    with pytest.raises(FormatError, match="bad DER time"):
        _der_time(0x17, b"99134500000Z")
    with pytest.raises(FormatError, match="bad DER time"):
        _der_time(0x04, b"20510601123005Z")


def test_tbs_is_the_signed_bytes(vectors: Path) -> None:
    for rel in ("virtee-sev/tests/vcek_milan.der", "go-sev-guest/trust/ask_ark_genoa.pem"):
        for cert in load_certs(read(vectors, rel)):
            assert cert.tbs == cert.cert.tbs_certificate_bytes


@pytest.mark.parametrize(
    "rel",
    [
        "virtee-sev/tests/vcek_milan.der",
        "virtee-sev/tests/vcek_turin.der",
        "trustee/test_data/snp/test-vcek-invalid-new.der",
        "go-sev-guest/trust/ask_ark_milan.pem",
    ],
)
def test_extensions_read_from_the_tbs_match_pyca(vectors: Path, rel: str) -> None:
    for cert in load_certs(read(vectors, rel)):
        ours = [(_dotted(oid), value) for oid, value in cert.raw_extensions]
        theirs = list(cert.cert.extensions)
        assert [oid for oid, _ in ours] == [e.oid.dotted_string for e in theirs]
        for (_, value), ext in zip(ours, theirs, strict=True):
            if isinstance(ext.value, x509.UnrecognizedExtension):  # pyca keeps these raw
                assert value == ext.value.value


def _dotted(oid: bytes) -> str:
    """OID contents to dotted form (test helper: first byte 40*a+b, then base-128 arcs)."""
    arcs, value = [oid[0] // 40, oid[0] % 40], 0
    for byte in oid[1:]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def test_an_unreadable_subject_key_is_a_format_error() -> None:
    """pyca reads the key only when asked: a certificate whose SubjectPublicKeyInfo is broken
    parses, and its key is then a FormatError, not pyca's ValueError (a fuzzer found it)."""
    from sevlaunch.formats.snp.tcb import Generation
    from tests.snp_pki import pki

    der = bytearray(pki(Generation.MILAN).ark.der)
    spki = der.find(bytes.fromhex("06092a864886f70d010101"))  # rsaEncryption OID
    assert spki > 0
    der[spki + 2] ^= 0x11  # the OID names another algorithm; the key bits stay RSA's
    cert = load_cert(bytes(der))
    with pytest.raises(FormatError, match="subjectPublicKeyInfo"):
        _ = cert.public_key
