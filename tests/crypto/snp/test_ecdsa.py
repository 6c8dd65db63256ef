"""SNP ECDSA: every real report's signature verifies with r, s read little-endian; one flipped
bit anywhere in the signed range, or in r or s, makes it fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.crypto.snp.certs import load_certs
from sevlaunch.errors import CryptoError
from sevlaunch.formats.snp import AttestationReport, EcdsaSignature
from tests.snp_vectors import SIGNED, SnpVector


def leaf_key(vectors: Path, vector: SnpVector) -> ec.EllipticCurvePublicKey:
    leaf = next(c for c in load_certs(vector.vcek_bytes(vectors)) if c.common_name == "SEV-VCEK")
    key = leaf.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


@pytest.mark.parametrize("vector", SIGNED, ids=lambda v: v.name)
def test_real_signatures(vectors: Path, vector: SnpVector) -> None:
    report = AttestationReport.from_bytes(vector.report_bytes(vectors))
    ecdsa.verify(leaf_key(vectors, vector), report.ecdsa_signature, report.signed_bytes())


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_bit_flips_fail(vectors: Path, data: st.DataObject) -> None:
    vector = data.draw(st.sampled_from(SIGNED))
    raw = bytearray(vector.report_bytes(vectors))
    pos = data.draw(st.integers(0, 0x2A0 + 144 - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    sig = EcdsaSignature.from_bytes(bytes(raw[0x2A0:]))
    with pytest.raises(CryptoError):
        ecdsa.verify(leaf_key(vectors, vector), sig, bytes(raw[:0x2A0]))


def test_snp_key_round_trip() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    snp = ecdsa.to_snp_key(key.public_key())
    assert ecdsa.from_snp_key(snp).public_numbers() == key.public_key().public_numbers()
    sig = ecdsa.sign(key, b"data")
    ecdsa.verify(key.public_key(), sig, b"data")
    with pytest.raises(CryptoError, match="all zero"):
        ecdsa.verify(key.public_key(), EcdsaSignature(0, 0), b"data")
    with pytest.raises(CryptoError, match="P-384"):
        ecdsa.to_snp_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(CryptoError, match="not P-384"):
        ecdsa.from_snp_key(type(snp)(3, snp.qx, snp.qy))
    with pytest.raises(CryptoError, match="not a point"):
        ecdsa.from_snp_key(type(snp)(2, 1, 1))
