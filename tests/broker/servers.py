"""Run ``sevlaunch broker serve`` as a real process on a UNIX socket, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from sevlaunch._files import write_atomic
from tests.broker.conftest import KEK, LAUNCHER_TOKEN, OWNER_TOKEN


@dataclass(frozen=True)
class Files:
    kek: Path
    owner_token: Path
    launcher_token: Path


def write_files(directory: Path) -> Files:
    files = Files(directory / "kek", directory / "owner.token", directory / "launcher.token")
    write_atomic(files.kek, KEK)
    write_atomic(files.owner_token, OWNER_TOKEN + b"\n")
    write_atomic(files.launcher_token, LAUNCHER_TOKEN + b"\n")
    return files


@contextmanager
def broker_process(
    db_url: str, files: Files, socket_path: Path, name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A broker process; waits until it answers, kills it on exit (if still alive)."""
    cmd = [
        sys.executable,
        "-c",
        "from sevlaunch.cli import main; main()",
        "broker",
        "serve",
        "--db",
        db_url,
        "--kek-file",
        str(files.kek),
        "--listen",
        f"unix:{socket_path}",
        "--owner-token-file",
        str(files.owner_token),
        "--launcher-token-file",
        str(files.launcher_token),
        "--instance",
        name,
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy()
    )
    try:
        _wait(proc, socket_path)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait(proc: subprocess.Popen[bytes], socket_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://broker") as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"broker exited with {proc.returncode}: {out}")
            try:
                if client.get("/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError("broker did not answer in time")
