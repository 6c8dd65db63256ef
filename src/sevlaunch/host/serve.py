"""Run the host manager's API: checks first (address, TLS, a writable state directory), then
uvicorn behind the guard of :mod:`sevlaunch._guard` on a Unix socket (mode 0600) or TCP."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sevlaunch import _files, _http, _listen, _storage
from sevlaunch._guard import Limits
from sevlaunch.host.api import create_app, render_error
from sevlaunch.host.manager import HostManager


def serve_forever(
    state_dir: Path,
    listen: str,
    *,
    qemu: str,
    platform: str | None,
    token: str | None,
    tls: _listen.Tls | None = None,
    limits: Limits | None = None,
    insecure_plain_http: bool = False,
    ready: Callable[[], None] | None = None,
) -> None:
    limits = limits or Limits()
    address = _http.parse(listen, what="host manager listener")
    _listen.check(address, tls, insecure_plain_http=insecure_plain_http)
    os.umask(0o077)  # the database, its -wal/-shm, run files: the daemon's alone
    _storage.require_writable(state_dir, "state directory")
    _files.lock_directory(state_dir, "host manager")  # held until the process ends
    manager = HostManager(state_dir, qemu=qemu, platform=platform)
    app = create_app(manager, token=token, limits=limits)
    sock = _listen.bind(address, what="host manager")
    _listen.serve(app, sock, limits=limits, render=render_error, tls=tls, ready=ready)
