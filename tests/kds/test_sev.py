"""sevlaunch.kds against a local stand-in for AMD's key server (no network is used).

The stand-in serves AMD's real CA files and CEKs, assembled in memory from the shared
vectors, plus misbehaving answers: errors, oversized, hanging, dribbling and forged ones.
"""

from __future__ import annotations

import base64
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sevlaunch import kds
from sevlaunch.errors import (
    ChainError,
    DownloadError,
    MissingCekSignatureError,
    TrustStoreError,
    UsageError,
)
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.sevcert import SevCert, Signature
from tests.conftest import read_vector
from tests.kds.fake import FakeKds, running_kds

CHIP_ID = bytes(range(64))
CHIP_HEX = CHIP_ID.hex().upper()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 must not go through a proxy named in the environment."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def fake_kds(no_proxy: None) -> Iterator[FakeKds]:
    with running_kds() as fake:
        yield fake


def ca_file(vectors: Path, gen: str) -> bytes:
    """AMD's ask_ark_<gen>.cert as AMD publishes it (Naples: the ARK without signature)."""
    ark = "naples_ark.cert.bad" if gen == "naples" else f"{gen}_ark.cert"
    return read_vector(vectors, f"amd/{gen}_ask.cert") + read_vector(vectors, f"amd/{ark}")


def serve_amd(fake: FakeKds, vectors: Path) -> None:
    """The CA files of the generations in the vectors, and the Rome CEK under ``CHIP_ID``."""
    for gen in ("naples", "rome", "milan"):
        fake.serve(f"/ask_ark_{gen}.cert", ca_file(vectors, gen))
    fake.serve(f"/cek/id/{CHIP_HEX}", read_vector(vectors, "platforms/rome/cek.cert"))


def client(fake: FakeKds, tmp_path: Path, timeout: float = 5.0) -> kds.KdsClient:
    return kds.KdsClient(fake.url, cache=kds.CertCache(tmp_path / "cache"), timeout=timeout)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def forged_ark(vectors: Path, gen: str) -> bytes:
    """AMD's ARK with its key id kept and its modulus changed: what an impostor would serve."""
    ark = AmdCert.from_bytes(read_vector(vectors, f"amd/{gen}_ark.cert"))
    return replace(ark, modulus=ark.modulus ^ (1 << 8)).to_bytes()


# --- where from, where to ---------------------------------------------------------------------


def test_sources_default_to_amd_and_cek_url_is_uppercase_hex() -> None:
    sources = kds.KdsSources.resolve(None, environ={})
    assert sources.ca[0] == "https://developer.amd.com/wp-content/resources/ask_ark_{gen}.cert"
    assert sources.ca[1] == "https://download.amd.com/developer/eula/sev/ask_ark_{gen}.cert"
    c = kds.KdsClient(sources=sources, cache=kds.CertCache(Path("unused")))
    assert c.cek_url(CHIP_ID) == f"https://kdsintf.amd.com/cek/id/{CHIP_HEX}"
    assert len(CHIP_HEX) == 128
    assert c.ca_urls("milan")[0].endswith("/ask_ark_milan.cert")


def test_sources_override_by_env_and_argument() -> None:
    env = {kds.KDS_URL_ENV: "http://mirror.example/kds/"}
    from_env = kds.KdsSources.resolve(None, environ=env)
    assert from_env.ca == ("http://mirror.example/kds/ask_ark_{gen}.cert",)
    assert from_env.cek == "http://mirror.example/kds/cek/id/{chip_id}"
    from_arg = kds.KdsSources.resolve("https://other.example", environ=env)
    assert from_arg.ca == ("https://other.example/ask_ark_{gen}.cert",)


@pytest.mark.parametrize("url", ["ftp://mirror.example", "file:///etc", "mirror.example"])
def test_sources_refuse_other_schemes(url: str) -> None:
    with pytest.raises(UsageError, match="http:// or https://"):
        kds.KdsSources.resolve(url, environ={})


def test_unknown_generation_is_a_usage_error(tmp_path: Path) -> None:
    c = kds.KdsClient("http://127.0.0.1:9", cache=kds.CertCache(tmp_path))
    with pytest.raises(UsageError, match="naples, rome, milan, genoa, turin"):
        c.ca_urls("bergamo")


def test_cache_dir_precedence(tmp_path: Path) -> None:
    own, xdg = str(tmp_path / "own"), str(tmp_path / "xdg")
    env = {kds.CACHE_DIR_ENV: own, "XDG_CACHE_HOME": xdg}
    assert kds.default_cache_dir(env) == Path(own)
    assert kds.default_cache_dir({"XDG_CACHE_HOME": xdg}) == Path(xdg) / "sevlaunch"
    home = Path.home() / ".cache" / "sevlaunch"
    assert kds.default_cache_dir({"XDG_CACHE_HOME": "relative/dir"}) == home
    assert kds.default_cache_dir({}) == home


def test_write_atomic_replaces_whole_file_with_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "file.cert"
    kds.write_atomic(path, b"old")
    kds.write_atomic(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.cert"]


def test_write_atomic_reports_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(TrustStoreError, match=r"cannot write .*SEVLAUNCH_CACHE_DIR"):
        kds.write_atomic(blocker / "sub" / "x.cert", b"data")


# --- chip ids -----------------------------------------------------------------------------------


@given(st.binary(min_size=64, max_size=64))
def test_chip_id_in_every_file_form(chip_id: bytes) -> None:
    assume(not chip_id.isascii() or not chip_id.decode().isprintable())
    assert kds.parse_chip_id(chip_id) == chip_id
    assert kds.parse_chip_id(chip_id + bytes(64)) == chip_id  # legacy ioctl: two sockets
    assert kds.parse_chip_id(chip_id.hex().encode() + b"\n") == chip_id
    assert kds.parse_chip_id(chip_id.hex().upper().encode()) == chip_id
    assert kds.parse_chip_id(base64.b64encode(chip_id) + b"\n") == chip_id
    assert kds.chip_id_hex(chip_id) == chip_id.hex().upper()


@pytest.mark.parametrize("data", [b"", b"abcd", bytes(63), b"zz" * 64, b"00" * 32, bytes(65)])
def test_bad_chip_ids_are_usage_errors(data: bytes) -> None:
    with pytest.raises(UsageError, match="chip id"):
        kds.parse_chip_id(data)


def test_chip_id_hex_wants_64_bytes() -> None:
    with pytest.raises(UsageError, match="64 bytes"):
        kds.chip_id_hex(bytes(32))


# --- fetching the CA -------------------------------------------------------------------------------


@pytest.mark.parametrize("gen", ["naples", "rome", "milan"])
def test_fetch_ca_verifies_and_caches(
    fake_kds: FakeKds, vectors: Path, tmp_path: Path, gen: str
) -> None:
    serve_amd(fake_kds, vectors)
    fetched = client(fake_kds, tmp_path).fetch_ca(gen)
    assert fetched.generation == gen
    assert fetched.verified.root.name == gen
    assert fetched.verified.root.amd
    assert fetched.path == tmp_path / "cache" / "ca" / f"ask_ark_{gen}.cert"
    assert fetched.path.read_bytes() == ca_file(vectors, gen) == fetched.data
    assert stat.S_IMODE(fetched.path.stat().st_mode) == 0o644
    assert fake_kds.requests == [f"/ask_ark_{gen}.cert"]
    again = kds.CertCache(tmp_path / "cache").load_ca(gen)
    assert again is not None
    assert again.verified.root == fetched.verified.root


def test_fetch_ca_tries_the_next_source(fake_kds: FakeKds, vectors: Path, tmp_path: Path) -> None:
    fake_kds.serve("/b/ask_ark_rome.cert", ca_file(vectors, "rome"))
    sources = kds.KdsSources(
        (fake_kds.url + "/a/ask_ark_{gen}.cert", fake_kds.url + "/b/ask_ark_{gen}.cert"),
        fake_kds.url + "/cek/id/{chip_id}",
    )
    c = kds.KdsClient(sources=sources, cache=kds.CertCache(tmp_path), timeout=5)
    assert c.fetch_ca("rome").verified.root.name == "rome"
    assert fake_kds.requests == ["/a/ask_ark_rome.cert", "/b/ask_ark_rome.cert"]


def _assert_not_cached(tmp_path: Path) -> None:
    ca_dir = tmp_path / "cache" / "ca"
    assert not ca_dir.exists() or list(ca_dir.iterdir()) == []


def test_forged_ark_is_refused_and_not_cached(
    fake_kds: FakeKds, vectors: Path, tmp_path: Path
) -> None:
    body = read_vector(vectors, "amd/rome_ask.cert") + forged_ark(vectors, "rome")
    fake_kds.serve("/ask_ark_rome.cert", body)
    with pytest.raises(DownloadError, match=r"refused, not cached.*forged") as info:
        client(fake_kds, tmp_path).fetch_ca("rome")
    assert info.value.url == fake_kds.url + "/ask_ark_rome.cert"
    _assert_not_cached(tmp_path)


def test_another_generations_ca_is_refused(
    fake_kds: FakeKds, vectors: Path, tmp_path: Path
) -> None:
    fake_kds.serve("/ask_ark_rome.cert", ca_file(vectors, "milan"))
    with pytest.raises(DownloadError, match="AMD's milan CA, not the rome CA"):
        client(fake_kds, tmp_path).fetch_ca("rome")
    _assert_not_cached(tmp_path)


def test_ask_not_signed_by_the_ark_is_refused(
    fake_kds: FakeKds, vectors: Path, tmp_path: Path
) -> None:
    body = bytearray(ca_file(vectors, "rome"))
    body[0x100] ^= 1  # inside the ASK's modulus
    fake_kds.serve("/ask_ark_rome.cert", bytes(body))
    with pytest.raises(DownloadError, match=r"ARK -> ASK"):
        client(fake_kds, tmp_path).fetch_ca("rome")
    _assert_not_cached(tmp_path)


def test_html_instead_of_a_certificate_is_refused(fake_kds: FakeKds, tmp_path: Path) -> None:
    fake_kds.serve("/ask_ark_genoa.cert", b"<html><body>Accept the EULA</body></html>")
    with pytest.raises(DownloadError, match="AMD CA file"):
        client(fake_kds, tmp_path).fetch_ca("genoa")
    _assert_not_cached(tmp_path)


def test_http_404_names_url_status_and_what_to_do(fake_kds: FakeKds, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        client(fake_kds, tmp_path).fetch_ca("turin")
    err = info.value
    assert err.status == 404
    assert err.url == fake_kds.url + "/ask_ark_turin.cert"
    message = str(err)
    assert err.url in message
    assert "HTTP 404" in message
    assert "--ca FILE" in message
    _assert_not_cached(tmp_path)


def test_http_429_says_to_wait(fake_kds: FakeKds, tmp_path: Path) -> None:
    fake_kds.serve(f"/cek/id/{CHIP_HEX}", b"slow down", status=429)
    with pytest.raises(DownloadError, match=r"HTTP 429.*wait a minute") as info:
        client(fake_kds, tmp_path).fetch_cek(CHIP_ID)
    assert info.value.status == 429
    assert "--cek FILE" in str(info.value)


@pytest.mark.parametrize("length", [True, False])
def test_answers_over_64_kib_are_refused(fake_kds: FakeKds, tmp_path: Path, length: bool) -> None:
    fake_kds.serve("/ask_ark_rome.cert", bytes(kds.MAX_SIZE + 1), length=length)
    with pytest.raises(DownloadError, match="65536 bytes allowed"):
        client(fake_kds, tmp_path).fetch_ca("rome")
    _assert_not_cached(tmp_path)


def test_answer_of_exactly_64_kib_is_read_then_refused_as_not_a_ca(
    fake_kds: FakeKds, tmp_path: Path
) -> None:
    fake_kds.serve("/ask_ark_rome.cert", bytes(kds.MAX_SIZE), length=False)
    with pytest.raises(DownloadError, match="refused, not cached"):
        client(fake_kds, tmp_path).fetch_ca("rome")


def test_a_server_that_never_answers_times_out(fake_kds: FakeKds, tmp_path: Path) -> None:
    fake_kds.serve("/ask_ark_rome.cert", b"", hang=True)
    with pytest.raises(DownloadError, match=r"0\.3 s.*--ca FILE"):
        client(fake_kds, tmp_path, timeout=0.3).fetch_ca("rome")


def test_a_dribbling_server_is_cut_off_at_the_deadline(
    fake_kds: FakeKds, vectors: Path, tmp_path: Path
) -> None:
    # Each byte arrives well within the socket timeout; only the overall deadline stops it.
    fake_kds.serve("/ask_ark_rome.cert", ca_file(vectors, "rome"), dribble=True)
    with pytest.raises(DownloadError, match=r"within 0\.3 s"):
        client(fake_kds, tmp_path, timeout=0.3).fetch_ca("rome")
    _assert_not_cached(tmp_path)


def test_offline_connection_refused_is_clear(no_proxy: None, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    c = kds.KdsClient(url, cache=kds.CertCache(tmp_path), timeout=2)
    with pytest.raises(DownloadError, match=r"cannot connect: .*offline\?.*--ca FILE"):
        c.fetch_ca("milan")


def test_offline_unknown_host_is_clear(no_proxy: None, tmp_path: Path) -> None:
    c = kds.KdsClient("http://kds.sevlaunch.invalid", cache=kds.CertCache(tmp_path), timeout=2)
    with pytest.raises(DownloadError, match=r"kds\.sevlaunch\.invalid/cek/id/"):
        c.fetch_cek(CHIP_ID)


def test_refetch_replaces_the_cached_file(fake_kds: FakeKds, vectors: Path, tmp_path: Path) -> None:
    serve_amd(fake_kds, vectors)
    cache = kds.CertCache(tmp_path / "cache")
    kds.write_atomic(cache.ca_path("rome"), b"stale")
    client(fake_kds, tmp_path).fetch_ca("rome")
    assert cache.ca_path("rome").read_bytes() == ca_file(vectors, "rome")


# --- the cache ----------------------------------------------------------------------------------


def test_load_ca_absent_is_none(tmp_path: Path) -> None:
    assert kds.CertCache(tmp_path).load_ca("genoa") is None


def test_tampered_cached_ca_is_refused_on_load(vectors: Path, tmp_path: Path) -> None:
    cache = kds.CertCache(tmp_path)
    body = read_vector(vectors, "amd/rome_ask.cert") + forged_ark(vectors, "rome")
    kds.write_atomic(cache.ca_path("rome"), body)
    with pytest.raises(TrustStoreError, match=r"ask_ark_rome\.cert is not AMD's rome CA.*delete"):
        cache.load_ca("rome")


def test_cached_ca_under_the_wrong_name_is_refused(vectors: Path, tmp_path: Path) -> None:
    cache = kds.CertCache(tmp_path)
    kds.write_atomic(cache.ca_path("rome"), ca_file(vectors, "milan"))
    with pytest.raises(TrustStoreError, match="not AMD's rome CA"):
        cache.load_ca("rome")


# --- fetching the CEK ---------------------------------------------------------------------------


def test_fetch_cek_by_uppercase_chip_id(fake_kds: FakeKds, vectors: Path, tmp_path: Path) -> None:
    serve_amd(fake_kds, vectors)
    fetched = client(fake_kds, tmp_path).fetch_cek(CHIP_ID)
    assert fake_kds.requests == [f"/cek/id/{CHIP_HEX}"]
    assert fetched.chip_id == CHIP_HEX
    assert fetched.path == tmp_path / "cache" / "cek" / f"{CHIP_HEX}.cert"
    assert fetched.path.read_bytes() == read_vector(vectors, "platforms/rome/cek.cert")
    loaded = kds.CertCache(tmp_path / "cache").load_cek(CHIP_ID)
    assert loaded is not None
    assert loaded.cek == fetched.cek


def _unsigned_cek(vectors: Path) -> bytes:
    cek = SevCert.from_bytes(read_vector(vectors, "platforms/rome/cek.cert"))
    return cek.with_signature(1, Signature.empty()).to_bytes()


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        ("unsigned", _unsigned_cek, "no ASK signature"),
        ("pdh", lambda v: read_vector(v, "platforms/rome/pdh.cert"), "expected a CEK"),
        ("short", lambda v: read_vector(v, "platforms/rome/cek.cert")[:-1], "SEV certificate"),
    ],
)
def test_fetch_cek_refuses_what_is_not_a_signed_cek(
    fake_kds: FakeKds,
    vectors: Path,
    tmp_path: Path,
    name: str,
    body: Callable[[Path], bytes],
    match: str,
) -> None:
    fake_kds.serve(f"/cek/id/{CHIP_HEX}", body(vectors))
    with pytest.raises(DownloadError, match=f"refused, not cached: .*{match}"):
        client(fake_kds, tmp_path).fetch_cek(CHIP_ID)
    assert not (tmp_path / "cache" / "cek").exists()


# --- choosing the CA for a chain without one ------------------------------------------------------


def _cek(vectors: Path, gen: str) -> SevCert:
    return SevCert.from_bytes(read_vector(vectors, f"platforms/{gen}/cek.cert"))


def _cache_with(vectors: Path, tmp_path: Path, *gens: str) -> kds.CertCache:
    cache = kds.CertCache(tmp_path)
    for gen in gens:
        kds.write_atomic(cache.ca_path(gen), ca_file(vectors, gen))
    return cache


def test_candidate_generations_follow_the_ask_slot(vectors: Path) -> None:
    assert kds.candidate_generations(_cek(vectors, "naples")) == ("naples",)
    assert kds.candidate_generations(_cek(vectors, "rome")) == ("rome", "milan", "genoa", "turin")
    unsigned = SevCert.from_bytes(_unsigned_cek(vectors))
    assert kds.candidate_generations(unsigned) == ()


@pytest.mark.parametrize("gen", ["naples", "rome"])
def test_ca_for_cek_picks_the_signing_generation(vectors: Path, tmp_path: Path, gen: str) -> None:
    cache = _cache_with(vectors, tmp_path, "naples", "milan", "rome")
    assert kds.ca_for_cek(_cek(vectors, gen), cache).generation == gen


def test_ca_for_cek_skips_a_cached_ca_that_did_not_sign(vectors: Path, tmp_path: Path) -> None:
    cache = _cache_with(vectors, tmp_path, "milan")
    calls: list[str] = []

    def fetch(gen: str) -> kds.CachedCa:
        calls.append(gen)
        if gen != "rome":
            raise TrustStoreError(f"no {gen} here")
        return kds.CachedCa(gen, Path("x"), b"", kds.verify_amd_ca(ca_file(vectors, gen), gen))

    # rome is not cached, so it is fetched; milan is cached and did not sign: not fetched
    found = kds.ca_for_cek(_cek(vectors, "rome"), cache, fetch=fetch)
    assert found.generation == "rome"
    assert calls == ["rome"]


def test_ca_for_cek_without_cache_says_what_to_run(vectors: Path, tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError) as info:
        kds.ca_for_cek(_cek(vectors, "naples"), kds.CertCache(tmp_path))
    message = str(info.value)
    assert "no AMD CA file for naples is cached" in message
    assert "sevlaunch owner fetch-ca --gen GEN" in message
    assert "--ca FILE" in message
    assert "--fetch" in message


def test_ca_for_cek_names_the_cached_ones_that_did_not_sign(vectors: Path, tmp_path: Path) -> None:
    cache = _cache_with(vectors, tmp_path, "milan")
    with pytest.raises(TrustStoreError, match="cached milan CA did not sign") as info:
        kds.ca_for_cek(_cek(vectors, "rome"), cache)
    assert "rome or genoa or turin" in str(info.value)


def test_ca_for_cek_reports_failed_downloads(vectors: Path, tmp_path: Path) -> None:
    def fetch(gen: str) -> kds.CachedCa:
        raise TrustStoreError(f"{gen} is offline")

    with pytest.raises(TrustStoreError, match=r"naples is offline.*--ca FILE"):
        kds.ca_for_cek(_cek(vectors, "naples"), kds.CertCache(tmp_path), fetch=fetch)


def test_ca_for_cek_fails_the_link_when_every_candidate_was_tried(
    vectors: Path, tmp_path: Path
) -> None:
    cek = _cek(vectors, "naples")
    bad = cek.with_signature(
        1, Signature.rsa(cek.sig1.usage, cek.sig1.algorithm, cek.sig1.rsa_s ^ 1)
    )
    with pytest.raises(ChainError, match="none of AMD's naples ASKs") as info:
        kds.ca_for_cek(bad, _cache_with(vectors, tmp_path, "naples"))
    assert info.value.link == "ASK -> CEK"


def test_ca_for_cek_unsigned_cek_names_the_cek(vectors: Path, tmp_path: Path) -> None:
    unsigned = SevCert.from_bytes(_unsigned_cek(vectors))
    with pytest.raises(MissingCekSignatureError, match=r"kdsintf\.amd\.com/cek/id"):
        kds.ca_for_cek(unsigned, kds.CertCache(tmp_path))
