"""P-384 ECDSA/ECDH with SEV encodings: real signatures verify, keys round-trip, ECDH agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.crypto import ecc
from sevlaunch.errors import CryptoError
from sevlaunch.formats import Algorithm, EccCurve, EccPublicKey, SevCert, Usage


def _cert(vectors: Path, name: str) -> SevCert:
    return SevCert.from_bytes((vectors / "platforms" / "rome" / f"{name}.cert").read_bytes())


def test_real_pdh_signature_verifies_with_the_pek(vectors: Path) -> None:
    pdh, pek = _cert(vectors, "pdh"), _cert(vectors, "pek")
    ecc.verify(pek.ecc_key, pdh.sig1, pdh.signed_bytes(), "sha256")
    with pytest.raises(CryptoError, match="does not verify"):
        ecc.verify(pek.ecc_key, pdh.sig1, pdh.signed_bytes(), "sha384")
    with pytest.raises(CryptoError, match="does not verify"):
        ecc.verify(pek.ecc_key, pdh.sig1, pdh.signed_bytes()[:-1] + b"\1", "sha256")


def test_real_key_round_trips_through_pyca(vectors: Path) -> None:
    key = _cert(vectors, "pdh").ecc_key
    assert ecc.from_public_key(ecc.to_public_key(key)) == key


def test_point_off_the_curve_is_a_crypto_error() -> None:
    with pytest.raises(CryptoError, match="not a valid curve point"):
        ecc.to_public_key(EccPublicKey(EccCurve.P384, 1, 1))


@given(st.integers(min_value=1, max_value=2**200), st.binary(max_size=64))
@settings(max_examples=20, deadline=None)
def test_sign_verify_round_trip(seed: int, data: bytes) -> None:
    key = ecc.generate_p384(seed)
    public = ecc.from_public_key(key.public_key())
    sig = ecc.sign(key, data, Usage.PEK, Algorithm.ECDSA_SHA256)
    assert (sig.usage, sig.algorithm) == (Usage.PEK, Algorithm.ECDSA_SHA256)
    assert sig.value[144:] == bytes(512 - 144)
    ecc.verify(public, sig, data, "sha256")
    with pytest.raises(CryptoError):
        ecc.verify(public, sig, data + b"x", "sha256")


def test_ecdh_agrees_and_is_48_bytes() -> None:
    a, b = ecc.generate_p384(1), ecc.generate_p384(2)
    z_ab = ecc.ecdh(a, ecc.from_public_key(b.public_key()))
    z_ba = ecc.ecdh(b, ecc.from_public_key(a.public_key()))
    assert z_ab == z_ba
    assert len(z_ab) == 48
    # Z is the x-coordinate big-endian, unmodified (what firmware and tools feed the KDF).
    shared = b.public_key().public_numbers()
    point = ecc.ecdh(a, EccPublicKey(EccCurve.P384, shared.x, shared.y))
    assert point == z_ab


def test_private_key_bytes_round_trip() -> None:
    key = ecc.generate_p384(12345)
    secret = ecc.private_to_bytes(key)
    assert len(secret) == 48
    assert ecc.private_to_bytes(ecc.private_from_bytes(secret)) == secret
    with pytest.raises(CryptoError):
        ecc.private_from_bytes(bytes(48))


def test_deterministic_keys_are_deterministic() -> None:
    assert ecc.private_to_bytes(ecc.generate_p384(7)) == ecc.private_to_bytes(ecc.generate_p384(7))
    assert ecc.generate_p384().key_size == 384
