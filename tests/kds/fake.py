"""A local stand-in for AMD's key servers (SEV's and SNP's KDS), serving in-memory replies.

Each reply may misbehave on purpose: an error status, no Content-Length, a hang, a dribble,
headers such as Retry-After, or a queue of replies answered in order before the route.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """What the stand-in answers for one path."""

    body: bytes = b""
    status: int = 200
    length: bool = True  # send Content-Length (else the body ends when the connection closes)
    hang: bool = False  # wait until the test ends before answering
    dribble: bool = False  # send the body a byte at a time, slowly
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeKds:
    """A ThreadingHTTPServer on 127.0.0.1 answering from ``routes``; 404 for anything else."""

    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    queued: dict[str, list[Reply]] = field(default_factory=dict)  # answered first, in order

    def serve(self, path: str, body: bytes, **kwargs: object) -> None:
        self.routes[path] = Reply(body, **kwargs)  # type: ignore[arg-type]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                queue = fake.queued.get(self.path)
                missing = Reply(b"not found", 404)
                reply = queue.pop(0) if queue else fake.routes.get(self.path, missing)
                if reply.hang:
                    fake.release.wait(30)
                    return
                self.send_response(reply.status)
                if reply.length:
                    self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.dribble:
                    for i in range(len(reply.body)):
                        if fake.release.wait(0.05):
                            return
                        self.wfile.write(reply.body[i : i + 1])
                        self.wfile.flush()
                    return
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


@contextmanager
def running_kds() -> Iterator[FakeKds]:
    """A FakeKds serving on an ephemeral port for the duration of the block."""
    fake = FakeKds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
