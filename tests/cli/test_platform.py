"""``sevlaunch platform`` admin commands against a running service (real firmware)."""

from __future__ import annotations

import json
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sevlaunch.cli import cli
from sevlaunch.formats.chain import PlatformChain
from sevlaunch.formats.sevcert import SIZE as CERT_SIZE
from sevlaunch.formats.sevcert import SevCert
from sevlaunch.orchestrate.services import cli as cli_argv
from sevlaunch.orchestrate.services import start_service
from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.service import open_service
from tests.platform.conftest import copy_template
from tests.platform.test_client import _owner_signed


@pytest.fixture
def sock() -> Iterator[Path]:
    """The socket of a running service over a copy of the template platform."""
    root = Path(tempfile.mkdtemp(prefix="sevc-", dir="/tmp"))
    service = open_service(copy_template(root / "state"))
    with BackgroundService(service, root / "sock"):
        yield root / "sock"
    assert service.store is not None
    service.store.unlock()
    shutil.rmtree(root, ignore_errors=True)


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["platform", *map(str, args)], env=env)


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def test_status_human_and_json(sock: Path) -> None:
    human = ok("status", "--platform", sock).output
    assert "API version: 1.55" in human
    assert "state: UNINIT" in human
    assert "owner: self-owned" in human
    ok("init", "--platform", sock)
    data = json.loads(ok("status", "--platform", sock, "--json").output)
    assert data == {
        "api_major": 1,
        "api_minor": 55,
        "build_id": 21,
        "state": "INIT",
        "owner": "self",
        "es_configured": True,
        "guest_count": 0,
    }


def test_socket_comes_from_the_environment(sock: Path) -> None:
    result = run("status", "--json", env={"SEVLAUNCH_PLATFORM": str(sock)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["state"] == "UNINIT"


def test_without_a_socket_the_default_is_the_one_serve_listens_on(tmp_path: Path) -> None:
    result = run("status", env={"SEVLAUNCH_PLATFORM": "", "XDG_RUNTIME_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert f"no platform service at {tmp_path}/sevlaunch/platform.sock" in result.output
    assert "--platform" in result.output
    serve = run("serve", "--help", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert "unix:RUNDIR/platform.sock" in serve.output


def test_the_old_socket_option_still_works_with_a_deprecation_line(sock: Path) -> None:
    result = run("status", "--socket", sock, "--json")
    assert result.exit_code == 0, result.output
    assert "--socket is deprecated" in result.stderr
    assert json.loads(result.stdout)["state"] == "UNINIT"


def test_no_service_is_reported_with_what_to_do(tmp_path: Path) -> None:
    result = run("get-id", "--platform", tmp_path / "none")
    assert result.exit_code == 1
    assert "no platform service at" in result.output
    assert "sevlaunch platform serve" in result.output


def test_firmware_errors_are_reported_in_qemu_style(sock: Path) -> None:
    ok("init", "--platform", sock, "--no-es")
    result = run("init", "--platform", sock)
    assert result.exit_code == 1
    assert "INIT failed: fw_error=1 'Platform state is invalid'" in result.output


def test_export_full_verifies_with_owner_verify(sock: Path, tmp_path: Path) -> None:
    chain, ark = tmp_path / "chain.cert", tmp_path / "ark.cert"
    ok("export", "--platform", sock, "--out", chain, "--full")
    ok("export-root", "--platform", sock, "--out", ark)
    result = CliRunner().invoke(
        cli, ["owner", "verify", "--chain", str(chain), "--trust-root", str(ark)]
    )
    assert result.exit_code == 0, result.output
    assert "PDH verified" in result.output


def test_export_root_writes_the_ca_file_that_owner_and_broker_take(
    sock: Path, tmp_path: Path
) -> None:
    """ASK ‖ ARK, as AMD's ask_ark_<gen>.cert: the root to trust and the CA of a chain
    without one; --ark-only still writes the ARK alone."""
    from sevlaunch.broker.attest import parse_root
    from sevlaunch.formats.chain import CaChain

    ca, ark, chain = tmp_path / "ask_ark_emulated.cert", tmp_path / "ark", tmp_path / "chain"
    assert "ASK ‖ ARK" in ok("export-root", "--platform", sock, "--out", ca).output
    ok("export-root", "--platform", sock, "--out", ark, "--ark-only")
    parsed = CaChain.from_bytes(ca.read_bytes())
    assert parsed.ark.to_bytes() == ark.read_bytes()
    root = parse_root(ca.read_bytes(), "emulated")  # what broker trust add does with it
    assert root.ask is not None
    ok("export", "--platform", sock, "--out", chain)  # the CEK unsigned, no ASK or ARK
    cek = tmp_path / "cek"
    cek.write_bytes(_signed_cek(sock))
    for trust in (ca, ark):  # --ca takes the file, --trust-root takes it or the ARK alone
        args = ["--chain", chain, "--ca", ca, "--cek", cek, "--trust-root", trust]
        result = CliRunner().invoke(cli, ["owner", "verify", *map(str, args)])
        assert result.exit_code == 0, result.output


def _signed_cek(sock: Path) -> bytes:
    from sevlaunch.platform.client import PlatformClient

    with PlatformClient(str(sock)) as client:
        return client.signed_cek()


def test_plain_export_has_the_unsigned_cek_and_fails_verification(
    sock: Path, tmp_path: Path
) -> None:
    chain, ark = tmp_path / "chain.cert", tmp_path / "ark.cert"
    ok("export", "--platform", sock, "--out", chain)
    ok("export-root", "--platform", sock, "--out", ark)
    data = chain.read_bytes()
    assert len(data) == 4 * CERT_SIZE
    assert PlatformChain.from_bytes(data).cek.sig2.is_empty
    result = CliRunner().invoke(
        cli, ["owner", "verify", "--chain", str(chain), "--trust-root", str(ark)]
    )
    assert result.exit_code == 1


def test_get_id_prints_the_chip_id_in_hex(sock: Path) -> None:
    out = ok("get-id", "--platform", sock).output.strip()
    assert len(bytes.fromhex(out)) == 64
    assert out == ok("get-id", "--platform", sock).output.strip()


def test_ownership_with_csr_and_import_then_reset(sock: Path, tmp_path: Path) -> None:
    csr = tmp_path / "pek.csr"
    ok("pek-csr", "--platform", sock, "--out", csr)
    pek, oca = _owner_signed(csr.read_bytes())
    (tmp_path / "pek.cert").write_bytes(pek)
    (tmp_path / "oca.cert").write_bytes(oca)
    ok(
        "pek-cert-import",
        "--platform",
        sock,
        "--pek",
        tmp_path / "pek.cert",
        "--oca",
        tmp_path / "oca.cert",
    )
    assert json.loads(ok("status", "--platform", sock, "--json").output)["owner"] == "external"
    ok("reset", "--platform", sock)
    data = json.loads(ok("status", "--platform", sock, "--json").output)
    assert (data["owner"], data["state"]) == ("self", "UNINIT")


def test_pek_gen_and_pdh_gen_change_the_chain(sock: Path, tmp_path: Path) -> None:
    def chain() -> PlatformChain:
        ok("export", "--platform", sock, "--out", tmp_path / "c")
        return PlatformChain.from_bytes((tmp_path / "c").read_bytes())

    first = chain()
    ok("pdh-gen", "--platform", sock)
    second = chain()
    assert (second.pdh != first.pdh, second.pek == first.pek) == (True, True)
    ok("pek-gen", "--platform", sock)
    third = chain()
    assert third.pek != second.pek
    assert third.oca != second.oca
    ok("shutdown", "--platform", sock)
    assert json.loads(ok("status", "--platform", sock, "--json").output)["state"] == "UNINIT"


def test_unreadable_input_is_a_usage_error(sock: Path, tmp_path: Path) -> None:
    result = run(
        "pek-cert-import", "--platform", sock, "--pek", tmp_path / "x", "--oca", tmp_path / "y"
    )
    assert result.exit_code == 2
    assert "cannot read PEK certificate" in result.output


def test_bad_certificate_import_is_a_firmware_error(sock: Path, tmp_path: Path) -> None:
    csr = tmp_path / "pek.csr"
    ok("pek-csr", "--platform", sock, "--out", csr)
    pek, oca = _owner_signed(csr.read_bytes())
    forged = replace(SevCert.from_bytes(oca), api_major=9).to_bytes()  # breaks its signature
    (tmp_path / "pek.cert").write_bytes(pek)
    (tmp_path / "oca.cert").write_bytes(forged)
    result = run(
        "pek-cert-import",
        "--platform",
        sock,
        "--pek",
        tmp_path / "pek.cert",
        "--oca",
        tmp_path / "oca.cert",
    )
    assert result.exit_code == 1
    assert "PEK_CERT_IMPORT failed: fw_error=" in result.output


def _peer(path: Path, answer: bytes | None) -> socketserver.UnixStreamServer:
    """A Unix-socket server that is not a platform: silent, or answering ``answer``."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(4096)
            if answer is None:
                self.request.recv(4096)  # say nothing until the client hangs up
            else:
                self.request.sendall(answer)

    server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, "did not answer as a platform service within 3 s"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "the peer is not a platform service"),
        (b"", "it is not a platform service"),
    ],
    ids=["silent", "http", "hangs-up"],
)
def test_a_socket_that_is_not_a_platform_is_named_quickly(
    tmp_path: Path, answer: bytes | None, expected: str
) -> None:
    path = tmp_path / "other.sock"
    server = _peer(path, answer)
    try:
        result = run("status", "--platform", f"unix:{path}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert f"no platform service at {path}" in result.output
    assert expected in result.output


def test_kds_listens_on_the_one_address_syntax(sock: Path, tmp_path: Path) -> None:
    kds = start_service(
        "kds",
        cli_argv("platform", "kds", "--platform", str(sock), "--listen", "tcp:127.0.0.1:0"),
        log=tmp_path / "kds.log",
        capture=True,
    )
    try:
        assert kds.process.stdout is not None
        url = kds.process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10):
            pass
    finally:
        kds.stop(10)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        taken = run("kds", "--platform", sock, "--listen", f"tcp:127.0.0.1:{port}")
    finally:
        busy.close()
    assert taken.exit_code == 2
    assert f"cannot listen on http://127.0.0.1:{port}" in taken.output
    old = run("kds", "--platform", sock, "--listen", "127.0.0.1:99999")
    assert "--listen 127.0.0.1:99999 is deprecated" in old.stderr
    assert "must be a number 0-65535" in old.output


def test_init_snp_brings_snp_up_before_sev_and_again_changes_nothing(sock: Path) -> None:
    from sevlaunch.formats.states import PlatformState
    from sevlaunch.platform import snp_calls
    from sevlaunch.platform.client import PlatformClient

    ok("init", "--platform", sock)  # SEV alone first: --snp must take it down and up again
    for _ in range(2):
        ok("init", "--snp", "--platform", sock)
        with PlatformClient(str(sock)) as client:
            assert client.run(snp_calls.snp_platform_status()).state == PlatformState.INIT
            assert client.platform_status().state == PlatformState.INIT
