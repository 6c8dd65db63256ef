"""SNP side of sevlaunch.kds against a local stand-in for AMD's KDS (no network): the VCEK URL
forms (Milan/Genoa 64-byte hwid; Turin 8-byte hwid and fmcSPL), cert_chain and CRL for both
chains, verify-before-cache, and HTTP 429 honoured with Retry-After and backoff."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.crypto.snp.chain import SignerKind
from sevlaunch.errors import DownloadError, TrustStoreError, UsageError
from sevlaunch.formats.snp import AttestationReport, Generation, TcbLayout, TcbVersion
from sevlaunch.kds import _io
from sevlaunch.kds.snp import SnpKdsClient, cert_chain_path, crl_path, kds_base, vcek_path
from tests.kds.fake import FakeKds, Reply, running_kds
from tests.snp_pki import AT, crl, pki
from tests.snp_vectors import SIGNED

SNP = "snp"
PINNED = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
TURIN_HWID = bytes.fromhex("1e550a8ee5cf9f4d")
TURIN_TCB = TcbVersion(TcbLayout.TURIN, 0, 0, 0, 9, fmc=0)


@pytest.fixture
def fake_kds(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKds]:
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    with running_kds() as fake:
        yield fake


def read(vectors: Path, rel: str) -> bytes:
    return (vectors / SNP / rel).read_bytes()


def client(fake: FakeKds, tmp_path: Path, **kwargs: Any) -> SnpKdsClient:
    sleeps: list[float] = []
    made = SnpKdsClient(
        fake.url,
        cache_dir=tmp_path / "cache",
        timeout=5.0,
        sleep=sleeps.append,
        clock=lambda: PINNED,
        **kwargs,
    )
    made.sleeps = sleeps  # type: ignore[attr-defined]
    return made


def virtee_report(vectors: Path) -> AttestationReport:
    return AttestationReport.from_bytes(SIGNED[0].report_bytes(vectors))


def test_vcek_urls(vectors: Path) -> None:
    report = virtee_report(vectors)
    tcb = report.tcb("reported_tcb", TcbLayout.MILAN)
    path = vcek_path(Generation.MILAN, report.chip_id, tcb)
    assert path == (
        f"/vcek/v1/Milan/{report.chip_id.hex()}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
    )
    turin = vcek_path(Generation.TURIN, TURIN_HWID + bytes(56), TURIN_TCB)
    assert turin == (
        "/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=00&blSPL=00&teeSPL=00&snpSPL=00&ucodeSPL=09"
    )
    assert cert_chain_path(Generation.GENOA, SignerKind.VLEK) == "/vlek/v1/Genoa/cert_chain"
    assert crl_path(Generation.TURIN) == "/vcek/v1/Turin/crl"
    with pytest.raises(UsageError, match="MASK_CHIP_ID"):
        vcek_path(Generation.MILAN, bytes(64), tcb)
    with pytest.raises(UsageError, match="layout"):
        vcek_path(Generation.TURIN, TURIN_HWID, tcb)
    assert kds_base(None, {}) == "https://kdsintf.amd.com"
    assert kds_base(None, {"SEVLAUNCH_KDS_URL": "http://m.example/x/"}) == "http://m.example/x"
    with pytest.raises(UsageError):
        kds_base("ftp://x", {})


def test_fetch_vcek_and_chain(vectors: Path, fake_kds: FakeKds, tmp_path: Path) -> None:
    report = virtee_report(vectors)
    tcb = report.tcb("reported_tcb", TcbLayout.MILAN)
    fake_kds.serve("/vcek/v1/Milan/cert_chain", read(vectors, "virtee-sev/tests/cert_chain_milan"))
    fake_kds.serve(
        vcek_path(Generation.MILAN, report.chip_id, tcb),
        read(vectors, "virtee-sev/tests/vcek_milan.der"),
    )
    kds = client(fake_kds, tmp_path)
    got = kds.vcek_for_report(report, Generation.MILAN)
    assert got.chain.product is Generation.MILAN
    assert got.path.exists()
    assert fake_kds.requests == [
        "/vcek/v1/Milan/cert_chain",
        vcek_path(Generation.MILAN, report.chip_id, tcb),
    ]
    again = kds.vcek_for_report(report, Generation.MILAN, fetch=False)  # from the cache
    assert again.data == got.data
    assert len(fake_kds.requests) == 2


def test_wrong_vcek_is_not_cached(vectors: Path, fake_kds: FakeKds, tmp_path: Path) -> None:
    report = virtee_report(vectors)
    tcb = report.tcb("reported_tcb", TcbLayout.MILAN)
    fake_kds.serve("/vcek/v1/Milan/cert_chain", read(vectors, "virtee-sev/tests/cert_chain_milan"))
    fake_kds.serve(
        vcek_path(Generation.MILAN, report.chip_id, tcb),
        read(vectors, "go-sev-guest/testdata/vcek.testcer"),
    )  # another chip and TCB
    kds = client(fake_kds, tmp_path)
    with pytest.raises(DownloadError, match="refused, not cached"):
        kds.fetch_vcek(Generation.MILAN, report.chip_id, tcb)
    assert not kds.cache.vcek_path(Generation.MILAN, report.chip_id, tcb).exists()
    with pytest.raises(TrustStoreError, match="add --fetch"):
        kds.vcek_for_report(report, Generation.MILAN, fetch=False)


def test_turin_vcek(vectors: Path, fake_kds: FakeKds, tmp_path: Path) -> None:
    chip = TURIN_HWID + bytes(56)
    fake_kds.serve("/vcek/v1/Turin/cert_chain", read(vectors, "virtee-sev/tests/cert_chain_turin"))
    fake_kds.serve(
        vcek_path(Generation.TURIN, chip, TURIN_TCB),
        read(vectors, "virtee-sev/tests/vcek_turin.der"),
    )
    got = client(fake_kds, tmp_path).fetch_vcek(Generation.TURIN, chip, TURIN_TCB)
    assert got.chain.extensions.fmc_spl == 0


def test_forged_chain_is_refused(vectors: Path, fake_kds: FakeKds, tmp_path: Path) -> None:
    fake_kds.serve(
        "/vcek/v1/Milan/cert_chain", read(vectors, "go-sev-guest/trust/ask_ark_genoa.pem")
    )
    fake_kds.serve(
        "/vlek/v1/Milan/cert_chain", read(vectors, "go-sev-guest/trust/ask_ark_milan_vlek.pem")
    )
    kds = client(fake_kds, tmp_path)
    with pytest.raises(DownloadError, match="Genoa's, not Milan's"):
        kds.fetch_ca(Generation.MILAN)
    assert not kds.cache.ca_path(Generation.MILAN, SignerKind.VCEK).exists()
    vlek = kds.fetch_ca(Generation.MILAN, SignerKind.VLEK)
    assert vlek.verified.ask.common_name == "SEV-VLEK-Milan"
    with pytest.raises(TrustStoreError, match="fetch ca"):
        kds.ca(Generation.GENOA, fetch=False)


def test_tampered_cache_is_refused(vectors: Path, fake_kds: FakeKds, tmp_path: Path) -> None:
    fake_kds.serve("/vcek/v1/Milan/cert_chain", read(vectors, "virtee-sev/tests/cert_chain_milan"))
    kds = client(fake_kds, tmp_path)
    cached = kds.fetch_ca(Generation.MILAN)
    cached.path.write_bytes(read(vectors, "go-sev-guest/trust/ask_ark_genoa.pem"))
    with pytest.raises(TrustStoreError, match="delete it"):
        kds.load_ca(Generation.MILAN)


def test_crl(fake_kds: FakeKds, tmp_path: Path) -> None:
    p = pki()
    fake_kds.serve("/vcek/v1/Milan/cert_chain", p.ca_pem())
    fake_kds.serve("/vcek/v1/Milan/crl", crl("arkMilan", "ARK-Milan", (5,)))
    fake_kds.serve("/vlek/v1/Milan/cert_chain", p.ca_pem(vlek=True))
    fake_kds.serve("/vlek/v1/Milan/crl", crl("askMilan", "ARK-Milan"))  # signed by the ASK
    kds = client(fake_kds, tmp_path, trusted_arks=p.trusted)
    kds.clock = lambda: AT
    got = kds.fetch_crl(Generation.MILAN)
    assert got.verified.revoked == frozenset({5})
    loaded = kds.load_crl(Generation.MILAN)
    assert loaded is not None
    assert loaded.data == got.data
    with pytest.raises(DownloadError, match="does not verify"):
        kds.fetch_crl(Generation.MILAN, SignerKind.VLEK)
    assert kds.load_crl(Generation.MILAN, SignerKind.VLEK) is None


def test_429_honours_retry_after(vectors: Path, fake_kds: FakeKds, tmp_path: Path) -> None:
    body = read(vectors, "virtee-sev/tests/cert_chain_milan")
    fake_kds.queued["/vcek/v1/Milan/cert_chain"] = [
        Reply(b"slow down", 429, headers={"Retry-After": "7"}),
        Reply(b"slow down", 429),
    ]
    fake_kds.serve("/vcek/v1/Milan/cert_chain", body)
    kds = client(fake_kds, tmp_path)
    assert kds.fetch_ca(Generation.MILAN).data == body
    assert kds.sleeps == [7.0, 2.0]  # type: ignore[attr-defined]


def test_429_gives_up(fake_kds: FakeKds, tmp_path: Path) -> None:
    fake_kds.queued["/vcek/v1/Milan/cert_chain"] = [Reply(b"", 429) for _ in range(3)]
    kds = client(fake_kds, tmp_path, retries=2)
    with pytest.raises(DownloadError) as info:
        kds.fetch_ca(Generation.MILAN)
    assert [f[2] for f in info.value.failures] == [429, 429, 429]
    assert kds.sleeps == [1.0, 2.0]  # type: ignore[attr-defined]
    assert "limits request rates" in str(info.value)


def test_retry_delay() -> None:
    assert _io.retry_delay("3", 0, 60) == 3
    assert _io.retry_delay("600", 0, 60) == 60
    assert _io.retry_delay(None, 3, 60) == 8
    assert _io.retry_delay("garbage", 1, 60) == 2
    assert _io.retry_delay("Wed, 21 Oct 2015 07:28:00 GMT", 0, 60) == 0  # in the past
