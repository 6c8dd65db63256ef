"""Run the host manager's API with uvicorn on a Unix socket (mode 0600) or TCP."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import uvicorn

from sevlaunch.errors import UsageError
from sevlaunch.host.api import create_app
from sevlaunch.host.manager import HostManager


def bind(listen: str) -> socket.socket:
    """A listening socket for ``unix:PATH`` (mode 0600, stale file replaced) or ``tcp:HOST:PORT``."""
    if listen.startswith("unix:"):
        path = Path(listen[5:])
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()
            else:
                raise UsageError(f"{path} is in use by another host manager")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
    elif listen.startswith("tcp:"):
        host, _, port = listen[4:].rpartition(":")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), int(port)))
    else:
        raise UsageError(f"--listen takes unix:PATH or tcp:HOST:PORT, got {listen!r}")
    sock.listen(128)
    return sock


def serve_forever(
    state_dir: Path, listen: str, *, qemu: str, platform: str | None, token: str | None
) -> None:
    manager = HostManager(state_dir, qemu=qemu, platform=platform)
    app = create_app(manager, token=token)
    sock = bind(listen)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))
