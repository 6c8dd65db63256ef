"""``sevlaunch platform serve`` as a real process: kill -9 and restart, SIGTERM, one owner."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.errors import PlatformError
from sevlaunch.orchestrate.services import Service, start_service
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.state import STATE_FILE, StoredState
from tests.platform.conftest import copy_template

SEVLAUNCH = Path(sys.executable).parent / "sevlaunch"
START_LIMIT = 60.0  # a bound on waiting, not an assertion about speed


class Server:
    """``sevlaunch platform serve`` on ``root``, started through the one process harness."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.sock = root / "sock"
        self.service: Service | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self.service is None:
            raise AssertionError("the platform service was not started")
        return self.service.process

    def start(self, *extra: str) -> Service:
        """Start and wait until the socket accepts (a stale one left by kill -9 does not)."""
        self.service = start_service(
            "platform",
            [str(SEVLAUNCH), "platform", "serve", "--state", str(self.state),
             "--listen", str(self.sock), *extra],
            log=self.root / "serve.log",
            ready=self.sock,
            connect=True,
            timeout=START_LIMIT,
        )  # fmt: skip
        return self.service

    def log(self) -> str:
        return (self.root / "serve.log").read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(kill=True)


@pytest.fixture
def server(short_dir: Path) -> Iterator[Server]:
    copy_template(short_dir / "state")
    srv = Server(short_dir)
    yield srv
    srv.stop()


def _identity(sock: Path) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    with PlatformClient(sock) as client:
        chain = client.pdh_cert_export()
        return (
            client.get_id(),
            chain.pdh.to_bytes(),
            chain.pek.to_bytes(),
            chain.oca.to_bytes(),
            client.signed_cek(),
        )


def test_identity_survives_kill_9_and_the_stale_socket_is_reclaimed(server: Server) -> None:
    server.start()
    with PlatformClient(server.sock) as client:
        client.pek_gen()  # a new PEK, OCA and PDH: only on disk if saved
        client.pdh_gen()
    before = _identity(server.sock)
    assert server.kill() == -signal.SIGKILL
    assert stat.S_ISSOCK(server.sock.lstat().st_mode)  # left behind, stale

    server.start()
    assert _identity(server.sock) == before
    state_file = server.state / STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


def test_kill_9_in_a_stream_of_state_writes_leaves_a_loadable_state(server: Server) -> None:
    server.start()
    chip, _, pek, oca, _ = _identity(server.sock)
    done = threading.Event()

    def churn() -> None:
        try:
            with PlatformClient(server.sock) as client:
                while not done.is_set():
                    client.pdh_gen()
        except (OSError, PlatformError):
            pass  # the service died under us, as intended

    worker = threading.Thread(target=churn)
    worker.start()
    time.sleep(0.3)
    server.kill()
    done.set()
    worker.join()

    state = StoredState.from_bytes((server.state / STATE_FILE).read_bytes(), path=server.state)
    assert state.profile == "milan"
    server.start()
    after = _identity(server.sock)
    assert (after[0], after[2], after[3]) == (chip, pek, oca)
    assert not list(server.state.glob(".platform.*"))


def test_sigterm_stops_cleanly_and_removes_the_socket(server: Server) -> None:
    server.start("--latency", "real")
    assert stat.S_IMODE(server.sock.stat().st_mode) == 0o600
    assert server.kill(signal.SIGTERM) == 0
    assert not server.sock.exists()
    assert "listening on" in server.log()


def test_sigterm_with_guests_running_frees_them_and_logs_no_cancelled_error(
    server: Server,
) -> None:
    """Each connection's handler frees its guests when it ends; SIGTERM must let it end
    rather than cancel it (Python's streams then log the CancelledError as an error)."""
    server.start()
    clients = [PlatformClient(server.sock) for _ in range(3)]
    try:
        for client in clients:
            client.ensure_init()
            client.launch_start(0x1, b"", b"")
        assert server.kill(signal.SIGTERM) == 0
    finally:
        for client in clients:
            client.close()
    log = server.log()
    assert "listening on" in log
    assert "CancelledError" not in log, log
    assert "Traceback" not in log, log


def test_a_second_service_on_the_same_state_dir_is_refused(server: Server) -> None:
    server.start()
    second = subprocess.run(
        [SEVLAUNCH, "platform", "serve", "--state", server.state, "--listen", server.root / "s2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2
    assert "in use by another platform service" in second.stderr
    with PlatformClient(server.sock) as client:
        assert client.platform_status().api_major == 1
