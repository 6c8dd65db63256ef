"""An SNP lab for the broker's tests: a real platform service with the emulated key server
(``sevlaunch platform kds``) in front of it, and guests launched on a firmware made from the
same chip state (so the key server's VCEKs are the ones that sign their reports), asking for
reports through the guest message channel as Linux's sev-guest driver does."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import release
from sevlaunch.firmware import PROFILES, Firmware
from sevlaunch.formats.snp.tcb import TcbLayout, TcbVersion
from sevlaunch.platform.background import BackgroundService
from sevlaunch.platform.kds_server import KdsServer
from sevlaunch.platform.service import open_service
from sevlaunch.platform.state import STATE_FILE, StoredState
from sevlaunch.vmm.guest import BootMedia
from sevlaunch.vmm.snp_guest import PAGE, SnpGuestOs
from tests.firmware.snp.helpers import REQ_PAGE, RES_PAGE, SnpGuestLaunch
from tests.platform.templates import template_state

POLICY = 0x30000


@dataclass
class Guest:
    """One launched SNP guest and the key its agent made."""

    launch: SnpGuestLaunch
    key: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> bytes:
        return release.public_der(self.key.public_key())

    @property
    def measurement(self) -> bytes:
        return self.launch.expected_ld

    def report(self, nonce: bytes, public: bytes | None = None) -> bytes:
        """A report binding ``nonce`` and this guest's key (or ``public``)."""
        return self.launch.report_bytes(release.report_data(nonce, public or self.public))

    async def guest_request(self, page: bytes) -> bytes:
        """The guest-request exit as KVM serves it: the firmware reads the request page and
        writes the response page."""
        self.launch.memory.write(REQ_PAGE, page)
        self.launch.memory.write(RES_PAGE, bytes(PAGE))
        self.launch.fw.snp.guest_request(self.launch.gctx, self.launch.memory, REQ_PAGE, RES_PAGE)
        return self.launch.memory.read(RES_PAGE, PAGE)

    def os(self, console: list[str]) -> SnpGuestOs:
        """The VMM's guest model over this launch, to run its attestation agent."""

        async def read(gpa: int, length: int) -> bytes:
            return self.launch.read(gpa, length)

        return SnpGuestOs(
            BootMedia(firmware=b""), read, console.append, request=self.guest_request, config=None
        )


@dataclass
class SnpLab:
    kds: KdsServer
    firmware_state: bytes
    cert_chain: bytes  # KDS's /vcek/v1/Milan/cert_chain: ASK ‖ ARK, PEM

    def firmware(self, reported_tcb: TcbVersion | None = None) -> Firmware:
        fw = Firmware(PROFILES["milan"], state=self.firmware_state)
        fw.snp.init()
        if reported_tcb is not None:
            fw.snp.config(reported_tcb.to_int())
        return fw

    def current_tcb(self) -> TcbVersion:
        info = self.firmware().snp.info()
        return TcbVersion.from_int(info["current_tcb"], TcbLayout.MILAN)

    def older_tcb(self, snp_back: int) -> TcbVersion:
        """The current TCB with its SNP SVN ``snp_back`` lower (as after a rollback)."""
        now = self.current_tcb()
        return TcbVersion(
            TcbLayout.MILAN, now.bootloader, now.tee, now.snp - snp_back, now.microcode
        )

    def guest(self, fw: Firmware | None = None, policy: int = POLICY) -> Guest:
        launch = SnpGuestLaunch(fw or self.firmware(), policy=policy)
        launch.start()
        launch.standard_pages()
        launch.finish()
        return Guest(launch, ec.generate_private_key(ec.SECP384R1()))


@contextmanager
def snp_lab() -> Iterator[SnpLab]:
    directory = Path(tempfile.mkdtemp(prefix="sevsnpb-", dir="/tmp"))
    try:
        state_dir = directory / "state"
        state_dir.mkdir(mode=0o700)
        (state_dir / STATE_FILE).write_bytes(template_state())
        (state_dir / STATE_FILE).chmod(0o600)
        service = open_service(state_dir)
        try:
            with BackgroundService(service, directory / "sock") as running:
                server = KdsServer(("127.0.0.1", 0), str(running.socket_path))
                thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
                thread.start()
                try:
                    stored = StoredState.from_bytes(template_state(), path=state_dir)
                    chain = server.snp.answer("/vcek/v1/Milan/cert_chain")
                    assert chain is not None
                    assert chain.status == 200
                    yield SnpLab(server, stored.firmware, chain.body)
                finally:
                    server.shutdown()
                    server.server_close()
        finally:
            assert service.store is not None
            service.store.unlock()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
