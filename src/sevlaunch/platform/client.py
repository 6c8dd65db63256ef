"""Clients of the platform service: :class:`PlatformClient` (sync) and :class:`AsyncPlatformClient`.

Both drive the procedures of :mod:`sevlaunch.platform.calls` over one Unix-socket connection
and expose the same typed methods; a non-zero firmware status raises
:class:`~sevlaunch.errors.FirmwareError` (``"LAUNCH_START failed: fw_error=11 'Bad
measurement'"``), a refusal by the service :class:`~sevlaunch.errors.PlatformError`. The
socket defaults to ``$SEVLAUNCH_PLATFORM``. A client may be shared between threads (sync) or
tasks (async); its calls are serialised on the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from sevlaunch.errors import PlatformError, PlatformUnavailableError, ProtocolError, UsageError
from sevlaunch.formats.commands import GuestStatusBuffer, PlatformStatusBuffer
from sevlaunch.formats.memory import Memory
from sevlaunch.formats.session import Measurement
from sevlaunch.platform import calls
from sevlaunch.platform import protocol as p

if TYPE_CHECKING:  # the certificate layouts load with pdh_cert_export, which a VMM calls
    # only for query-sev-capabilities: its start to the measurement goes without them
    from sevlaunch.formats.chain import PlatformChain
    from sevlaunch.formats.snp.commands import SnpPlatformStatus

ENV_SOCKET = "SEVLAUNCH_PLATFORM"
T = TypeVar("T")
_RECV = 1 << 20


#: Seconds a new connection's peer has to answer PROFILE (served without waiting for the
#: PSP) before the client decides it is not a platform service (an HTTP server never answers
#: a frame that holds no line break; it used to hang a client for 60 s).
PEER_TIMEOUT = 3.0


def resolve_socket(path: str | Path | None) -> str:
    """``path`` (``unix:PATH`` or a bare path), else ``$SEVLAUNCH_PLATFORM``, else a
    UsageError saying how to name one."""
    from sevlaunch._http import platform_socket

    chosen = str(path) if path else os.environ.get(ENV_SOCKET)
    if not chosen:
        raise UsageError(f"no platform socket given: pass --platform PATH or set {ENV_SOCKET}")
    return platform_socket(chosen)


def _check(response: p.Response) -> p.Response:
    if isinstance(response, p.ErrorReply):
        raise PlatformError(
            f"the platform service refused the request ({response.code.name}): {response.message}",
            code=response.code,
        )
    return response


def _closed(path: str) -> PlatformError:
    return PlatformError(f"the platform service at {path} closed the connection mid-request")


class PlatformClient:
    """Blocking client over one connection, opened on first use."""

    def __init__(
        self,
        socket_path: str | Path | None = None,
        *,
        timeout: float | None = 60.0,
        peer_timeout: float = PEER_TIMEOUT,
    ):
        self.path = resolve_socket(socket_path)
        self.timeout = timeout
        self.peer_timeout = peer_timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    # -- transport --------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(min(self.peer_timeout, self.timeout or self.peer_timeout))
            try:
                sock.connect(self.path)
                self._check_peer(sock)
            except OSError as exc:
                sock.close()
                raise PlatformUnavailableError(self.path, exc.strerror or str(exc)) from exc
            except PlatformError:
                sock.close()
                raise
            sock.settimeout(self.timeout)
            self._sock = sock
        return self._sock

    def _check_peer(self, sock: socket.socket) -> None:
        """Ask PROFILE with a short deadline: whatever else listens there fails fast."""
        sock.sendall(p.encode_request(p.ServiceRequest(p.ServiceOp.PROFILE)))
        try:
            response = self._receive(sock)
        except TimeoutError as exc:
            raise PlatformUnavailableError(
                self.path,
                f"it accepted the connection but did not answer as a platform service within "
                f"{self.peer_timeout:g} s (is it another service's socket?)",
            ) from exc
        except ProtocolError as exc:
            raise PlatformUnavailableError(
                self.path, f"the peer is not a platform service ({exc.reason})"
            ) from exc
        except PlatformError as exc:
            raise PlatformUnavailableError(
                self.path, "the peer hung up on a PROFILE request: it is not a platform service"
            ) from exc
        if not isinstance(response, p.ProfileReply):
            raise PlatformUnavailableError(self.path, "the peer did not answer PROFILE")

    def request(self, request: p.Request) -> p.Response:
        """Send one request and return the response as is (an ErrorReply included)."""
        with self._lock:
            sock = self._connect()
            try:
                sock.sendall(p.encode_request(request))
                return self._receive(sock)
            except (OSError, PlatformError):
                self.close()
                raise

    def _receive(self, sock: socket.socket) -> p.Response:
        decoder = p.FrameDecoder()
        while (frame := decoder.next_frame()) is None:
            chunk = sock.recv(_RECV)
            if not chunk:
                raise _closed(self.path)
            decoder.feed(chunk)
        return p.decode_response(frame)

    def run(self, procedure: calls.Procedure[T]) -> T:
        """Drive a procedure of :mod:`sevlaunch.platform.calls` to its result."""
        try:
            request = next(procedure)
            while True:
                request = procedure.send(_check(self.request(request)))
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            procedure.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- service operations -----------------------------------------------------------------

    def profile(self) -> p.ProfileReply:
        return self.run(calls.profile())

    def signed_cek(self) -> bytes:
        return self.run(calls.signed_cek())

    def ca_chain(self) -> bytes:
        return self.run(calls.ca_chain())

    def ark(self) -> bytes:
        return self.run(calls.ark())

    def guest_read(self, handle: int, paddr: int, length: int, memory: Memory) -> bytes:
        return self.run(calls.guest_read(handle, paddr, length, memory))

    def guest_write(self, handle: int, paddr: int, data: bytes, memory: Memory) -> None:
        self.run(calls.guest_write(handle, paddr, data, memory))

    def mailbox(
        self, command: int, buffer: bytes, regions: tuple[p.Region, ...] = ()
    ) -> p.MailboxReply:
        """One raw PSP call; the status is returned, not raised."""
        return self.run(calls.raw_mailbox(command, buffer, regions))

    # -- platform commands ------------------------------------------------------------------

    def platform_status(self) -> PlatformStatusBuffer:
        return self.run(calls.platform_status())

    def snp_platform_status(self) -> SnpPlatformStatus:
        from sevlaunch.platform import snp_calls

        return self.run(snp_calls.snp_platform_status())

    def init(self, es: bool | None = None) -> None:
        self.run(calls.init(es))

    def ensure_init(self) -> PlatformStatusBuffer:
        return self.run(calls.ensure_init())

    def shutdown(self) -> None:
        self.run(calls.shutdown())

    def platform_reset(self) -> None:
        self.run(calls.platform_reset())

    def pek_gen(self) -> None:
        self.run(calls.pek_gen())

    def pdh_gen(self) -> None:
        self.run(calls.pdh_gen())

    def get_id(self) -> bytes:
        return self.run(calls.get_id())

    def pek_csr(self) -> bytes:
        return self.run(calls.pek_csr())

    def pek_cert_import(self, pek: bytes, oca: bytes) -> None:
        self.run(calls.pek_cert_import(pek, oca))

    def pdh_cert_export(self) -> PlatformChain:
        return self.run(calls.pdh_cert_export())

    def df_flush(self) -> None:
        self.run(calls.df_flush())

    # -- guest commands ---------------------------------------------------------------------

    def launch_start(self, policy: int, godh: bytes, session: bytes, handle: int = 0) -> int:
        return self.run(calls.launch_start(policy, godh, session, handle))

    def launch_update_data(self, handle: int, paddr: int, length: int, memory: Memory) -> None:
        self.run(calls.launch_update_data(handle, paddr, length, memory))

    def launch_update_vmsa(self, handle: int, paddr: int, length: int, memory: Memory) -> None:
        self.run(calls.launch_update_vmsa(handle, paddr, length, memory))

    def launch_measure(self, handle: int) -> Measurement:
        return self.run(calls.launch_measure(handle))

    def launch_secret(
        self, handle: int, header: bytes, packet: bytes, guest_paddr: int, memory: Memory
    ) -> None:
        self.run(calls.launch_secret(handle, header, packet, guest_paddr, memory))

    def launch_finish(self, handle: int) -> None:
        self.run(calls.launch_finish(handle))

    def activate(self, handle: int, asid: int) -> None:
        self.run(calls.activate(handle, asid))

    def deactivate(self, handle: int) -> None:
        self.run(calls.deactivate(handle))

    def decommission(self, handle: int) -> None:
        self.run(calls.decommission(handle))

    def guest_status(self, handle: int) -> GuestStatusBuffer:
        return self.run(calls.guest_status(handle))

    def attestation(self, handle: int, mnonce: bytes) -> bytes:
        return self.run(calls.attestation(handle, mnonce))

    def dbg_decrypt(self, handle: int, paddr: int, length: int, memory: Memory) -> bytes:
        return self.run(calls.dbg_decrypt(handle, paddr, length, memory))

    def dbg_encrypt(self, handle: int, paddr: int, data: bytes, memory: Memory) -> None:
        self.run(calls.dbg_encrypt(handle, paddr, data, memory))


class AsyncPlatformClient:
    """asyncio client over one connection, opened on first use (for the VMM and the host)."""

    def __init__(self, socket_path: str | Path | None = None) -> None:
        self.path = resolve_socket(socket_path)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    # -- transport --------------------------------------------------------------------------

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            try:
                self._streams = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                raise PlatformUnavailableError(self.path, exc.strerror or str(exc)) from exc
        return self._streams

    async def request(self, request: p.Request) -> p.Response:
        """Send one request and return the response as is (an ErrorReply included)."""
        async with self._lock:
            reader, writer = await self._connect()
            try:
                writer.write(p.encode_request(request))
                await writer.drain()
                header = p.parse_header(await reader.readexactly(p.HEADER_SIZE))
                payload = await reader.readexactly(header.length)
            except asyncio.IncompleteReadError as exc:
                await self._drop()
                raise _closed(self.path) from exc
            except (OSError, PlatformError):
                await self._drop()
                raise
            return p.decode_response(p.Frame(header.kind, payload))

    async def run(self, procedure: calls.Procedure[T]) -> T:
        """Drive a procedure of :mod:`sevlaunch.platform.calls` to its result."""
        try:
            request = next(procedure)
            while True:
                request = procedure.send(_check(await self.request(request)))
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            procedure.close()

    async def _drop(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        await self._drop()

    async def __aenter__(self) -> AsyncPlatformClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- service operations -----------------------------------------------------------------

    async def profile(self) -> p.ProfileReply:
        return await self.run(calls.profile())

    async def signed_cek(self) -> bytes:
        return await self.run(calls.signed_cek())

    async def ca_chain(self) -> bytes:
        return await self.run(calls.ca_chain())

    async def ark(self) -> bytes:
        return await self.run(calls.ark())

    async def guest_read(self, handle: int, paddr: int, length: int, memory: Memory) -> bytes:
        return await self.run(calls.guest_read(handle, paddr, length, memory))

    async def guest_write(self, handle: int, paddr: int, data: bytes, memory: Memory) -> None:
        await self.run(calls.guest_write(handle, paddr, data, memory))

    async def mailbox(
        self, command: int, buffer: bytes, regions: tuple[p.Region, ...] = ()
    ) -> p.MailboxReply:
        """One raw PSP call; the status is returned, not raised."""
        return await self.run(calls.raw_mailbox(command, buffer, regions))

    # -- platform commands ------------------------------------------------------------------

    async def platform_status(self) -> PlatformStatusBuffer:
        return await self.run(calls.platform_status())

    async def init(self, es: bool | None = None) -> None:
        await self.run(calls.init(es))

    async def ensure_init(self) -> PlatformStatusBuffer:
        return await self.run(calls.ensure_init())

    async def shutdown(self) -> None:
        await self.run(calls.shutdown())

    async def platform_reset(self) -> None:
        await self.run(calls.platform_reset())

    async def pek_gen(self) -> None:
        await self.run(calls.pek_gen())

    async def pdh_gen(self) -> None:
        await self.run(calls.pdh_gen())

    async def get_id(self) -> bytes:
        return await self.run(calls.get_id())

    async def pek_csr(self) -> bytes:
        return await self.run(calls.pek_csr())

    async def pek_cert_import(self, pek: bytes, oca: bytes) -> None:
        await self.run(calls.pek_cert_import(pek, oca))

    async def pdh_cert_export(self) -> PlatformChain:
        return await self.run(calls.pdh_cert_export())

    async def df_flush(self) -> None:
        await self.run(calls.df_flush())

    # -- guest commands ---------------------------------------------------------------------

    async def launch_start(self, policy: int, godh: bytes, session: bytes, handle: int = 0) -> int:
        return await self.run(calls.launch_start(policy, godh, session, handle))

    async def launch_update_data(
        self, handle: int, paddr: int, length: int, memory: Memory
    ) -> None:
        await self.run(calls.launch_update_data(handle, paddr, length, memory))

    async def launch_update_vmsa(
        self, handle: int, paddr: int, length: int, memory: Memory
    ) -> None:
        await self.run(calls.launch_update_vmsa(handle, paddr, length, memory))

    async def launch_measure(self, handle: int) -> Measurement:
        return await self.run(calls.launch_measure(handle))

    async def launch_secret(
        self, handle: int, header: bytes, packet: bytes, guest_paddr: int, memory: Memory
    ) -> None:
        await self.run(calls.launch_secret(handle, header, packet, guest_paddr, memory))

    async def launch_finish(self, handle: int) -> None:
        await self.run(calls.launch_finish(handle))

    async def activate(self, handle: int, asid: int) -> None:
        await self.run(calls.activate(handle, asid))

    async def deactivate(self, handle: int) -> None:
        await self.run(calls.deactivate(handle))

    async def decommission(self, handle: int) -> None:
        await self.run(calls.decommission(handle))

    async def guest_status(self, handle: int) -> GuestStatusBuffer:
        return await self.run(calls.guest_status(handle))

    async def attestation(self, handle: int, mnonce: bytes) -> bytes:
        return await self.run(calls.attestation(handle, mnonce))

    async def dbg_decrypt(self, handle: int, paddr: int, length: int, memory: Memory) -> bytes:
        return await self.run(calls.dbg_decrypt(handle, paddr, length, memory))

    async def dbg_encrypt(self, handle: int, paddr: int, data: bytes, memory: Memory) -> None:
        await self.run(calls.dbg_encrypt(handle, paddr, data, memory))
