"""``sevlaunch platform serve`` as a real process: kill -9 and restart, SIGTERM, one owner."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.errors import PlatformError
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.state import STATE_FILE, StoredState
from tests.platform.conftest import copy_template

SEVLAUNCH = Path(sys.executable).parent / "sevlaunch"
START_LIMIT = 60.0  # a bound on waiting, not an assertion about speed


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.sock = root / "sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.root / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [SEVLAUNCH, "platform", "serve", "--state", self.state, "--listen", self.sock, *extra],
            stdout=log,
            stderr=log,
        )
        return self.proc

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited {self.proc.returncode}: {self.log()}")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.sock))
                return
            except OSError:
                time.sleep(0.02)
            finally:
                probe.close()
        pytest.fail(f"serve did not listen within {START_LIMIT} s: {self.log()}")

    def log(self) -> str:
        return (self.root / "serve.log").read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


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
    server.wait_ready()
    with PlatformClient(server.sock) as client:
        client.pek_gen()  # a new PEK, OCA and PDH: only on disk if saved
        client.pdh_gen()
    before = _identity(server.sock)
    assert server.kill() == -signal.SIGKILL
    assert stat.S_ISSOCK(server.sock.lstat().st_mode)  # left behind, stale

    server.start()
    server.wait_ready()
    assert _identity(server.sock) == before
    state_file = server.state / STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600


def test_kill_9_in_a_stream_of_state_writes_leaves_a_loadable_state(server: Server) -> None:
    server.start()
    server.wait_ready()
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
    server.wait_ready()
    after = _identity(server.sock)
    assert (after[0], after[2], after[3]) == (chip, pek, oca)
    assert not list(server.state.glob(".platform.*"))


def test_sigterm_stops_cleanly_and_removes_the_socket(server: Server) -> None:
    server.start("--latency", "real")
    server.wait_ready()
    assert stat.S_IMODE(server.sock.stat().st_mode) == 0o600
    assert server.kill(signal.SIGTERM) == 0
    assert not server.sock.exists()
    assert "listening on" in server.log()


def test_a_second_service_on_the_same_state_dir_is_refused(server: Server) -> None:
    server.start()
    server.wait_ready()
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
