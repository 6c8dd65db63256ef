"""The emulated ARK/ASK of a profile, made once and kept: fresh platforms share them and
nothing else; a damaged, exposed or unwritable cache costs only the key generation."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.firmware import Firmware
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.platform import roots
from sevlaunch.platform.service import open_service, real_firmware
from sevlaunch.platform.state import StateDir


class CountingKeygen:
    """RSA-2048 keys (fast) and how many were made."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> rsa.RSAPrivateKey:
        self.made += 1
        return rsa.generate_private_key(65537, 2048)


@pytest.fixture
def keygen(monkeypatch: pytest.MonkeyPatch) -> CountingKeygen:
    counting = CountingKeygen()
    monkeypatch.setattr(roots, "generate_rsa", counting)
    return counting


def _n(key: rsa.RSAPrivateKey) -> int:
    return key.public_key().public_numbers().n


def test_made_once_then_read_back(tmp_path: Path, keygen: CountingKeygen) -> None:
    first = roots.cached_roots("milan", tmp_path / "cache")
    again = roots.cached_roots("milan", tmp_path / "cache")
    assert keygen.made == 2
    assert [_n(k) for k in again] == [_n(k) for k in first]
    assert _n(first[0]) != _n(first[1])
    path = roots.roots_file("milan", tmp_path / "cache")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    other = roots.cached_roots("rome", tmp_path / "cache")  # each generation its own
    assert keygen.made == 4
    assert _n(other[0]) != _n(first[0])


@pytest.mark.parametrize("damage", [b"", b"\0\0\0\5junk", b"\xff" * 40])
def test_a_damaged_cache_is_replaced(
    tmp_path: Path, keygen: CountingKeygen, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    good = roots.cached_roots("milan", tmp_path)
    path = roots.roots_file("milan", tmp_path)
    path.write_bytes(damage or path.read_bytes() + b"x")
    with caplog.at_level(logging.WARNING):
        new = roots.cached_roots("milan", tmp_path)
    assert "unusable" in caplog.text
    assert _n(new[0]) != _n(good[0])
    assert [_n(k) for k in roots.cached_roots("milan", tmp_path)] == [_n(k) for k in new]


def test_a_cache_open_to_others_is_not_trusted(
    tmp_path: Path, keygen: CountingKeygen, caplog: pytest.LogCaptureFixture
) -> None:
    good = roots.cached_roots("milan", tmp_path)
    roots.roots_file("milan", tmp_path).chmod(0o644)
    with caplog.at_level(logging.WARNING):
        new = roots.cached_roots("milan", tmp_path)
    assert "lets group or others" in caplog.text
    assert _n(new[0]) != _n(good[0])
    assert stat.S_IMODE(roots.roots_file("milan", tmp_path).stat().st_mode) == 0o600


def test_an_unwritable_cache_still_gives_roots(
    tmp_path: Path, keygen: CountingKeygen, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        ark, ask = roots.cached_roots("milan", blocked / "cache")
    assert "cannot keep" in caplog.text
    assert _n(ark) != _n(ask)


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(roots.CACHE_ENV, "/x/y")
    assert roots.cache_dir() == Path("/x/y")
    monkeypatch.delenv(roots.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/c")
    assert roots.cache_dir() == Path("/c/sevlaunch")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert roots.cache_dir() == Path("/home/u/.cache/sevlaunch")


def _chip(firmware: Firmware) -> tuple[bytes, bytes, AmdCert, AmdCert]:
    return (
        firmware.get_id(),
        firmware.signed_cek(),
        AmdCert.from_bytes(firmware.ark()),
        AmdCert.from_bytes(firmware.ca_chain()[: -len(firmware.ark())]),
    )


def test_fresh_platforms_share_the_roots_and_nothing_else(
    keygen: CountingKeygen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the roots kept, two new platforms are two chips of one generation."""
    monkeypatch.setenv(roots.CACHE_ENV, str(tmp_path))  # its 2048-bit keys stay here
    one, _ = real_firmware("milan", None)
    two, _ = real_firmware("milan", None)
    assert isinstance(one, Firmware)
    assert isinstance(two, Firmware)
    id1, cek1, ark1, ask1 = _chip(one)
    id2, cek2, ark2, ask2 = _chip(two)
    assert id1 != id2
    assert cek1 != cek2
    assert (ark1.modulus, ask1.modulus) == (ark2.modulus, ask2.modulus)
    made = keygen.made
    kept, _ = real_firmware("milan", one.persistent_state())  # a saved state keeps its own
    assert isinstance(kept, Firmware)
    assert kept.get_id() == id1
    assert keygen.made == made


def test_open_service_on_a_fresh_state_uses_the_cache(tmp_path: Path) -> None:
    """The real path (RSA-4096): the test run's cache (tests/conftest.py) serves the roots."""
    service = open_service(tmp_path / "state", "genoa")
    try:
        assert roots.roots_file("genoa").exists()
        assert isinstance(service.firmware, Firmware)
        cached_ark = roots.cached_roots("genoa")[0]
        assert AmdCert.from_bytes(service.firmware.ark()).modulus == _n(cached_ark)
    finally:
        assert isinstance(service.store, StateDir)
        service.store.unlock()
