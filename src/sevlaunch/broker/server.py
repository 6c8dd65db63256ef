"""``sevlaunch broker serve``: read the KEK and tokens, migrate the database, run uvicorn."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from sevlaunch.broker import db
from sevlaunch.broker.api import create_app
from sevlaunch.broker.client import read_token
from sevlaunch.broker.seal import KEK_SIZE
from sevlaunch.broker.service import Broker, Settings
from sevlaunch.errors import UsageError


@dataclass(frozen=True)
class Listen:
    """Where to listen: a UNIX socket path, or a TCP host and port."""

    path: str | None = None
    host: str = "127.0.0.1"
    port: int = 8470

    @classmethod
    def parse(cls, text: str) -> Listen:
        if text.startswith("unix:"):
            return cls(path=text[len("unix:") :])
        if text.startswith("tcp:"):
            host, _, port = text[len("tcp:") :].rpartition(":")
            try:
                return cls(host=host.strip("[]") or "127.0.0.1", port=int(port))
            except ValueError:
                pass
        raise UsageError(f"--listen takes unix:PATH or tcp:HOST:PORT, got {text!r}")


def read_kek(path: str | Path) -> bytes:
    try:
        kek = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the KEK file {path}: {exc.strerror}") from None
    if len(kek) != KEK_SIZE:
        raise UsageError(
            f"the KEK file {path} must hold exactly {KEK_SIZE} random bytes, it holds "
            f"{len(kek)}; make one with: head -c {KEK_SIZE} /dev/urandom > {path}"
        )
    return kek


def build_app(
    db_url: str,
    kek_file: str | Path,
    owner_token_file: str | Path,
    launcher_token_file: str | Path,
    settings: Settings,
) -> FastAPI:
    """Everything ``serve`` does before listening: secrets read, schema at head, app built."""
    kek = read_kek(kek_file)
    owner, launcher = read_token(owner_token_file), read_token(launcher_token_file)
    if owner == launcher:
        raise UsageError("the owner and launcher tokens must differ")
    engine = db.create_engine(db_url)
    db.upgrade(engine)
    return create_app(Broker(engine, kek, settings), owner, launcher)


def serve(app: FastAPI, listen: Listen, log_level: str = "info") -> None:
    import uvicorn

    if listen.path is not None:
        if os.path.exists(listen.path):
            _remove_stale_socket(listen.path)
        uvicorn.run(app, uds=listen.path, log_level=log_level)
    else:
        uvicorn.run(app, host=listen.host, port=listen.port, log_level=log_level)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket left by a dead broker; refuse if another one still answers there."""
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise UsageError(f"another process is listening on {path}")
    finally:
        probe.close()
