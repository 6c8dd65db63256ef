"""Real ``sevlaunch`` service processes for the edge tests: a host manager or a broker on a
chosen address, started with a chosen umask through the project's one process harness
(:func:`sevlaunch.orchestrate.services.start_service`), each process its own Python (so its
/proc status is the server's own)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sevlaunch._files import write_atomic
from sevlaunch.orchestrate.services import start_service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A running service: its process, the address clients use, and its bearer token."""

    kind: str
    proc: subprocess.Popen[bytes]
    address: str
    token: bytes
    log: Path
    extra: dict[str, Path] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self, key: str) -> int:
        """A ``/proc/PID/status`` figure in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset_peak(self) -> bool:
        """Start VmHWM over from the current RSS (Linux clear_refs 5); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


def _cli() -> list[str]:
    return [sys.executable, "-c", "from sevlaunch.cli import main; main()"]


def run_cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_cli(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def host_argv(root: Path, listen: str, token: Path | None) -> list[str]:
    argv = ["host", "serve", "--state", str(root / "state"), "--listen", listen]
    return argv + (["--host-token-file", str(token)] if token else [])


def broker_argv(
    root: Path, listen: str, files: dict[str, Path], db: str | None = None
) -> list[str]:
    return [
        "broker", "serve", "--db", db or f"sqlite:///{root / 'broker.db'}",
        "--kek-file", str(files["kek"]), "--listen", listen,
        "--owner-token-file", str(files["owner"]),
        "--launcher-token-file", str(files["launcher"]), "--log-level", "warning",
    ]  # fmt: skip


def broker_files(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "kek": write_atomic(root / "kek", secrets.token_bytes(32)),
        "owner": write_atomic(root / "owner.token", secrets.token_hex(24).encode()),
        "launcher": write_atomic(root / "launcher.token", secrets.token_hex(24).encode()),
    }


@contextmanager
def service(
    kind: str,
    root: Path,
    *,
    listen: str | None = None,
    extra: tuple[str, ...] = (),
    umask: int | None = None,
    db: str | None = None,
) -> Iterator[Service]:
    """``kind`` is ``host`` or ``broker``; TCP on a free loopback port unless ``listen``."""
    root.mkdir(parents=True, exist_ok=True)
    listen = listen or f"tcp:127.0.0.1:{free_port()}"
    if kind == "host":
        token = secrets.token_hex(24).encode()
        token_file = write_atomic(root / "host.token", token)
        files = {"token": token_file}
        argv = host_argv(root, listen, None if listen.startswith("unix:") else token_file)
    else:
        files = broker_files(root)
        token = files["owner"].read_bytes()
        argv = broker_argv(root, listen, files, db)
    log = root / f"{kind}.log"
    started = start_service(
        kind,
        [*_cli(), *argv, *extra],
        log=log,
        umask=umask,
        until=lambda s: "listening on" in s.log_tail(1 << 20),
        timeout=30.0,
    )
    running = Service(kind, started.process, listen, token, log, files)
    try:
        yield running
    finally:
        started.stop(10)


def tcp_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])
