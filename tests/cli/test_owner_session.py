"""``sevlaunch owner session``: verify first, then sevctl's four files, keys never readable by others."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.cli import cli
from sevlaunch.crypto import ecc
from sevlaunch.crypto.kdf import master_secret
from sevlaunch.crypto.launch import check_policy_mac, unwrap_keys
from sevlaunch.formats import PlatformChain, Session, SevCert
from tests.strategies import ca_bytes, platform_bytes, synthetic_platform

SEED = 5
PDH_PRIVATE = ecc.generate_p384(SEED * 10)


@pytest.fixture(scope="module")
def chain() -> PlatformChain:
    keys = (pyca_rsa.generate_private_key(65537, 2048), pyca_rsa.generate_private_key(65537, 2048))
    return synthetic_platform(*keys, seed=SEED)


@pytest.fixture
def files(chain: PlatformChain, tmp_path: Path) -> tuple[Path, Path]:
    assert chain.ca is not None
    chain_file, root = tmp_path / "host.pdh", tmp_path / "ark.cert"
    chain_file.write_bytes(chain.to_bytes())
    root.write_bytes(chain.ca.ark.to_bytes())
    return chain_file, root


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owner", "session", *args])
    return result.exit_code, result.output


@pytest.mark.usefixtures("open_umask")
def test_session_files_unwrap_with_the_pdh_key(files: tuple[Path, Path], tmp_path: Path) -> None:
    chain_file, root = files
    out = tmp_path / "out"
    code, text = _run(
        "--chain", str(chain_file), "--trust-root", str(root), "--policy", "nodbg,noks",
        "--name", "guest1", "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    assert "policy 0x0003 (nodbg,noks)" in text
    godh = SevCert.from_bytes(base64.b64decode((out / "guest1_godh.b64").read_text()))
    session = Session.from_bytes(base64.b64decode((out / "guest1_session.b64").read_text()))
    keys = unwrap_keys(master_secret(ecc.ecdh(PDH_PRIVATE, godh.ecc_key), session.nonce), session)
    assert keys.tek == (out / "guest1_tek.bin").read_bytes()
    assert keys.tik == (out / "guest1_tik.bin").read_bytes()
    check_policy_mac(keys.tik, 3, session.policy_mac)
    for name in ("guest1_tek.bin", "guest1_tik.bin"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == [
        "guest1_godh.b64", "guest1_session.b64", "guest1_tek.bin", "guest1_tik.bin",
    ]  # fmt: skip


def test_keys_are_created_0600_exclusively(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Created with mode 0600 (never wider, even briefly), then renamed over the target."""
    calls: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(path: str | Path, flags: int, mode: int = 0o777, **kw: object) -> int:
        calls.append((str(path), flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", recording_open)
    (tmp_path / "vm_tek.bin").write_bytes(b"old")
    os.chmod(tmp_path / "vm_tek.bin", 0o644)
    chain_file, root = files
    code, text = _run("--chain", str(chain_file), "--trust-root", str(root), "--policy", "1",
                      "--out", str(tmp_path))  # fmt: skip
    assert code == 0, text
    key_opens = [c for c in calls if "_tek.bin" in c[0] or "_tik.bin" in c[0]]
    assert len(key_opens) == 2
    for _, flags, mode in key_opens:
        assert mode == 0o600
        assert flags & os.O_CREAT
        assert flags & os.O_EXCL
    assert stat.S_IMODE((tmp_path / "vm_tek.bin").stat().st_mode) == 0o600
    assert len((tmp_path / "vm_tek.bin").read_bytes()) == 16


def test_a_broken_chain_is_refused_naming_the_link(
    chain: PlatformChain, tmp_path: Path, files: tuple[Path, Path]
) -> None:
    _, root = files
    raw = bytearray(chain.to_bytes())
    raw[0x20] ^= 1  # in the PDH's qx: PEK -> PDH fails
    bad = tmp_path / "bad.pdh"
    bad.write_bytes(bytes(raw))
    out = tmp_path / "out"
    code, text = _run("--chain", str(bad), "--trust-root", str(root), "--policy", "3",
                      "--out", str(out))  # fmt: skip
    assert code == 1
    assert "does not verify: link PEK -> PDH" in text
    assert not out.exists()


def test_untrusted_root_and_missing_ca_are_refused(
    files: tuple[Path, Path], vectors: Path, tmp_path: Path
) -> None:
    chain_file, _ = files
    code, text = _run("--chain", str(chain_file), "--policy", "3", "--out", str(tmp_path))
    assert code == 1
    assert "--trust-root" in text
    real = tmp_path / "rome.pdh"
    real.write_bytes(platform_bytes(vectors, "rome"))
    code, text = _run("--chain", str(real), "--policy", "3", "--out", str(tmp_path))
    assert code == 1
    assert "pass AMD's CA file with --ca FILE" in text
    ca = tmp_path / "ask_ark_rome.cert"
    ca.write_bytes(ca_bytes(vectors, "rome"))
    code, text = _run("--chain", str(real), "--ca", str(ca), "--policy", "3", "--out",
                      str(tmp_path / "rome"))  # fmt: skip
    assert code == 0, text
    assert "verified to AMD rome" in text


def test_bad_inputs_exit_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    chain_file, root = files
    base = ["--chain", str(chain_file), "--trust-root", str(root), "--out", str(tmp_path)]
    code, text = _run(*base, "--policy", "nodbg,bogus")
    assert code == 2
    assert "unknown flag 'bogus'" in text
    code, text = _run(*base, "--policy", "3", "--name", "../x")
    assert code == 2
    short = tmp_path / "short.pdh"
    short.write_bytes(b"\0" * 100)
    code, text = _run("--chain", str(short), "--policy", "3", "--out", str(tmp_path))
    assert code == 2
    assert "four SEV certificates" in text
