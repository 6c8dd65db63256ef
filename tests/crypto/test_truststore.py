"""The trust store pins AMD's ARKs by key id *and* key: a forged ARK carrying AMD's key id is
refused, other roots only count when the user names them, and nobody can name an impostor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.crypto import AMD_ROOTS, TrustStore, fingerprint, verify_ca
from sevlaunch.errors import UntrustedRootError
from sevlaunch.formats import AmdCert, CaChain
from tests.strategies import self_signed_ark, sign_amd

ROME_KEY_ID = bytes.fromhex("e6002122fb58419399d15fee7b131351")


def _ark(vectors: Path, generation: str) -> AmdCert:
    return AmdCert.from_bytes((vectors / "amd" / f"{generation}_ark.cert").read_bytes())


@pytest.fixture(scope="module")
def rsa4096() -> pyca_rsa.RSAPrivateKey:
    return pyca_rsa.generate_private_key(65537, 4096)


@pytest.fixture(scope="module")
def forged_rome(rsa4096: pyca_rsa.RSAPrivateKey) -> AmdCert:
    """A well-formed, validly self-signed ARK with Rome's key id and somebody else's key."""
    return self_signed_ark(rsa4096, ROME_KEY_ID)


@pytest.mark.parametrize("generation", ["naples", "rome", "milan"])
def test_amd_arks_match_their_pins(vectors: Path, generation: str) -> None:
    ark = _ark(vectors, generation)
    root = TrustStore().identify(ark)
    assert (root.name, root.amd, root.key_id) == (generation, True, ark.key_id)
    assert fingerprint(ark) == root.fingerprint


def test_unsigned_naples_ark_has_the_same_pin(vectors: Path) -> None:
    bad = AmdCert.from_bytes(
        (vectors / "amd" / "naples_ark.cert.bad").read_bytes(), allow_unsigned=True
    )
    assert TrustStore().identify(bad).name == "naples"


def test_pins_are_distinct() -> None:
    assert len({r.key_id for r in AMD_ROOTS}) == len({r.fingerprint for r in AMD_ROOTS}) == 5


def test_forged_ark_with_amds_key_id_is_refused(
    vectors: Path, forged_rome: AmdCert, rsa4096: pyca_rsa.RSAPrivateKey
) -> None:
    assert forged_rome.modulus_size == 4096
    assert forged_rome.is_self_signed
    # Its self-signature is genuine: only the pin can catch it.
    ask = AmdCert.from_bytes((vectors / "amd" / "rome_ask.cert").read_bytes())
    forged_ask = sign_amd(ask, rsa4096)
    with pytest.raises(UntrustedRootError, match="forged") as err:
        verify_ca(CaChain(forged_ask, forged_rome), TrustStore())
    assert "rome" in str(err.value)
    assert ROME_KEY_ID.hex() in str(err.value)
    assert fingerprint(forged_rome) in str(err.value)


def test_with_root_refuses_an_impersonating_ark(forged_rome: AmdCert) -> None:
    with pytest.raises(UntrustedRootError, match="forged"):
        TrustStore().with_root(forged_rome, name="mine")


def test_unknown_root_needs_with_root(rsa4096: pyca_rsa.RSAPrivateKey) -> None:
    ark = self_signed_ark(rsa4096, b"emulated-root-01")
    with pytest.raises(UntrustedRootError, match="--trust-root") as err:
        TrustStore().identify(ark)
    assert fingerprint(ark) in str(err.value)
    store = TrustStore().with_root(ark, name="lab")
    root = store.identify(ark)
    assert (root.name, root.amd, root.fingerprint) == ("lab", False, fingerprint(ark))


def test_user_root_is_matched_by_key_not_by_id(rsa4096: pyca_rsa.RSAPrivateKey) -> None:
    ark = self_signed_ark(rsa4096, b"emulated-root-01")
    store = TrustStore().with_root(ark)
    other = pyca_rsa.generate_private_key(65537, 2048)
    with pytest.raises(UntrustedRootError):
        store.identify(self_signed_ark(other, b"emulated-root-01"))


def test_amd_roots_stay_trusted_in_an_extended_store(
    vectors: Path, rsa4096: pyca_rsa.RSAPrivateKey
) -> None:
    store = TrustStore().with_root(self_signed_ark(rsa4096, b"emulated-root-01"))
    assert store.identify(_ark(vectors, "rome")).name == "rome"


@pytest.mark.parametrize(("pub_exp", "modulus"), [(65536, None), (1, None), (65537, 0)])
def test_ark_without_a_valid_key_is_untrusted_not_a_crash(
    vectors: Path, pub_exp: int, modulus: int | None
) -> None:
    ark = _ark(vectors, "rome")
    broken = replace(ark, pub_exp=pub_exp, modulus=ark.modulus if modulus is None else modulus)
    with pytest.raises(UntrustedRootError, match="usable RSA public key"):
        TrustStore().identify(broken)
    with pytest.raises(UntrustedRootError, match="usable RSA public key"):
        TrustStore().with_root(replace(broken, key_id=b"x" * 16))
