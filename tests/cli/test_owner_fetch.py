"""``sevlaunch owner fetch-ca`` / ``fetch-cek``, and ``owner verify`` using the certificate cache.

A local stand-in for AMD's key server (tests/kds/fake.py) serves the shared vectors; the
cache lives in a temporary directory named by ``SEVLAUNCH_CACHE_DIR``.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sevlaunch import kds
from sevlaunch.cli import cli
from sevlaunch.formats.sevcert import SevCert, Signature
from tests.conftest import read_vector
from tests.kds.fake import FakeKds, running_kds
from tests.kds.test_sev import (
    CHIP_HEX,
    CHIP_ID,
    ca_file,
    closed_port,
    forged_ark,
    serve_amd,
)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv(kds.CACHE_DIR_ENV, str(path))
    monkeypatch.delenv(kds.KDS_URL_ENV, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    return path


@pytest.fixture
def server(cache_dir: Path, vectors: Path) -> Iterator[FakeKds]:
    with running_kds() as fake:
        serve_amd(fake, vectors)
        yield fake


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["owner", *args])


def chain_file(vectors: Path, tmp_path: Path, gen: str, *, cek: bytes | None = None) -> str:
    """PDH ‖ PEK ‖ OCA ‖ CEK, as ``sevctl export`` writes it (no ASK, no ARK)."""
    parts = [read_vector(vectors, f"platforms/{gen}/{n}.cert") for n in ("pdh", "pek", "oca")]
    cek = cek if cek is not None else read_vector(vectors, f"platforms/{gen}/cek.cert")
    path = tmp_path / f"{gen}-chain.cert"
    path.write_bytes(b"".join(parts) + cek)
    return str(path)


def cache_ca(vectors: Path, cache_dir: Path, gen: str) -> Path:
    return kds.write_atomic(kds.CertCache(cache_dir).ca_path(gen), ca_file(vectors, gen))


# --- fetch-ca -----------------------------------------------------------------------------------


def test_fetch_ca_caches_and_writes(server: FakeKds, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ask_ark_rome.cert"
    result = run("fetch-ca", "--gen", "rome", "--kds-url", server.url, "--out", str(out))
    assert result.exit_code == 0, result.output
    cached = cache_dir / "ca" / "ask_ark_rome.cert"
    assert f"cached: {cached}" in result.stdout
    assert f"written: {out}" in result.stdout
    assert "root: AMD rome (ARK key id e6002122fb58419399d15fee7b131351" in result.stdout
    assert "ok  ARK -> ASK" in result.stdout
    assert out.read_bytes() == cached.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_fetch_ca_reads_the_mirror_from_the_environment(
    server: FakeKds, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kds.KDS_URL_ENV, server.url)
    result = run("fetch-ca", "--gen", "naples", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["generation"] == "naples"
    assert doc["ark_key_id"] == "1bb987c359494606b174945601c9ea5b"
    assert doc["cached"] == str(cache_dir / "ca" / "ask_ark_naples.cert")
    assert server.requests == ["/ask_ark_naples.cert"]


def test_fetch_ca_missing_on_server_exits_2_with_advice(server: FakeKds, cache_dir: Path) -> None:
    result = run("fetch-ca", "--gen", "turin", "--kds-url", server.url)
    assert result.exit_code == 2
    assert f"{server.url}/ask_ark_turin.cert: HTTP 404" in result.stderr
    assert "--ca FILE" in result.stderr
    assert not (cache_dir / "ca").exists()


def test_fetch_ca_forged_root_is_not_cached(
    server: FakeKds, cache_dir: Path, vectors: Path
) -> None:
    server.serve(
        "/ask_ark_milan.cert",
        read_vector(vectors, "amd/milan_ask.cert") + forged_ark(vectors, "milan"),
    )
    result = run("fetch-ca", "--gen", "milan", "--kds-url", server.url, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert "refused, not cached" in doc["error"]
    assert not (cache_dir / "ca").exists()


def test_fetch_ca_offline_exits_2(cache_dir: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run("fetch-ca", "--gen", "genoa", "--kds-url", url, "--timeout", "2")
    assert result.exit_code == 2
    assert "cannot connect" in result.stderr
    assert "--ca FILE" in result.stderr


def test_fetch_ca_unknown_generation_is_a_usage_error(cache_dir: Path) -> None:
    result = run("fetch-ca", "--gen", "bergamo")
    assert result.exit_code == 2
    assert "bergamo" in result.stderr


def test_bad_kds_url_is_a_usage_error(cache_dir: Path) -> None:
    result = run("fetch-ca", "--gen", "rome", "--kds-url", "ftp://example.org")
    assert result.exit_code == 2
    assert "http:// or https://" in result.stderr


# --- fetch-cek ----------------------------------------------------------------------------------


def test_fetch_cek_by_hex_chip_id(server: FakeKds, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cek.cert"
    result = run(
        "fetch-cek", "--chip-id", CHIP_ID.hex(), "--kds-url", server.url, "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    cached = cache_dir / "cek" / f"{CHIP_HEX}.cert"
    assert f"cached: {cached}" in result.stdout
    assert server.requests == [f"/cek/id/{CHIP_HEX}"]
    assert out.read_bytes() == cached.read_bytes()


@pytest.mark.parametrize("form", ["raw", "legacy-ioctl", "base64"])
def test_fetch_cek_by_id_file(server: FakeKds, tmp_path: Path, form: str) -> None:
    import base64

    content = {
        "raw": CHIP_ID,
        "legacy-ioctl": CHIP_ID + bytes(64),
        "base64": base64.b64encode(CHIP_ID) + b"\n",
    }[form]
    id_file = tmp_path / "id.bin"
    id_file.write_bytes(content)
    result = run("fetch-cek", "--id-file", str(id_file), "--kds-url", server.url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chip_id"] == CHIP_HEX


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--chip-id", "00" * 64, "--id-file", "x"],
        ["--chip-id", "00" * 32],
        ["--chip-id", "not hex"],
        ["--id-file", "/nonexistent/id.bin"],
    ],
)
def test_fetch_cek_bad_ids_are_usage_errors(cache_dir: Path, args: list[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run("fetch-cek", *args, "--kds-url", url)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert not (cache_dir / "cek").exists()


def test_fetch_cek_unknown_chip_exits_2(server: FakeKds, cache_dir: Path) -> None:
    result = run("fetch-cek", "--chip-id", "ab" * 64, "--kds-url", server.url)
    assert result.exit_code == 2
    assert "HTTP 404" in result.stderr
    assert "--cek FILE" in result.stderr
    assert "fetch-cek" not in result.stderr  # issue 14: its hint recommended itself


# --- owner verify with the cache ----------------------------------------------------------------


def test_verify_without_cached_ca_exits_2_and_downloads_nothing(
    server: FakeKds, cache_dir: Path, vectors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kds.KDS_URL_ENV, server.url)
    result = run("verify", "--chain", chain_file(vectors, tmp_path, "rome"))
    assert result.exit_code == 2
    assert "sevlaunch owner fetch-ca --gen GEN" in result.stderr
    assert "--ca FILE" in result.stderr
    assert "rome or milan or genoa or turin" in result.stderr
    assert server.requests == []


@pytest.mark.parametrize("gen", ["naples", "rome"])
def test_verify_uses_the_cached_ca_that_signed_the_cek(
    cache_dir: Path, vectors: Path, tmp_path: Path, gen: str
) -> None:
    for cached in ("naples", "rome", "milan"):
        cache_ca(vectors, cache_dir, cached)
    result = run("verify", "--chain", chain_file(vectors, tmp_path, gen))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"ca: AMD {gen} CA file {cache_dir / 'ca' / f'ask_ark_{gen}.cert'}"
    assert "  ok  ASK -> CEK" in result.stdout
    assert "  ok  PEK -> PDH" in result.stdout
    assert f"root: AMD {gen} " in result.stdout


def test_verify_json_names_the_cached_ca_file(
    cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    path = cache_ca(vectors, cache_dir, "rome")
    result = run("verify", "--chain", chain_file(vectors, tmp_path, "rome"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["generation"] == "rome"
    assert doc["ca_file"] == str(path)


def test_verify_with_only_another_generation_cached_exits_2(
    cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    cache_ca(vectors, cache_dir, "rome")
    result = run("verify", "--chain", chain_file(vectors, tmp_path, "naples"))
    assert result.exit_code == 2
    assert "no AMD CA file for naples is cached" in result.stderr


def test_verify_fetch_downloads_the_missing_ca(
    server: FakeKds, cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    chain = chain_file(vectors, tmp_path, "rome")
    result = run("verify", "--chain", chain, "--fetch", "--kds-url", server.url)
    assert result.exit_code == 0, result.output
    assert server.requests == ["/ask_ark_rome.cert"]
    assert (cache_dir / "ca" / "ask_ark_rome.cert").read_bytes() == ca_file(vectors, "rome")
    again = run("verify", "--chain", chain, "--fetch", "--kds-url", server.url)
    assert again.exit_code == 0, again.output
    assert server.requests == ["/ask_ark_rome.cert"]  # the second run used the cache


def test_verify_fetch_refuses_a_forged_download(
    server: FakeKds, cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    server.serve(
        "/ask_ark_naples.cert",
        read_vector(vectors, "amd/naples_ask.cert") + forged_ark(vectors, "naples"),
    )
    chain = chain_file(vectors, tmp_path, "naples")
    result = run("verify", "--chain", chain, "--fetch", "--kds-url", server.url)
    assert result.exit_code == 2
    assert "refused, not cached" in result.stderr
    assert "--ca FILE" in result.stderr
    assert not (cache_dir / "ca").exists()


def test_verify_fetch_offline_exits_2(cache_dir: Path, vectors: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    chain = chain_file(vectors, tmp_path, "naples")
    result = run("verify", "--chain", chain, "--fetch", "--kds-url", url)
    assert result.exit_code == 2
    assert "cannot connect" in result.stderr


def test_verify_kds_url_needs_fetch(cache_dir: Path, vectors: Path, tmp_path: Path) -> None:
    chain = chain_file(vectors, tmp_path, "rome")
    result = run("verify", "--chain", chain, "--kds-url", "http://127.0.0.1:1")
    assert result.exit_code == 2
    assert "--kds-url needs --fetch" in result.stderr


def test_verify_tampered_cache_exits_2(cache_dir: Path, vectors: Path, tmp_path: Path) -> None:
    path = kds.CertCache(cache_dir).ca_path("naples")
    kds.write_atomic(
        path, read_vector(vectors, "amd/naples_ask.cert") + forged_ark(vectors, "naples")
    )
    result = run("verify", "--chain", chain_file(vectors, tmp_path, "naples"))
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert "delete it" in result.stderr


def test_verify_unsigned_cek_without_ca_names_the_cek(
    cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    cek = SevCert.from_bytes(read_vector(vectors, "platforms/rome/cek.cert"))
    unsigned = cek.with_signature(1, Signature.empty()).to_bytes()
    chain = chain_file(vectors, tmp_path, "rome", cek=unsigned)
    result = run("verify", "--chain", chain, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["failed_link"] == "ASK -> CEK"
    assert "kdsintf.amd.com/cek/id/" in doc["error"]


def test_verify_cek_signature_under_no_amd_ask_fails_the_link(
    cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    cache_ca(vectors, cache_dir, "naples")
    cek = SevCert.from_bytes(read_vector(vectors, "platforms/naples/cek.cert"))
    bad = cek.with_signature(
        1, Signature.rsa(cek.sig1.usage, cek.sig1.algorithm, cek.sig1.rsa_s ^ 1)
    ).to_bytes()
    result = run("verify", "--chain", chain_file(vectors, tmp_path, "naples", cek=bad))
    assert result.exit_code == 1
    assert "link ASK -> CEK" in result.stderr


def test_verify_with_ca_given_does_not_look_at_the_cache(
    cache_dir: Path, vectors: Path, tmp_path: Path
) -> None:
    ca = tmp_path / "ask_ark_rome.cert"
    ca.write_bytes(ca_file(vectors, "rome"))
    result = run("verify", "--chain", chain_file(vectors, tmp_path, "rome"), "--ca", str(ca))
    assert result.exit_code == 0, result.output
    assert not result.stdout.startswith("ca: ")
    assert not cache_dir.exists()
