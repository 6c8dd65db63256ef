"""The broker's adapter over the owner toolkit: roots, chains (real Rome certificates), sessions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sevlaunch.broker import attest
from sevlaunch.errors import FormatError, VerificationError
from sevlaunch.formats.chain import CertExport
from tests.broker.fakeplatform import FakePlatform


def _rome(vectors: Path) -> tuple[bytes, bytes, bytes]:
    base = vectors / "platforms" / "rome"
    pdh = (base / "pdh.cert").read_bytes()
    chain = b"".join((base / f"{n}.cert").read_bytes() for n in ("pek", "oca", "cek"))
    ca = (vectors / "amd" / "rome_ask.cert").read_bytes() + (
        vectors / "amd" / "rome_ark.cert"
    ).read_bytes()
    return pdh, chain, ca


def test_amd_ca_file_is_named_by_generation(vectors: Path) -> None:
    _, _, ca = _rome(vectors)
    parsed = attest.parse_root(ca, None)
    assert (parsed.name, parsed.amd, parsed.ask is not None) == ("rome", True, True)


def test_real_rome_platform_verifies_against_its_ca_file(vectors: Path) -> None:
    pdh, chain, ca = _rome(vectors)
    root = attest.parse_root(ca, None)
    roots = [attest.Root(root.name, root.ark, root.ask)]
    assert len(chain) == CertExport.SIZE
    platform = attest.verify_platform(pdh, chain, None, roots)
    assert platform.ca.root.name == "rome"
    flipped = bytearray(chain)
    flipped[0x100] ^= 1
    with pytest.raises(VerificationError):
        attest.verify_platform(pdh, bytes(flipped), None, roots)


def test_naples_ca_does_not_verify_a_rome_platform(vectors: Path) -> None:
    pdh, chain, _ = _rome(vectors)
    naples = (vectors / "amd" / "naples_ask.cert").read_bytes() + (
        vectors / "amd" / "naples_ark.cert"
    ).read_bytes()
    parsed = attest.parse_root(naples, None)
    with pytest.raises(VerificationError, match="naples"):
        attest.verify_platform(pdh, chain, None, [attest.Root(parsed.name, parsed.ark, parsed.ask)])


def test_no_ca_registered_says_what_to_add(vectors: Path) -> None:
    pdh, chain, _ = _rome(vectors)
    with pytest.raises(VerificationError, match="ask_ark"):
        attest.verify_platform(pdh, chain, None, [])


def test_cert_chain_of_wrong_size_is_a_format_error(platform: FakePlatform) -> None:
    with pytest.raises(FormatError, match="PEK ‖ OCA ‖ CEK"):
        attest.verify_platform(platform.pdh.to_bytes(), b"\0" * 100, None, [])


def test_a_verified_platform_makes_a_session_the_platform_accepts(platform: FakePlatform) -> None:
    parsed = attest.parse_root(platform.ca_file, "lab")
    root = attest.Root(parsed.name, parsed.ark, parsed.ask)
    pdh = platform.pdh.to_bytes()
    chain = platform.pek.to_bytes() + platform.oca.to_bytes() + platform.cek.to_bytes()
    verified = attest.verify_platform(pdh, chain, None, [root])
    session = attest.make_session(verified, 0x3, os.urandom)
    keys = platform.launch_start(session.godh_b64, session.session_b64, 0x3)
    assert keys == session.keys


def test_fingerprint_covers_each_part() -> None:
    fps = {
        attest.platform_fingerprint(a, b, c)
        for a, b, c in (
            (b"p", b"c", None),
            (b"p", b"c", b"k"),
            (b"pc", b"", None),
            (b"p", b"ck", None),
        )
    }
    assert len(fps) == 4
