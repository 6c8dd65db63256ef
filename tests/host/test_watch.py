"""Step 10's wait: the host's announcement of this launch's measurement, the domain stopping,
or the stream ending (then the caller polls)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sevlaunch.errors import HostError
from sevlaunch.host.client import HostClient
from sevlaunch.host.watch import MeasurementWatch
from sevlaunch.protocol import HostEvent


class ScriptedHost(HostClient):
    """A host whose event stream is a script; ``release`` lets the rest of it through."""

    def __init__(self, events: list[HostEvent], *, fail: bool = False) -> None:
        super().__init__("unix:/nonexistent.sock")
        self.script, self.fail = events, fail
        self.release = threading.Event()
        self.asked: list[str | None] = []

    def sibling(self) -> HostClient:
        return self

    def events(self, domain: str | None = None) -> Iterator[HostEvent]:
        self.asked.append(domain)
        if self.fail:
            raise HostError("Operation not supported", "no event stream")
        yield HostEvent("subscribed")
        self.release.wait(10)
        yield from self.script
        threading.Event().wait(10)  # the stream stays open


def _measured(domain: str, launch: int) -> HostEvent:
    return HostEvent("measurement-available", domain, {"launch": launch})


def test_waits_for_this_domains_launch_only() -> None:
    host = ScriptedHost([_measured("other", 2), _measured("vm", 1), _measured("vm", 2)])
    with MeasurementWatch(host, "vm") as watch:
        assert watch.available
        host.release.set()
        assert watch.wait(2, 10.0)
        assert watch.available
    assert host.asked == ["vm"]  # the host filters: it is not sent the other domains' events


def test_a_stopped_domain_ends_the_wait() -> None:
    host = ScriptedHost([HostEvent("lifecycle", "vm", {"type": "Stopped", "detail": "Crashed"})])
    with MeasurementWatch(host, "vm") as watch:
        host.release.set()
        assert not watch.wait(1, 10.0)


def test_without_a_stream_the_watch_is_unavailable() -> None:
    with MeasurementWatch(ScriptedHost([], fail=True), "vm") as watch:
        assert not watch.available
        assert not watch.wait(1, 0.1)


def test_a_stream_the_host_breaks_ends_the_watch_on_the_http_error_only(short_dir: Path) -> None:
    """A host that drops the connection mid-stream: the reading thread ends on the HTTP
    client's own error (caught by name, no broad catch) and raises nothing further."""
    path = short_dir / "host.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            line = b'{"event": "subscribed"}\n'
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            head += b"Transfer-Encoding: chunked\r\n\r\n"
            conn.sendall(head + f"{len(line):x}\r\n".encode() + line + b"\r\n")
            time.sleep(0.2)  # then the host goes away without ending the body

    thread = threading.Thread(target=serve)
    thread.start()
    seen: list[type[BaseException]] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        seen.append(args.exc_type)

    threading.excepthook = hook
    try:
        with HostClient(f"unix:{path}") as host, MeasurementWatch(host, "vm") as watch:
            opened = watch.available
            watch._thread.join(10)
            assert not watch._thread.is_alive()
            assert not watch.available
    finally:
        threading.excepthook = previous
        thread.join(10)
        server.close()
    assert opened
    assert seen == []
