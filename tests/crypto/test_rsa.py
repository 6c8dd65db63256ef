"""RSA-PSS as AMD uses it: the real ASK→CEK signature verifies, salt length is enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.crypto import rsa
from sevlaunch.errors import CryptoError
from sevlaunch.formats import AmdCert, SevCert


@pytest.fixture(scope="module")
def key() -> pyca_rsa.RSAPrivateKey:
    return pyca_rsa.generate_private_key(65537, 2048)


def test_real_cek_signature(vectors: Path) -> None:
    ask = AmdCert.from_bytes((vectors / "amd" / "rome_ask.cert").read_bytes())
    cek = SevCert.from_bytes((vectors / "platforms" / "rome" / "cek.cert").read_bytes())
    public = rsa.public_key(ask.modulus, ask.pub_exp)
    rsa.verify_pss(public, cek.sig1.rsa_s, cek.signed_bytes(), "sha384")
    with pytest.raises(CryptoError, match="does not verify"):
        rsa.verify_pss(public, cek.sig1.rsa_s, cek.signed_bytes(), "sha256")


def test_sign_verify_round_trip(key: pyca_rsa.RSAPrivateKey) -> None:
    public = key.public_key()
    for hash_name in ("sha256", "sha384"):
        sig = rsa.sign_pss(key, b"data", hash_name)
        rsa.verify_pss(public, sig, b"data", hash_name)
        with pytest.raises(CryptoError):
            rsa.verify_pss(public, sig, b"datA", hash_name)


def test_salt_length_must_equal_the_hash_length(key: pyca_rsa.RSAPrivateKey) -> None:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=20)
    sig = int.from_bytes(key.sign(b"data", pss, hashes.SHA256()), "big")
    with pytest.raises(CryptoError):
        rsa.verify_pss(key.public_key(), sig, b"data", "sha256")


def test_oversized_signature_and_bad_keys(key: pyca_rsa.RSAPrivateKey) -> None:
    with pytest.raises(CryptoError, match="larger than the modulus"):
        rsa.verify_pss(key.public_key(), 1 << 2048, b"data", "sha256")
    n = key.public_key().public_numbers().n
    with pytest.raises(CryptoError, match="not a valid RSA public key"):
        rsa.public_key(n, 65536)
    with pytest.raises(CryptoError, match="not a valid RSA public key"):
        rsa.public_key(n, 1)
    with pytest.raises(CryptoError, match="not a valid RSA public key"):
        rsa.public_key(0, 65537)
