"""``sevlaunch broker serve``: read the KEK and tokens, migrate the database, run uvicorn."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from sevlaunch import _http, _listen, _storage
from sevlaunch._files import read_private
from sevlaunch._guard import Limits
from sevlaunch.broker import db
from sevlaunch.broker.api import create_app, render_error
from sevlaunch.broker.client import check_token
from sevlaunch.broker.seal import KEK_SIZE
from sevlaunch.broker.service import Broker, Settings
from sevlaunch.errors import UsageError


def read_kek(path: str | Path) -> bytes:
    kek = read_private(path, "KEK file")
    if len(kek) != KEK_SIZE:
        raise UsageError(
            f"the KEK file {path} must hold exactly {KEK_SIZE} random bytes, it holds "
            f"{len(kek)}; make one with: (umask 077; head -c {KEK_SIZE} /dev/urandom > {path})"
        )
    return kek


def read_service_token(path: str | Path, what: str) -> bytes:
    """A token the service checks: its file must be private (as ssh wants a key)."""
    return check_token(read_private(path, what), path)


def sqlite_directory(db_url: str) -> Path | None:
    """The directory of a file-backed SQLite URL (where the -wal and -shm files go too)."""
    if not db_url.startswith("sqlite") or ":memory:" in db_url:
        return None
    _, _, rest = db_url.partition(":///")
    path = rest.split("?", 1)[0]
    return Path(path).parent if path else None


def build_app(
    db_url: str,
    kek_file: str | Path,
    owner_token_file: str | Path,
    launcher_token_file: str | Path | None,
    settings: Settings,
    limits: Limits | None = None,
) -> FastAPI:
    """Everything ``serve`` does before listening: secrets read, schema at head, app built;
    the launcher token file's token becomes the ``default`` launcher's."""
    kek = read_kek(kek_file)
    owner = read_service_token(owner_token_file, "owner token file")
    launcher = None
    if launcher_token_file is not None:
        launcher = read_service_token(launcher_token_file, "launcher token file")
        if owner == launcher:
            raise UsageError("the owner and launcher tokens must differ")
    os.umask(0o077)  # SQLite makes the database and its -wal/-shm with the process's umask
    directory = sqlite_directory(db_url)
    if directory is not None:
        _storage.require_writable(directory, "database directory")
    engine = db.create_engine(db_url)
    db.upgrade(engine)
    return create_app(Broker(engine, kek, settings), owner, launcher, limits=limits)


def serve(
    app: FastAPI,
    listen: str,
    *,
    limits: Limits | None = None,
    tls: _listen.Tls | None = None,
    insecure_plain_http: bool = False,
    log_level: str = "info",
    ready: Callable[[], None] | None = None,
) -> None:
    address = _http.parse(listen, what="broker listener")
    _listen.check(address, tls, insecure_plain_http=insecure_plain_http)
    sock = _listen.bind(address, what="broker")
    _listen.serve(
        app,
        sock,
        limits=limits or Limits(),
        render=render_error,
        tls=tls,
        log_level=log_level,
        ready=ready,
    )
