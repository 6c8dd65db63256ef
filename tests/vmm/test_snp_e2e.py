"""A ``sevlaunch-vmm`` SNP guest on a real platform service, attesting after boot to a broker
stand-in (a loopback HTTP server that checks the report-data binding and seals a secret table
to the guest's key): the disk unlocks with the released key, the measurement the firmware
signed is what ``sevlaunch owner snp digest`` computes for the same inputs, and a replayed
nonce gets nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from qemu.qmp import QMPClient

from sevlaunch.cli import cli as cli_main
from sevlaunch.crypto.disk import DiskContents, seal
from sevlaunch.crypto.snp.release import report_data, seal_to
from sevlaunch.formats.secret import LUKS_KEY_GUID, SecretEntry, SecretTable
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.protocol.snp import FW_CFG_NAME, GuestAttestationConfig
from sevlaunch.vmm.ovmf_image import AMDSEV_2024, make_image
from tests.platform.templates import template_state
from tests.vmm.conftest import (
    LABEL,
    PASSPHRASE,
    WAIT_LIMIT,
    PlatformProcess,
    VmmProcess,
    short_tempdir,
)

CMDLINE = "console=ttyS0 root=/dev/vda"


@dataclass
class StandIn:
    """The broker's two SNP routes, keeping what the guest presented."""

    nonces: set[str] = field(default_factory=set)
    reports: list[bytes] = field(default_factory=list)

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/snp/challenge":
            nonce = base64.b64encode(os.urandom(32)).decode()
            self.nonces.add(nonce)
            return 200, {"workload": body["workload"], "nonce": nonce, "expires": 0}
        if body["nonce"] not in self.nonces:
            return 403, {"error": "replay", "detail": "unknown or used nonce"}
        self.nonces.discard(body["nonce"])
        report = base64.b64decode(body["report"])
        key = base64.b64decode(body["tee-pubkey"])
        bound = report_data(base64.b64decode(body["nonce"]), key)
        if AttestationReport.from_bytes(report).report_data != bound:
            return 403, {"error": "report-data", "detail": "not bound to this nonce and key"}
        self.reports.append(report)
        table = SecretTable((SecretEntry(LUKS_KEY_GUID, PASSPHRASE),)).to_bytes()
        sealed = seal_to(key, table, os.urandom)
        return 200, {
            "ephemeral": base64.b64encode(sealed.ephemeral).decode(),
            "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
            "attestation": "a1",
        }


@pytest.fixture
def broker() -> Iterator[tuple[str, StandIn]]:
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, answer = stand_in.handle(self.path, body)
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", stand_in
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def snp_platform() -> Iterator[PlatformProcess]:
    running = PlatformProcess(short_tempdir("sevsnp-p-")).start(template_state())
    yield running
    running.stop()


@pytest.fixture
def files() -> Iterator[Path]:
    path = short_tempdir("sevsnp-")
    (path / "OVMF.amdsev.fd").write_bytes(make_image(1 << 20, seed=b"snp e2e", layout=AMDSEV_2024))
    (path / "vmlinuz").write_bytes(b"\x7fELF pretend kernel " * 256)
    (path / "initrd.img").write_bytes(b"070701 pretend initrd " * 128)
    (path / "disk.img").write_bytes(
        seal(
            PASSPHRASE,
            DiskContents(LABEL, b"fs"),
            salt=bytes(16),
            nonce=bytes(12),
            scrypt_log2_n=10,
        )
    )
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _argv(work: Path, config: str) -> list[str]:
    obj = {
        "qom-type": "sev-snp-guest",
        "id": "lsec0",
        "cbitpos": 51,
        "reduced-phys-bits": 1,
        "policy": 0x30000,
        "kernel-hashes": True,
    }
    return [
        "-name", "guest=snp1", "-S",
        "-machine", "q35,confidential-guest-support=lsec0",
        "-object", json.dumps(obj),
        "-bios", str(work / "OVMF.amdsev.fd"),
        "-kernel", str(work / "vmlinuz"), "-initrd", str(work / "initrd.img"),
        "-append", CMDLINE,
        "-m", "256", "-smp", "2", "-cpu", "EPYC-Milan",
        "-drive", f"file={work / 'disk.img'},if=virtio,format=raw",
        "-fw_cfg", f"name={FW_CFG_NAME},string={config.replace(',', ',,')}",
        "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off",
        "-serial", f"file:{work / 'console.log'}",
        "-display", "none", "-nodefaults",
    ]  # fmt: skip


async def _cont(qmp: str) -> None:
    client = QMPClient("test")
    await client.connect(qmp)
    await client.execute("cont")
    await client.disconnect()


def _wait_console(vmm: VmmProcess, needle: str) -> str:
    deadline = time.monotonic() + WAIT_LIMIT
    while needle not in vmm.console and time.monotonic() < deadline:
        time.sleep(0.05)
    return vmm.console


def _owner_digest(work: Path) -> str:
    args = [
        "owner", "snp", "digest", "--ovmf", str(work / "OVMF.amdsev.fd"),
        "--vcpus", "2", "--vcpu-type", "EPYC-Milan",
        "--kernel", str(work / "vmlinuz"), "--initrd", str(work / "initrd.img"),
        "--append", CMDLINE, "--output-format", "hex",
    ]  # fmt: skip
    result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_a_guest_attests_after_boot_and_unlocks_its_disk(
    snp_platform: PlatformProcess, files: Path, broker: tuple[str, StandIn]
) -> None:
    url, stand_in = broker
    config = GuestAttestationConfig(url, "demo").to_json()
    vmm = VmmProcess(files, snp_platform.sock).start(_argv(files, config))
    try:
        asyncio.run(_cont(vmm.qmp))
        console = _wait_console(vmm, "boot complete")
        assert f"disk label '{LABEL}'" in console, console + vmm.stderr
        assert "secrets released (1 entries)" in console
        assert PASSPHRASE.decode() not in console
    finally:
        vmm.stop()
    (report,) = stand_in.reports
    assert AttestationReport.from_bytes(report).measurement.hex() == _owner_digest(files)


def test_a_refused_attestation_halts_the_guest(
    snp_platform: PlatformProcess, files: Path, broker: tuple[str, StandIn]
) -> None:
    url, stand_in = broker
    stand_in.handle = lambda path, body: (  # type: ignore[method-assign]
        (403, {"error": "measurement-mismatch", "detail": "not a registered digest"})
        if path.endswith("attest")
        else StandIn.handle(stand_in, path, body)
    )
    vmm = VmmProcess(files, snp_platform.sock).start(
        _argv(files, GuestAttestationConfig(url, "demo").to_json())
    )
    try:
        asyncio.run(_cont(vmm.qmp))
        console = _wait_console(vmm, "halting")
        assert "attestation refused: measurement-mismatch: not a registered digest" in console
        assert "unlocked" not in console
    finally:
        vmm.stop()
