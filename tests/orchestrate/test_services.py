"""The one process harness: ready when the socket accepts, the log's tail when a service dies
first, its own readiness check and umask, and a stop that always ends the process."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from sevlaunch.errors import SevlaunchError
from sevlaunch.orchestrate.services import cli, start_service

SERVE = """
import socket, sys, time
time.sleep(0.2)  # the socket comes late: the harness must wait for it
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()
print("listening on", sys.argv[1], flush=True)
while True:
    s.accept()[0].close()
"""


def test_ready_once_the_socket_accepts_and_stopped_for_good(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    service = start_service(
        "toy", [sys.executable, "-c", SERVE, str(sock)], log=tmp_path / "toy.log",
        ready=sock, connect=True, timeout=20,
    )  # fmt: skip
    assert service.alive
    service.stop(2)
    assert service.process.poll() is not None
    assert "listening on" in service.log_tail()


def test_a_service_that_dies_first_is_reported_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('no such state directory', file=sys.stderr); sys.exit(3)"
    with pytest.raises(SevlaunchError, match=r"failed to start \(exit 3\): no such state"):
        start_service(
            "broken", [sys.executable, "-c", code], log=tmp_path / "b.log",
            ready=tmp_path / "never.sock", timeout=20,
        )  # fmt: skip


def test_its_own_readiness_check_and_umask(tmp_path: Path) -> None:
    made = tmp_path / "made"
    code = f"open({str(made)!r}, 'w').close(); print('up', flush=True); import time; time.sleep(30)"
    service = start_service(
        "masked", [sys.executable, "-c", code], log=tmp_path / "m.log",
        until=lambda s: "up" in s.log_tail(), umask=0o077, timeout=20,
    )  # fmt: skip
    try:
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
    finally:
        service.stop(2, kill=True)
    assert not service.alive


def test_never_ready_is_a_timeout_that_kills(tmp_path: Path) -> None:
    code = "import time; time.sleep(30)"
    with pytest.raises(SevlaunchError, match="was not ready"):
        start_service(
            "slow", [sys.executable, "-c", code], log=tmp_path / "s.log",
            until=lambda _s: False, timeout=0.5,
        )  # fmt: skip


def test_cli_runs_this_interpreter() -> None:
    assert cli("demo", "--help")[:3] == [sys.executable, "-m", "sevlaunch.cli"]
