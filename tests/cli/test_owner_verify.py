"""``sevlaunch owner verify`` end to end on the real chains: exit codes, printed links, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.cli import cli
from sevlaunch.formats import PlatformChain, Signature
from tests.strategies import ca_bytes, platform_bytes, synthetic_platform

LINKS = ["ARK -> ARK", "ARK -> ASK", "ASK -> CEK", "OCA -> OCA", "OCA -> PEK", "CEK -> PEK",
         "PEK -> PDH"]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chains without a CA consult the CA cache: keep it empty and private to the test."""
    monkeypatch.setenv("SEVLAUNCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SEVLAUNCH_KDS_URL", raising=False)


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["owner", "verify", *args])


@pytest.fixture
def rome(vectors: Path, tmp_path: Path) -> tuple[str, str]:
    """(chain file, CA file) of the Rome platform."""
    return (
        _write(tmp_path, "rome.chain", platform_bytes(vectors, "rome")),
        _write(tmp_path, "ask_ark_rome.cert", ca_bytes(vectors, "rome")),
    )


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_chain_and_ca_verify_and_print_each_link(
    vectors: Path, tmp_path: Path, generation: str
) -> None:
    chain = _write(tmp_path, "chain", platform_bytes(vectors, generation))
    ca = _write(tmp_path, "ca", ca_bytes(vectors, generation))
    result = _run("--chain", chain, "--ca", ca)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    printed = [line.split("(")[0].strip() for line in lines if line.lstrip().startswith("ok")]
    assert printed == [f"ok  {link}" for link in LINKS]
    assert f"root: AMD {generation}" in result.stdout
    assert "PDH verified" in result.stdout


def test_json_output(rome: tuple[str, str]) -> None:
    result = _run("--chain", rome[0], "--ca", rome[1], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ok"] is True
    assert out["generation"] == "rome"
    assert out["amd_root"] is True
    assert [f"{k['signer']} -> {k['subject']}" for k in out["links"]] == LINKS
    assert all(k["method"] for k in out["links"])
    assert (out["api_major"], out["api_minor"]) == (0, 22)


def test_full_chain_needs_no_ca(vectors: Path, tmp_path: Path) -> None:
    full = _write(tmp_path, "full", platform_bytes(vectors, "rome") + ca_bytes(vectors, "rome"))
    result = _run("--chain", full)
    assert result.exit_code == 0, result.output
    assert "root: AMD rome" in result.stdout


def _unsigned_cek_chain(vectors: Path, tmp_path: Path) -> str:
    chain = PlatformChain.from_bytes(platform_bytes(vectors, "rome"))
    unsigned = replace(chain, cek=chain.cek.with_signature(1, Signature.empty()))
    return _write(tmp_path, "unsigned.chain", unsigned.to_bytes())


def test_cek_substitution(vectors: Path, tmp_path: Path, rome: tuple[str, str]) -> None:
    chain = _unsigned_cek_chain(vectors, tmp_path)
    cek = str(vectors / "platforms" / "rome" / "cek.cert")
    result = _run("--chain", chain, "--ca", rome[1], "--cek", cek)
    assert result.exit_code == 0, result.output
    assert "ASK -> CEK" in result.stdout


@pytest.mark.parametrize("with_ca", [True, False])
def test_unsigned_cek_fails_naming_the_cek_and_amds_key_server(
    vectors: Path, tmp_path: Path, rome: tuple[str, str], with_ca: bool
) -> None:
    chain = _unsigned_cek_chain(vectors, tmp_path)
    result = _run("--chain", chain, *(("--ca", rome[1]) if with_ca else ()))
    assert result.exit_code == 1, result.output
    assert "CEK" in result.stderr
    assert "kdsintf.amd.com" in result.stderr
    assert "--cek" in result.stderr
    json_result = _run("--chain", chain, "--ca", rome[1], "--json")
    assert json_result.exit_code == 1
    out = json.loads(json_result.stdout)
    assert (out["ok"], out["failed_link"]) == (False, "ASK -> CEK")
    assert "kdsintf.amd.com" in out["error"]


@pytest.mark.parametrize("generation", ["naples", "rome", "milan"])
def test_ca_alone_prints_generation_and_key_ids(
    vectors: Path, tmp_path: Path, generation: str
) -> None:
    ca = _write(tmp_path, "ca", ca_bytes(vectors, generation))
    result = _run("--ca", ca)
    assert result.exit_code == 0, result.output
    ark_id = (vectors / "amd" / f"{generation}_ark.cert").read_bytes()[4:20].hex()
    ask_id = (vectors / "amd" / f"{generation}_ask.cert").read_bytes()[4:20].hex()
    assert f"root: AMD {generation} (ARK key id {ark_id}, ASK key id {ask_id})" in result.stdout
    out = json.loads(_run("--ca", ca, "--json").stdout)
    assert (out["generation"], out["ark_key_id"], out["ask_key_id"]) == (generation, ark_id, ask_id)


@pytest.mark.parametrize(("platform", "ca"), [("rome", "milan"), ("naples", "rome")])
def test_wrong_generation_fails_naming_the_link(
    vectors: Path, tmp_path: Path, platform: str, ca: str
) -> None:
    chain = _write(tmp_path, "chain", platform_bytes(vectors, platform))
    ca_file = _write(tmp_path, "ca", ca_bytes(vectors, ca))
    result = _run("--chain", chain, "--ca", ca_file)
    assert result.exit_code == 1, result.output
    assert "link ASK -> CEK" in result.stderr
    out = json.loads(_run("--chain", chain, "--ca", ca_file, "--json").stdout)
    assert out["failed_link"] == "ASK -> CEK"


def test_user_trust_root(tmp_path: Path) -> None:
    keys = [pyca_rsa.generate_private_key(65537, 2048) for _ in range(2)]
    chain = synthetic_platform(*keys)
    assert chain.ca is not None
    chain_file = _write(tmp_path, "chain", chain.to_bytes())
    refused = _run("--chain", chain_file)
    assert refused.exit_code == 1
    assert "--trust-root" in refused.stderr
    root = _write(tmp_path, "root.cert", chain.ca.ark.to_bytes())
    result = _run("--chain", chain_file, "--trust-root", root)
    assert result.exit_code == 0, result.output
    assert "user-trusted root trust-root-1" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--json",),
        ("--cek", "cek.cert"),
        ("--chain", "does-not-exist"),
        ("--ca", "does-not-exist"),
        ("--no-such-option",),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.exit_code == 2, result.output


def test_malformed_chain_fails_naming_the_field(tmp_path: Path, rome: tuple[str, str]) -> None:
    data = bytearray(Path(rome[0]).read_bytes())
    data[6] = 1  # PDH reserved byte
    result = _run("--chain", _write(tmp_path, "bad", bytes(data)), "--ca", rome[1])
    assert result.exit_code == 1
    assert "pdh.reserved" in result.stderr
    assert "0x6" in result.stderr


def test_installed_entry_point(vectors: Path, tmp_path: Path) -> None:
    """The console script, as a user runs it."""
    script = Path(sys.executable).parent / "sevlaunch"
    if not script.exists():
        pytest.skip(f"{script} is not installed")
    full = _write(tmp_path, "full", platform_bytes(vectors, "naples") + ca_bytes(vectors, "naples"))
    done = subprocess.run(
        [str(script), "owner", "verify", "--chain", full, "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={"SEVLAUNCH_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["generation"] == "naples"
