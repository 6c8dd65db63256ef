"""Where the broker's SNP certificates come from: a key server that does not answer (or is
throttled, or fails) decides nothing, one that says the certificate does not exist refuses;
a CRL is fetched again once older than its TTL, so a revocation reaches the broker."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sevlaunch.broker.snp_certs import SnpCertificates
from sevlaunch.crypto.snp.certs import load_certs
from sevlaunch.errors import LaunchRefusedError, ServiceUnavailableError
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.tcb import Generation
from tests.broker.snp_lab import SnpLab, snp_lab


@pytest.fixture(scope="module")
def lab() -> Iterator[SnpLab]:
    with snp_lab() as made:
        yield made


def _server(status: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _certs(
    url: str, tmp_path: Path, ticks: Ticks | None = None, ttl: float = 60
) -> SnpCertificates:
    import time

    return SnpCertificates(url, tmp_path, crl_ttl=ttl, clock=time.time, monotonic=ticks or Ticks())


def _trusted(lab: SnpLab) -> dict[str, Generation]:
    return {load_certs(lab.cert_chain)[1].fingerprint: Generation.MILAN}


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (429, ServiceUnavailableError, "kds-unavailable"),
        (500, ServiceUnavailableError, "kds-unavailable"),
        (503, ServiceUnavailableError, "kds-unavailable"),
        (404, LaunchRefusedError, "untrusted-signer"),  # no such certificate: a refusal
    ],
)
def test_what_a_key_server_answers_decides_or_defers(
    lab: SnpLab, tmp_path: Path, status: int, error: type[Exception], reason: str
) -> None:
    server = _server(status)
    try:
        report = AttestationReport.from_bytes(lab.guest().report(bytes(32)))
        with pytest.raises(error) as info:
            _certs(f"http://127.0.0.1:{server.server_address[1]}", tmp_path).for_report(
                report, _trusted(lab), has_table=False
            )
        assert getattr(info.value, "reason", None) == reason
    finally:
        server.shutdown()
        server.server_close()


def test_a_key_server_whose_root_is_not_pinned_is_a_refusal(lab: SnpLab, tmp_path: Path) -> None:
    report = AttestationReport.from_bytes(lab.guest().report(bytes(32)))
    with pytest.raises(LaunchRefusedError) as info:
        _certs(lab.kds.url, tmp_path).for_report(report, {}, has_table=False)
    assert info.value.reason == "untrusted-signer"
    assert "pinned" in str(info.value)


def test_the_crl_is_fetched_again_after_its_ttl(lab: SnpLab, tmp_path: Path) -> None:
    tcb = lab.older_tcb(3)
    report = AttestationReport.from_bytes(lab.guest(lab.firmware(tcb)).report(bytes(32)))
    ticks = Ticks()
    certs = _certs(lab.kds.url, tmp_path, ticks, ttl=60)
    first = certs.for_report(report, _trusted(lab), has_table=False)
    assert first.leaf is not None
    lab.kds.snp.revoke(tcb.to_int())
    ticks.now = 59
    assert certs.for_report(report, _trusted(lab), has_table=False).crl == first.crl
    ticks.now = 61
    assert certs.for_report(report, _trusted(lab), has_table=False).crl != first.crl


def test_a_version_2_report_finds_its_generation_at_the_key_server(
    lab: SnpLab, tmp_path: Path
) -> None:
    """Version 2 reports carry no CPUID: the chip's VCEK is looked for under each 64-byte-chip
    generation that has a trusted root, in the roots' order, and found under its own."""
    v3 = AttestationReport.from_bytes(lab.guest().report(bytes(32)))
    v2 = dataclasses.replace(v3, version=2, cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0)
    assert v2.generation is None
    trusted = {"00" * 32: Generation.GENOA, **_trusted(lab)}  # Genoa tried first: 404
    found = _certs(lab.kds.url, tmp_path).for_report(v2, trusted, has_table=False)
    assert found.leaf == _certs(lab.kds.url, tmp_path).for_report(v3, trusted, False).leaf
    with pytest.raises(LaunchRefusedError) as info:  # no generation of its roots has the chip
        _certs(lab.kds.url, tmp_path / "2").for_report(v2, {}, has_table=False)
    assert info.value.reason == "untrusted-signer"
