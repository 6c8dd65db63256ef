"""An asyncio QMP server: a listening socket, a :class:`ServerConnection` per client, and a
registry of async command handlers.

Each client is served by its own task, one request at a time in arrival order (QEMU without
out-of-band execution does the same). A handler receives its checked arguments and returns the
``return`` value (``None`` means ``{}``), or raises :class:`~sevlaunch.errors.QmpCommandError`
for a QMP error; any other exception becomes a GenericError so that one broken command never
takes the server down. A client that disconnects, even mid-command, only ends its own task:
the command runs to completion and its reply is dropped. :meth:`QMPServer.emit` broadcasts an
event to every client that has negotiated capabilities.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp._connection import ServerConnection
from sevlaunch.qmp._json import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, NEED_DATA
from sevlaunch.qmp._messages import (
    Command,
    ErrorClass,
    ErrorResponse,
    Event,
    Negotiated,
    Outbound,
    Return,
    VersionInfo,
)
from sevlaunch.qmp._schema import Schema, schema, validate

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[object]]
READ_SIZE = 64 * 1024
MAX_PENDING_OUTPUT = 4 << 20  # a client that stops reading is dropped past this


@dataclass(frozen=True)
class CommandSpec:
    name: str
    args: Schema
    handler: Handler
    allow_oob: bool = False


class _Client:
    def __init__(self, conn: ServerConnection, writer: asyncio.StreamWriter) -> None:
        self.conn = conn
        self.writer = writer

    def write(self, message: Outbound) -> None:
        data = self.conn.send(message)
        if not data or self.writer.is_closing():
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_PENDING_OUTPUT:
            log.warning("QMP client not reading; dropping it")
            transport.abort()
            return
        self.writer.write(data)


class QMPServer:
    """Serve QMP on sockets; register commands with :meth:`register` or :meth:`command`."""

    def __init__(
        self,
        version: VersionInfo = VersionInfo(9, 2, 0),  # noqa: B008 - frozen value
        *,
        capabilities: Sequence[str] = (),
        max_message_size: int = DEFAULT_MAX_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.version = version
        self.capabilities = tuple(capabilities)
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self.clock = clock
        self._commands: dict[str, CommandSpec] = {}
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.Server] = []
        self._latched: dict[str, Event] = {}
        self.register("query-version", self._query_version)
        self.register("query-commands", self._query_commands)

    # -- registry -----------------------------------------------------------------------

    def register(
        self,
        name: str,
        handler: Handler,
        args: Mapping[str, str] | None = None,
        *,
        allow_oob: bool = False,
    ) -> None:
        """Add ``name``; ``args`` in QAPI notation, e.g. ``{"*gpa": "uint64"}``."""
        if name == "qmp_capabilities" or name in self._commands:
            raise ValueError(f"QMP command {name!r} is already registered")
        self._commands[name] = CommandSpec(name, schema(args), handler, allow_oob)

    def command(
        self, name: str, args: Mapping[str, str] | None = None, *, allow_oob: bool = False
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def deco(handler: Handler) -> Handler:
            self.register(name, handler, args, allow_oob=allow_oob)
            return handler

        return deco

    @property
    def command_names(self) -> list[str]:
        return ["qmp_capabilities", *self._commands]

    @property
    def command_specs(self) -> tuple[CommandSpec, ...]:
        """Every registered command (for introspection), in registration order."""
        return tuple(self._commands.values())

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # -- sockets ------------------------------------------------------------------------

    async def start_unix(self, path: str) -> None:
        """Listen on a Unix socket at ``path`` (QEMU ``-qmp unix:PATH,server=on,wait=off``)."""
        self._servers.append(
            await asyncio.start_unix_server(self._serve_client, path=path, limit=READ_SIZE)
        )

    async def start_socket(self, sock: socket.socket) -> None:
        """Serve on an already listening socket (libvirt passes the monitor as an fd)."""
        if sock.family == socket.AF_UNIX:
            server = await asyncio.start_unix_server(self._serve_client, sock=sock)
        else:
            server = await asyncio.start_server(self._serve_client, sock=sock)
        self._servers.append(server)

    async def close(self) -> None:
        """Stop listening and disconnect every client."""
        for server in self._servers:
            server.close()
        for client in list(self._clients):
            client.writer.close()
        if self._tasks:  # closed writers end each client's read loop; cancel stragglers
            _done, pending = await asyncio.wait(list(self._tasks), timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> QMPServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- events -------------------------------------------------------------------------

    def emit(
        self, name: str, data: Mapping[str, object] | None = None, *, latch: bool = False
    ) -> None:
        """Broadcast an event, stamped now, to every negotiated client.

        A ``latch`` event is also sent to every client that negotiates later (an extension
        for state announcements made before any client could connect; QEMU events are not).
        """
        event = Event.at(name, self.clock(), data)
        if latch:
            self._latched[name] = event
        for client in list(self._clients):
            client.write(event)

    # -- per client ---------------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = ServerConnection(
            self.version,
            capabilities=self.capabilities,
            max_message_size=self.max_message_size,
            max_depth=self.max_depth,
        )
        client = _Client(conn, writer)
        self._clients.add(client)
        try:
            writer.write(conn.greeting())
            while data := await reader.read(READ_SIZE):
                conn.receive_data(data)
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, Command):
                        client.write(await self._execute(event))
                    else:
                        client.write(event.response())
                        if isinstance(event, Negotiated):
                            for latched in self._latched.values():
                                client.write(latched)
                if not writer.is_closing():
                    await writer.drain()
        except (ConnectionError, OSError) as e:
            log.debug("QMP client gone: %s", e)
        except asyncio.CancelledError:
            log.debug("QMP client task cancelled at server close")  # the server owns this task
        finally:
            self._clients.discard(client)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):  # the peer may be gone already
                await writer.wait_closed()

    async def _execute(self, command: Command) -> Return | ErrorResponse:
        spec = self._commands.get(command.name)
        if spec is None:
            return ErrorResponse(
                ErrorClass.COMMAND_NOT_FOUND,
                f"The command {command.name} has not been found",
                command.id,
            )
        if command.oob and not spec.allow_oob:
            return ErrorResponse(
                ErrorClass.GENERIC_ERROR,
                f"The command {command.name} does not support OOB",
                command.id,
            )
        try:
            result = await spec.handler(validate(spec.args, command.arguments))
        except QmpCommandError as e:
            return ErrorResponse(e.error_class, e.desc, command.id)
        except Exception as e:
            log.exception("QMP command %s failed", command.name)
            return ErrorResponse(ErrorClass.GENERIC_ERROR, f"{type(e).__name__}: {e}", command.id)
        return Return({} if result is None else result, command.id)

    # -- built-in commands --------------------------------------------------------------

    async def _query_version(self, args: dict[str, Any]) -> object:
        return self.version.to_json()

    async def _query_commands(self, args: dict[str, Any]) -> object:
        return [{"name": name} for name in self.command_names]


__all__ = ["CommandSpec", "Handler", "QMPServer"]
