"""The emulated ``/dev/sev``: one asyncio service per host owning one firmware instance.

Many clients connect at once; PSP commands run one at a time under one lock, as on a real
PSP, in a worker thread so the event loop keeps accepting and reading while the firmware
computes. With a latency model the PSP lock is held until the command has taken its
real-hardware cost, the emulator's own computing included (a real PSP does that work within
the cost, so adding the two would overstate the PSP), so the serialisation a busy host sees
is honest. After every command the firmware's persistent state
is compared with what is on disk and saved atomically when it changed. A bad or hostile
request gets an :class:`ErrorReply` and the service carries on; a broken frame header cannot
be resynchronised, so that connection is answered and closed. A guest belongs to the
connection that launched it (:mod:`sevlaunch.platform.bindings`): other connections cannot
address it, and it is released when that connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sevlaunch.errors import AddressError, PlatformError, ProtocolError, SevlaunchError
from sevlaunch.formats.commands import Command, HandleBuffer
from sevlaunch.formats.snp.commands import SnpAddrBuffer, SnpCommand
from sevlaunch.formats.status import Status
from sevlaunch.platform import protocol as p
from sevlaunch.platform.bindings import GuestBindings, Peer
from sevlaunch.platform.latency import NONE, Latency
from sevlaunch.platform.memory import RegionMemory
from sevlaunch.platform.state import StateDir, StoredState

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "milan"


class FirmwareLike(Protocol):
    """What the service needs of :class:`sevlaunch.firmware.Firmware`."""

    def execute_verbose(
        self, command: int, buffer: bytes, memory: RegionMemory
    ) -> tuple[int, bytes, str]: ...

    def persistent_state(self) -> bytes: ...

    def signed_cek(self) -> bytes: ...

    def ca_chain(self) -> bytes: ...

    def ark(self) -> bytes: ...

    def guest_read(self, handle: int, paddr: int, length: int, memory: RegionMemory) -> bytes: ...

    def guest_write(self, handle: int, paddr: int, data: bytes, memory: RegionMemory) -> None: ...

    def snp_host(self, request: bytes, memory: RegionMemory) -> bytes: ...


FirmwareFactory = Callable[[str, bytes | None], tuple[FirmwareLike, p.ProfileReply]]


def real_firmware(
    profile: str, state: bytes | None, *, fresh_roots: bool = False
) -> tuple[FirmwareLike, p.ProfileReply]:
    """Build :class:`sevlaunch.firmware.Firmware` for ``profile``, fresh or from saved state;
    a fresh one is certified by the profile's kept emulated roots (:mod:`.roots`) unless
    ``fresh_roots``."""
    from sevlaunch.firmware import Firmware
    from sevlaunch.firmware import profile as find_profile

    prof = find_profile(profile)
    roots = None
    if state is None and not fresh_roots:
        from sevlaunch.platform.roots import cached_roots

        roots = cached_roots(prof.name)
    firmware = Firmware(prof, rng=os.urandom, state=state, roots=roots)
    info = p.ProfileReply(
        name=prof.name,
        api_major=prof.api_major,
        api_minor=prof.api_minor,
        build_id=prof.build_id,
        cbitpos=prof.cbitpos,
        reduced_phys_bits=prof.reduced_phys_bits,
        max_guests=prof.max_sev_asids,
        max_es_guests=prof.max_es_asids,
    )
    return firmware, info


def _error_reply(exc: Exception) -> p.ErrorReply:
    if isinstance(exc, ProtocolError):
        field = exc.field
        code = {
            "header.version": p.ErrorCode.UNSUPPORTED_VERSION,
            "header.length": p.ErrorCode.TOO_LARGE,
            "header.kind": p.ErrorCode.UNKNOWN_OPERATION,
        }.get(field, p.ErrorCode.MALFORMED)
        return p.ErrorReply(code, str(exc))
    if isinstance(exc, AddressError):
        return p.ErrorReply(p.ErrorCode.UNMAPPED_MEMORY, str(exc))
    if isinstance(exc, PlatformError) and exc.code is not None:
        return p.ErrorReply(p.ErrorCode(exc.code), str(exc))
    if isinstance(exc, SevlaunchError):
        return p.ErrorReply(p.ErrorCode.BAD_ARGUMENT, str(exc))
    return p.ErrorReply(p.ErrorCode.FIRMWARE_FAULT, f"{type(exc).__name__}: {exc}")


def _named_context(args: bytes) -> int | None:
    """The SNP guest context a host operation names (the memory controller's ``gctx``)."""
    try:
        doc = json.loads(args)
    except (ValueError, UnicodeDecodeError):
        return None  # the firmware refuses it with the reason
    gctx = doc.get("gctx") if isinstance(doc, dict) else None
    return gctx if isinstance(gctx, int) and not isinstance(gctx, bool) else None


class PlatformService:
    """Answers protocol requests with one firmware; see the module docstring."""

    def __init__(
        self,
        firmware: FirmwareLike,
        profile: p.ProfileReply,
        *,
        store: StateDir | None = None,
        latency: Latency = NONE,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.firmware = firmware
        self._sleep = sleep
        self._clock = clock
        self.profile = profile
        self.store = store
        self.latency = latency
        self._psp = asyncio.Lock()
        self._saved = firmware.persistent_state()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any] | None] = set()
        self.bindings = GuestBindings()
        self._local = Peer("in-process caller")

    # -- requests ---------------------------------------------------------------------------

    async def dispatch(self, request: p.Request, peer: Peer | None = None) -> p.Response:
        """Answer one request from ``peer`` (a connection; by default one in-process caller);
        every failure becomes an ErrorReply."""
        try:
            return await self._dispatch(request, peer or self._local)
        except Exception as exc:
            if not isinstance(exc, SevlaunchError):
                log.exception("request %s failed inside the firmware", type(request).__name__)
            return _error_reply(exc)

    async def _dispatch(self, request: p.Request, peer: Peer) -> p.Response:
        if isinstance(request, p.ServiceRequest) and request.op is p.ServiceOp.PROFILE:
            return self.profile
        async with self._psp:
            if isinstance(request, p.MailboxRequest):
                refused = self.bindings.refusal(peer, request.command, request.buffer)
                if refused is not None:
                    return p.MailboxReply(int(Status.INVALID_GUEST), request.buffer, (), refused)
                reply = await self._execute(request)
                self.bindings.record(
                    peer, request.command, reply.status, request.buffer, reply.buffer
                )
                return reply
            if isinstance(request, p.ServiceRequest):
                return await asyncio.to_thread(self._service_op, request.op)
            return await self._memory_op(request, peer)

    async def _execute(self, request: p.MailboxRequest) -> p.MailboxReply:
        """One command on the firmware (the caller holds the PSP), which stays busy until
        the command has cost what it costs on real hardware, its computing included."""
        began = self._clock()
        reply = await asyncio.to_thread(self._mailbox, request)
        cost = self.latency.cost(request.command, request.buffer)
        if cost > 0:
            await self._sleep(max(0.0, cost - (self._clock() - began)))
        return reply

    async def _memory_op(
        self, request: p.GuestReadRequest | p.GuestWriteRequest | p.SnpRequest, peer: Peer
    ) -> p.Response:
        """The memory controller and the SNP host operations, under the PSP lock."""
        if isinstance(request, p.SnpRequest):
            gctx = _named_context(request.args)
            if gctx is not None:
                self.bindings.check_snp_access(peer, gctx)
            return await asyncio.to_thread(self._snp, request)
        self.bindings.check_access(peer, request.handle)
        if isinstance(request, p.GuestReadRequest):
            return await asyncio.to_thread(self._guest_read, request)
        return await asyncio.to_thread(self._guest_write, request)

    def _mailbox(self, request: p.MailboxRequest) -> p.MailboxReply:
        memory = RegionMemory(request.regions)
        try:
            status, buffer, detail = self.firmware.execute_verbose(
                request.command, request.buffer, memory
            )
        finally:
            self._persist()
        return p.MailboxReply(int(status), buffer, memory.written(), detail)

    async def release(self, peer: Peer) -> None:
        """DEACTIVATE and DECOMMISSION the guests of a closed connection, as KVM does when a
        VM's descriptor closes (``sev_vm_destroy``); a guest already inactive just skips the
        DEACTIVATE's failure."""
        for handle in self.bindings.release(peer):
            for command in (Command.DEACTIVATE, Command.DECOMMISSION):
                buffer = HandleBuffer(handle).to_bytes()
                request = p.MailboxRequest(int(command), buffer, ())
                async with self._psp:
                    reply = await self._execute(request)
                if reply.status != Status.SUCCESS and command is Command.DECOMMISSION:
                    log.warning(
                        "releasing guest %d of a closed connection: %s", handle, reply.detail
                    )
        for gctx in self.bindings.release_snp(peer):
            request = p.MailboxRequest(
                int(SnpCommand.SNP_DECOMMISSION), SnpAddrBuffer(gctx).to_bytes(), ()
            )
            async with self._psp:
                reply = await self._execute(request)
            if reply.status != Status.SUCCESS:
                log.warning(
                    "releasing SNP guest %#x of a closed connection: %s", gctx, reply.detail
                )

    def _service_op(self, op: p.ServiceOp) -> p.BlobReply:
        fw = self.firmware
        source = {
            p.ServiceOp.SIGNED_CEK: fw.signed_cek,
            p.ServiceOp.CA_CHAIN: fw.ca_chain,
            p.ServiceOp.ARK: fw.ark,
        }[op]
        return p.BlobReply(source())

    def _guest_read(self, request: p.GuestReadRequest) -> p.BlobReply:
        memory = RegionMemory(request.regions)
        data = self.firmware.guest_read(request.handle, request.paddr, request.length, memory)
        return p.BlobReply(data)

    def _guest_write(self, request: p.GuestWriteRequest) -> p.BlobReply:
        memory = RegionMemory(request.regions)
        self.firmware.guest_write(request.handle, request.paddr, request.data, memory)
        return p.BlobReply(b"", memory.written())

    def _snp(self, request: p.SnpRequest) -> p.BlobReply:
        """An SNP host operation; it may make the chip's SNP PKI, which is then saved."""
        memory = RegionMemory(request.regions)
        try:
            data = self.firmware.snp_host(request.args, memory)
        finally:
            self._persist()
        return p.BlobReply(data, memory.written())

    def _persist(self) -> None:
        state = self.firmware.persistent_state()
        if state == self._saved:
            return
        if self.store is not None:
            self.store.save(StoredState(self.profile.name, state))
        self._saved = state

    # -- connections ------------------------------------------------------------------------

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one client until it hangs up or breaks the framing; then free its guests."""
        self._writers.add(writer)
        self._handlers.add(task := asyncio.current_task())
        peer = Peer()
        try:
            await self._serve_frames(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stopping: end normally (3.11's streams log a cancel)
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):  # the peer may be gone already
                await writer.wait_closed()
            await self.release(peer)

    async def _serve_frames(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        while True:
            head = await reader.read(p.HEADER_SIZE)
            if not head:
                return
            if len(head) < p.HEADER_SIZE:
                head += await reader.readexactly(p.HEADER_SIZE - len(head))
            try:
                header = p.parse_header(head)
            except ProtocolError as exc:
                await self._send(writer, _error_reply(exc))
                return
            payload = await reader.readexactly(header.length)
            await self._send(writer, await self._answer(p.Frame(header.kind, payload), peer))

    async def _answer(self, frame: p.Frame, peer: Peer) -> p.Response:
        try:
            request = p.decode_request(frame)
        except ProtocolError as exc:
            return _error_reply(exc)
        return await self.dispatch(request, peer)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, response: p.Response) -> None:
        try:
            data = p.encode_response(response)
        except ProtocolError as exc:
            data = p.encode_response(p.ErrorReply(p.ErrorCode.INTERNAL, str(exc)))
        writer.write(data)
        await writer.drain()

    def close_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def drain_connections(self, timeout: float = 5.0) -> None:
        """Close every connection; let each handler free its guests before the loop ends."""
        self.close_connections()
        if pending := {task for task in self._handlers if task is not None}:
            await asyncio.wait(pending, timeout=timeout)


# -------------------------------------------------------------------------------- lifecycle


def open_service(
    state_dir: str | Path,
    profile: str | None = None,
    *,
    latency: Latency = NONE,
    factory: FirmwareFactory = real_firmware,
) -> PlatformService:
    """Lock ``state_dir``, load (or create and save) the platform, and wrap it in a service.

    The caller owns the returned service's ``store`` and must ``unlock()`` it when done.
    """
    store = StateDir(state_dir)
    store.lock()
    try:
        stored = store.load()
        name = _choose_profile(stored, profile, store.path)
        firmware, info = factory(name, stored.firmware if stored else None)
        if stored is None:
            store.save(StoredState(name, firmware.persistent_state()))
        return PlatformService(firmware, info, store=store, latency=latency)
    except BaseException:
        store.unlock()
        raise


def _choose_profile(stored: StoredState | None, wanted: str | None, path: Path) -> str:
    wanted = wanted.lower() if wanted else None
    if stored is None:
        return wanted or DEFAULT_PROFILE
    if wanted is not None and wanted != stored.profile:
        raise PlatformError(
            f"state directory {path} holds a {stored.profile} platform, not {wanted}; pass "
            f"--profile {stored.profile} or another --state directory"
        )
    return stored.profile


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file; refuse a live one or a file that is not a socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise PlatformError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left over from a killed service
    else:
        raise PlatformError(f"another platform service is listening on {path}")
    finally:
        probe.close()


async def start_server(
    service: PlatformService, socket_path: str | Path, *, mode: int = 0o600
) -> asyncio.Server:
    """Listen on ``socket_path`` (created with ``mode``, 0600 by default)."""
    path = Path(socket_path)
    _claim_socket_path(path)
    old = os.umask(0o777 & ~mode)
    try:
        server = await asyncio.start_unix_server(service.handle_connection, path=str(path))
    finally:
        os.umask(old)
    os.chmod(path, mode)
    return server


async def serve_until(
    service: PlatformService,
    socket_path: Path,
    mode: int,
    stop: asyncio.Event,
    ready: Callable[[], None],
) -> None:
    server = await start_server(service, socket_path, mode=mode)
    inode = socket_path.stat().st_ino
    try:
        ready()
        await stop.wait()
    finally:
        server.close()
        await service.drain_connections()
        with contextlib.suppress(OSError):
            if socket_path.stat().st_ino == inode:
                socket_path.unlink()


def run(
    service: PlatformService,
    socket_path: str | Path,
    *,
    mode: int = 0o600,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Serve until SIGTERM or SIGINT, then remove the socket (the caller unlocks the state)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_until(service, Path(socket_path), mode, stop, ready)

    asyncio.run(main())
