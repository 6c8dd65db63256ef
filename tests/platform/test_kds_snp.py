"""The emulated key server's SNP routes against a real platform: AMD's URL forms, the hwid
rule per generation, a signed CRL that lists revoked VCEKs, and 429 throttling; fetched by
sevlaunch's own SNP KDS client as from AMD."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.crypto.snp.certs import load_cert, load_certs
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion
from sevlaunch.kds.snp import SnpKdsClient, vcek_path
from sevlaunch.platform import snp_host
from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.kds_server import KdsServer
from sevlaunch.platform.kds_snp import Throttle, parse_tcb
from tests.platform.templates import template_state


@pytest.fixture
def kds(real_service: BackgroundService) -> Iterator[KdsServer]:
    server = KdsServer(("127.0.0.1", 0), str(real_service.socket_path))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _get(server: KdsServer, path: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _platform(running: BackgroundService) -> snp_host.SnpInfo:
    with PlatformClient(running.socket_path) as client:
        return client.run(snp_host.info())


def test_vcek_cert_chain_and_crl_fetch_and_verify_as_from_amd(
    kds: KdsServer, real_service: BackgroundService, tmp_path: Path
) -> None:
    info = _platform(real_service)
    status, chain, _ = _get(kds, "/vcek/v1/Milan/cert_chain")
    assert status == 200
    ark = load_certs(chain)[1]
    client = SnpKdsClient(
        kds.url, cache_dir=tmp_path, trusted_arks={ark.fingerprint: Generation.MILAN}
    )
    tcb = TcbVersion.from_int(info.reported_tcb, TcbLayout.MILAN)
    vcek = client.fetch_vcek(Generation.MILAN, info.hwid, tcb)
    assert vcek.chain.extensions.hwid == info.hwid
    assert client.fetch_crl(Generation.MILAN).verified.revoked == frozenset()
    assert _get(kds, "/vlek/v1/Milan/cert_chain")[0] == 200


def test_the_hwid_form_and_product_must_be_the_chips(
    kds: KdsServer, real_service: BackgroundService
) -> None:
    info = _platform(real_service)
    tcb = TcbVersion.from_int(info.reported_tcb, TcbLayout.MILAN)
    good = vcek_path(Generation.MILAN, info.hwid, tcb)
    assert _get(kds, good)[0] == 200
    assert _get(kds, good.replace(info.hwid.hex(), info.hwid[:8].hex()))[0] == 404  # Turin's form
    assert _get(kds, good.replace("/Milan/", "/Genoa/"))[0] == 404
    assert _get(kds, good.replace(info.hwid.hex(), "00" * 64))[0] == 404  # another chip
    assert _get(kds, good.split("&ucodeSPL")[0])[0] == 400


def test_a_revoked_tcb_puts_its_vcek_on_the_crl(
    kds: KdsServer, real_service: BackgroundService
) -> None:
    info = _platform(real_service)
    tcb = TcbVersion.from_int(info.reported_tcb, TcbLayout.MILAN)
    vcek = load_cert(_get(kds, vcek_path(Generation.MILAN, info.hwid, tcb))[1])
    kds.snp.revoke(info.reported_tcb)
    from sevlaunch.crypto.snp.crl import load_crl

    crl = load_crl(_get(kds, "/vcek/v1/Milan/crl")[1])
    assert [r.serial_number for r in crl] == [vcek.serial]


def test_throttling_answers_429_with_retry_after(real_service: BackgroundService) -> None:
    ticks = iter([0.0, 0.1, 0.2, 5.0])
    server = KdsServer(
        ("127.0.0.1", 0),
        str(real_service.socket_path),
        snp_throttle=Throttle(limit=2, window=1.0, clock=lambda: next(ticks)),
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        assert _get(server, "/vcek/v1/Milan/cert_chain")[0] == 200
        assert _get(server, "/vcek/v1/Milan/cert_chain")[0] == 200
        status, _, headers = _get(server, "/vcek/v1/Milan/cert_chain")
        assert (status, headers.get("Retry-After")) == (429, "1")
        assert _get(server, "/vcek/v1/Milan/cert_chain")[0] == 200  # the window moved on
    finally:
        server.shutdown()
        server.server_close()


def test_tcb_texts() -> None:
    assert (
        parse_tcb("bl=1,tee=0,snp=2,ucode=0x47,fmc=0", TcbLayout.TURIN) == 0x47_00_00_00_02_00_01_00
    )
    assert parse_tcb("0xdb18000000000004", TcbLayout.MILAN) == 0xDB18000000000004
    from sevlaunch.errors import UsageError

    with pytest.raises(UsageError):
        parse_tcb("fmc=1", TcbLayout.MILAN)


def _turin_state(state_dir: Path) -> Path:
    """The template chip as a Turin part: its SEV identity kept, its SNP PKI made anew."""
    import json

    from sevlaunch.platform.state import STATE_FILE, StoredState

    stored = StoredState.from_bytes(template_state(), path=state_dir)
    doc = json.loads(stored.firmware)
    doc.pop("snp", None)
    doc["version"] = 1
    firmware = (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()
    state_dir.mkdir(mode=0o700)
    (state_dir / STATE_FILE).write_bytes(StoredState("turin", firmware).to_bytes())
    (state_dir / STATE_FILE).chmod(0o600)
    return state_dir


def test_turin_names_chips_by_8_bytes_and_refuses_the_64_byte_form(short_dir: Path) -> None:
    from sevlaunch.platform.service import open_service

    service = open_service(_turin_state(short_dir / "turin"))
    try:
        with BackgroundService(service, short_dir / "turin.sock") as running:
            server = KdsServer(("127.0.0.1", 0), str(running.socket_path))
            thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
            thread.start()
            try:
                info = _platform(running)
                assert (info.product, len(info.hwid)) == ("Turin", 8)
                tcb = TcbVersion.from_int(info.reported_tcb, TcbLayout.TURIN)
                good = vcek_path(Generation.TURIN, info.hwid + bytes(56), tcb)
                assert "fmcSPL=00&blSPL=01" in good
                status, der, _ = _get(server, good)
                assert status == 200
                assert load_cert(der).extensions.hwid == info.hwid
                long_form = good.replace(info.hwid.hex(), (info.hwid + bytes(56)).hex())
                assert _get(server, long_form)[0] == 404
                assert _get(server, good.replace("fmcSPL=00&", ""))[0] == 400
            finally:
                server.shutdown()
                server.server_close()
    finally:
        assert service.store is not None
        service.store.unlock()
