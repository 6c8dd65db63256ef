"""The asyncio server, driven by the PyPI qemu.qmp client unchanged and by raw sockets."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError, QMPClient

from sevlaunch.errors import QmpCommandError
from sevlaunch.qmp import QMPServer


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A short directory: Unix socket paths are limited to about 100 bytes."""
    d = tempfile.mkdtemp(prefix="qmp")
    yield str(Path(d) / "qmp.sock")
    shutil.rmtree(d)


def make_server() -> tuple[QMPServer, asyncio.Event, list[str]]:
    server = QMPServer(clock=lambda: 1700000000.25)
    release = asyncio.Event()
    done: list[str] = []

    @server.command("echo", {"msg": "str", "*n": "uint32"})
    async def echo(args: dict[str, Any]) -> object:
        return {"msg": args["msg"], "n": args.get("n")}

    @server.command("sev-fail")
    async def sev_fail(args: dict[str, Any]) -> object:
        raise QmpCommandError("SEV: Not in correct state. (LSECRET) 1")

    @server.command("device-gone")
    async def device_gone(args: dict[str, Any]) -> object:
        raise QmpCommandError("Device 'x' not found", "DeviceNotFound")

    @server.command("broken")
    async def broken(args: dict[str, Any]) -> object:
        raise RuntimeError("bug")

    @server.command("slow")
    async def slow(args: dict[str, Any]) -> object:
        done.append("started")
        await release.wait()
        done.append("slow")
        return None

    return server, release, done


def run(
    body: Callable[[QMPServer, str, asyncio.Event, list[str]], Awaitable[None]], path: str
) -> None:
    async def main() -> None:
        server, release, done = make_server()
        async with server:
            await server.start_unix(path)
            await asyncio.wait_for(body(server, path, release, done), timeout=20)

    asyncio.run(main())


async def client(path: str) -> QMPClient:
    qmp = QMPClient("test")
    await qmp.connect(path)
    return qmp


def test_qemu_qmp_client_negotiates_and_executes(sock_path: str) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        qmp = await client(path)
        assert await qmp.execute("echo", {"msg": "hi", "n": 3}) == {"msg": "hi", "n": 3}
        assert await qmp.execute("query-version") == {
            "qemu": {"micro": 0, "minor": 2, "major": 9},
            "package": "",
        }
        commands = await qmp.execute("query-commands")
        assert isinstance(commands, list)
        names = [c["name"] for c in commands]
        assert {"qmp_capabilities", "query-version", "query-commands", "echo"} <= set(names)
        await qmp.disconnect()

    run(body, sock_path)


@pytest.mark.parametrize(
    ("command", "arguments", "error_class", "desc"),
    [
        ("sev-fail", None, "GenericError", "SEV: Not in correct state. (LSECRET) 1"),
        ("device-gone", None, "DeviceNotFound", "Device 'x' not found"),
        ("nope", None, "CommandNotFound", "The command nope has not been found"),
        ("echo", {"msg": 1}, "GenericError", "Invalid parameter type for 'msg', expected: string"),
        ("echo", {"msg": "a", "bogus": 1}, "GenericError", "Parameter 'bogus' is unexpected"),
        ("echo", {}, "GenericError", "Parameter 'msg' is missing"),
        ("broken", None, "GenericError", "RuntimeError: bug"),
        (
            "qmp_capabilities",
            None,
            "CommandNotFound",
            "Capabilities negotiation is already complete, command ignored",
        ),
    ],
)
def test_errors_surface_as_execute_error(
    sock_path: str, command: str, arguments: dict[str, object] | None, error_class: str, desc: str
) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        qmp = await client(path)
        with pytest.raises(ExecuteError) as info:
            await qmp.execute(command, arguments)
        assert (info.value.error_class, str(info.value)) == (error_class, desc)
        assert await qmp.execute("echo", {"msg": "still alive"}) == {
            "msg": "still alive",
            "n": None,
        }
        await qmp.disconnect()

    run(body, sock_path)


def test_events_reach_every_negotiated_client(sock_path: str) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        a, b = await client(path), await client(path)
        with a.listener("STOP") as la, b.listener("STOP") as lb:
            server.emit("STOP")
            for listener in (la, lb):
                event = await listener.get()
                assert event["event"] == "STOP"
                assert event["timestamp"] == {"seconds": 1700000000, "microseconds": 250000}
        await a.disconnect()
        await b.disconnect()

    run(body, sock_path)


def test_latched_event_reaches_clients_that_negotiate_later(sock_path: str) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        server.emit("SEV_LAUNCH_MEASUREMENT_AVAILABLE", {"data": "bWVhc3VyZQ=="}, latch=True)
        server.emit("STOP")  # not latched: a late client never sees it
        raw = await Raw.open(path)
        event = await raw.recv()
        assert event["event"] == "SEV_LAUNCH_MEASUREMENT_AVAILABLE"
        assert event["data"] == {"data": "bWVhc3VyZQ=="}
        await raw.send(b'{"execute":"query-version","id":1}')
        assert "return" in await raw.recv()

    run(body, sock_path)


# -- raw sockets ---------------------------------------------------------------------------


class Raw:
    """A bare socket client: what a hostile or broken peer can send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: str, negotiate: bool = True) -> Raw:
        raw = cls(*await asyncio.open_unix_connection(path))
        assert "QMP" in await raw.recv()
        if negotiate:
            await raw.send(b'{"execute":"qmp_capabilities"}')
            assert await raw.recv() == {"return": {}}
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await self.reader.readline()
        assert line.endswith(b"\r\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def test_raw_negotiation_gate(sock_path: str) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        raw = await Raw.open(path, negotiate=False)
        await raw.send(b'{"execute":"echo","arguments":{"msg":"x"},"id":1}')
        assert await raw.recv() == {
            "id": 1,
            "error": {
                "class": "CommandNotFound",
                "desc": "Expecting capabilities negotiation with 'qmp_capabilities'",
            },
        }
        await raw.close()

    run(body, sock_path)


def test_raw_split_and_concatenated_messages(sock_path: str) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        raw = await Raw.open(path)
        stream = b"".join(
            json.dumps({"execute": "echo", "arguments": {"msg": str(i)}, "id": i}).encode()
            for i in range(5)
        )
        for i in range(0, len(stream), 7):
            await raw.send(stream[i : i + 7])
        for i in range(5):
            assert await raw.recv() == {"return": {"msg": str(i), "n": None}, "id": i}
        await raw.close()

    run(body, sock_path)


@pytest.mark.parametrize(
    ("data", "desc"),
    [
        (b"garbage ", "JSON parse error, invalid keyword 'garbage'"),
        (b"[" * 200 + b"]" * 200, "JSON nesting depth limit exceeded"),
        (b'{"execute": "' + b"x" * (2 << 20) + b'"}', "JSON token size limit exceeded"),
        (b"42 ", "QMP input must be a JSON object"),
    ],
)
def test_raw_garbage_huge_and_deep_input(sock_path: str, data: bytes, desc: str) -> None:
    async def body(server: QMPServer, path: str, *_: object) -> None:
        raw = await Raw.open(path)
        await raw.send(data)
        assert await raw.recv() == {"error": {"class": "GenericError", "desc": desc}}
        await raw.send(b'{"execute":"echo","arguments":{"msg":"ok"},"id":"after"}')
        assert await raw.recv() == {"return": {"msg": "ok", "n": None}, "id": "after"}
        await raw.close()

    run(body, sock_path)


def test_client_disconnecting_mid_command_does_not_disturb_the_server(sock_path: str) -> None:
    async def body(server: QMPServer, path: str, release: asyncio.Event, done: list[str]) -> None:
        raw = await Raw.open(path)
        await raw.send(b'{"execute":"slow","id":1}')
        while "started" not in done:
            await asyncio.sleep(0.01)
        raw.writer.transport.abort()
        release.set()
        while "slow" not in done:
            await asyncio.sleep(0.01)
        qmp = await client(path)
        assert await qmp.execute("echo", {"msg": "fine"}) == {"msg": "fine", "n": None}
        await qmp.disconnect()
        while server.client_count:
            await asyncio.sleep(0.01)

    run(body, sock_path)


def test_listening_socket_can_be_handed_over(sock_path: str) -> None:
    async def main() -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock_path)
        listener.listen()
        async with QMPServer() as server:
            await server.start_socket(listener)
            qmp = await client(sock_path)
            version = await qmp.execute("query-version")
            assert isinstance(version, dict)
            assert "major" in version["qemu"]
            await qmp.disconnect()

    asyncio.run(main())


def test_registering_a_name_twice_is_refused() -> None:
    server = QMPServer()

    async def handler(args: dict[str, Any]) -> object:
        return None

    with pytest.raises(ValueError, match="already registered"):
        server.register("query-version", handler)
