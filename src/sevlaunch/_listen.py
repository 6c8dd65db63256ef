"""How the host manager and the broker listen: one socket binder, TLS, and a bounded server.

``--listen`` takes the address forms of :mod:`sevlaunch._http`. A Unix socket is made mode
0600 whatever the umask (the file mode is its protection, as for libvirtd's); plain HTTP on a
non-loopback address is refused unless ``--insecure-plain-http`` (bearer tokens would cross
the network in clear); ``--tls-cert``/``--tls-key`` serve HTTPS. The uvicorn protocol here
closes a connection whose request head does not arrive within the header timeout
(slowloris) and refuses connections past the bound with a 503, before reading anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from sevlaunch import _http
from sevlaunch._files import read_private, socket_directory
from sevlaunch._guard import Limits, Render
from sevlaunch.errors import UsageError

HEADER_LIMIT = 16 * 1024  # bytes of request head h11 buffers before refusing it


@dataclass(frozen=True)
class Tls:
    """A server certificate chain (PEM) and its private key (PEM, mode 0600)."""

    cert: str
    key: str

    @classmethod
    def of(cls, cert: str | None, key: str | None) -> Tls | None:
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise UsageError("--tls-cert and --tls-key go together")
        read_private(key, "TLS private key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except OSError as exc:
            raise UsageError(f"cannot read --tls-cert {cert}: {exc.strerror}") from exc
        except ssl.SSLError as exc:
            raise UsageError(
                f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its "
                f"key: {exc.reason or exc}"
            ) from exc
        return cls(cert, key)


def check(address: _http.Address, tls: Tls | None, *, insecure_plain_http: bool) -> None:
    """Refuse a listener that would carry tokens in clear, or TLS options that do nothing."""
    if address.scheme == "unix":
        if tls is not None:
            raise UsageError(
                "--tls-cert is for TCP listeners: a Unix socket is protected by its mode"
            )
        return
    if address.scheme == "https" and tls is None:
        raise UsageError(f"listening on {address} needs --tls-cert and --tls-key")
    if address.prefix:
        raise UsageError(f"--listen takes no path, got {address}")
    if tls is None and not address.loopback and not insecure_plain_http:
        raise UsageError(
            f"refusing plain HTTP on {address.host}:{address.port}, which is not a loopback "
            "address: bearer tokens would cross the network in clear. Give --tls-cert and "
            "--tls-key, or --insecure-plain-http if the network is trusted"
        )


def bind(address: _http.Address, *, what: str) -> socket.socket:
    """A listening socket; a stale Unix socket is replaced, a live one refused."""
    if address.scheme == "unix":
        return _bind_unix(Path(address.path), what)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    sock.listen(128)
    return sock


def _bind_unix(path: Path, what: str) -> socket.socket:
    socket_directory(path)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody answers: left by a killed process
        else:
            raise UsageError(f"{path} is in use by another {what}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def _overload_response(render: Render) -> bytes:
    body = json.dumps(
        render(503, "too-many-connections", "the service has too many open connections")
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\nretry-after: 1\r\n\r\n"
    )
    return head.encode() + body


def protocol(limits: Limits, render: Render) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head deadline and a bound on open connections."""
    overload = _overload_response(render)

    class Guarded(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                self.transport = transport
                transport.write(overload)
                transport.close()
                return
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(limits.header_timeout, self._head_too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _head_too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Guarded


def serve(
    app: Any,
    sock: socket.socket,
    *,
    limits: Limits,
    render: Render,
    tls: Tls | None = None,
    log_level: str = "warning",
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http=protocol(limits, render),
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=int(min(5.0, max(1.0, limits.header_timeout))),
        h11_max_incomplete_event_size=HEADER_LIMIT,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        if ready is not None:
            asyncio.get_running_loop().call_soon(_when_started, server, ready)
        await server.serve(sockets=[sock])

    asyncio.run(main())


def _when_started(server: Any, ready: Callable[[], None]) -> None:
    if server.started:
        ready()
    elif not server.should_exit:
        asyncio.get_running_loop().call_later(0.02, _when_started, server, ready)
