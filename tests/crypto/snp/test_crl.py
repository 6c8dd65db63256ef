"""The product CRL: signed by the ARK with PSS, current at the verification time, and the
revoked serials exposed; a CRL from another key, a stale one and one from the future fail."""

from __future__ import annotations

import datetime

import pytest

from sevlaunch.crypto.snp.crl import verify_crl
from sevlaunch.errors import ChainError, FormatError
from tests.snp_pki import AT, START, crl, pki, rsa_key


def test_good_crl() -> None:
    p = pki()
    verified = verify_crl(crl("arkMilan", "ARK-Milan", (0x10001, 7)), p.ark, at=AT)
    assert verified.is_revoked(p.ask)
    assert not verified.is_revoked(p.vcek)
    assert verified.revoked == frozenset({0x10001, 7})
    pem = b"-----BEGIN X509 CRL-----\n"  # PEM is accepted too
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = crl("arkMilan", "ARK-Milan")
    text = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    assert text.startswith(pem)
    assert verify_crl(text, p.ark, at=AT).revoked == frozenset()


def test_bad_crls() -> None:
    p = pki()
    with pytest.raises(ChainError, match="does not verify"):
        verify_crl(crl("arkMilan", "ARK-Milan", signer=rsa_key("mallory")), p.ark, at=AT)
    with pytest.raises(ChainError, match="issued by"):
        verify_crl(crl("arkMilan", "ARK-Genoa"), p.ark, at=AT)
    stale = crl("arkMilan", "ARK-Milan", next_=START + datetime.timedelta(days=30))
    with pytest.raises(ChainError, match="stale"):
        verify_crl(stale, p.ark, at=AT)
    with pytest.raises(ChainError, match="after the verification time"):
        verify_crl(crl("arkMilan", "ARK-Milan"), p.ark, at=START - datetime.timedelta(days=1))
    with pytest.raises(FormatError):
        verify_crl(b"not a crl", p.ark, at=AT)
