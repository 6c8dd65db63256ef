"""Run ``sevlaunch broker serve`` as a real process on a UNIX socket, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from sevlaunch._files import write_atomic
from sevlaunch.orchestrate.services import Service, cli, start_service
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
    db_url: str, files: Files, socket_path: Path, name: str, *extra: str
) -> Iterator[Service]:
    """A broker process (the project's one harness; ``extra``: more ``serve`` options); ready
    once it answers, killed on exit."""
    argv = cli("broker", "serve", "--db", db_url, "--kek-file", str(files.kek))
    argv += ["--listen", f"unix:{socket_path}", "--owner-token-file", str(files.owner_token)]
    argv += ["--launcher-token-file", str(files.launcher_token), "--instance", name]
    argv += ["--log-level", "warning", *extra]
    service = start_service(
        name,
        argv,
        log=socket_path.with_suffix(".log"),
        ready=socket_path,
        until=lambda _s: _healthy(socket_path),
        timeout=20.0,
    )
    try:
        yield service
    finally:
        service.stop(kill=True)


def _healthy(socket_path: Path) -> bool:
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://broker") as client:
        try:
            return client.get("/v1/health").status_code == 200
        except httpx.TransportError:
            return False
