"""The emulated platform's counterpart of AMD's key distribution server, over HTTP.

Real hosts' CEKs are signed by AMD and served by kdsintf.amd.com by chip ID; an emulated
platform's CEK is signed by its emulated ASK, so this serves it, with the same URL layout
:mod:`sevlaunch.kds` uses for a mirror (``/cek/id/<ID>``, ``/ask_ark_<name>.cert``), and its
SNP VCEKs, cert_chains and CRLs under AMD's ``/vcek/v1/...`` forms (:mod:`.kds_snp`). The
guest-owner and VM-tool code that fetches from AMD then works unchanged against it.

It serves GET only (a body is never read), drops a connection that sends nothing for
:data:`HEADER_TIMEOUT` seconds and serves at most :data:`MAX_CONNECTIONS` at once (more get a
503), so idle or slow clients cannot pile up threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sevlaunch.errors import SevlaunchError
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.kds_snp import SnpRoutes, Throttle

CA_NAME = "emulated"
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
    b"Connection: close\r\n\r\ntoo busy\n"
)

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: KdsServer

    def setup(self) -> None:
        self.request.settimeout(self.server.header_timeout)  # per read: a stalled one is dropped
        super().setup()

    def do_GET(self) -> None:
        try:
            snp = self.server.snp.answer(self.path)
            body = self.server.lookup(self.path) if snp is None else None
        except Exception as exc:  # every request gets an answer; a bug is logged, not hidden
            if not isinstance(exc, SevlaunchError):
                log.exception("KDS request %s failed", self.path)
            self._send(502, f"platform service error: {exc}".encode(), "text/plain")
            return
        if snp is not None:
            self._send(snp.status, snp.body, snp.kind, snp.headers)
        elif body is None:
            self._send(404, b"not found", "text/plain")
        else:
            self._send(200, body, "application/octet-stream")

    def _send(
        self, status: int, body: bytes, kind: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        return


class KdsServer(ThreadingHTTPServer):
    """Serves one platform's signed CEK and emulated CA on ``address`` (loopback)."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        platform_socket: str,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        snp_throttle: Throttle | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.header_timeout = header_timeout
        self.platform_socket = platform_socket
        self._lock = threading.Lock()
        # a chip's identity and its CEK never change (the CEK is derived from the chip's
        # secrets, unlike the PEK and PDH): ask the PSP once, not on every request
        self._chip_id: bytes | None = None
        self._cek: bytes | None = None
        self._slots = threading.BoundedSemaphore(max_connections)
        self.snp = SnpRoutes(self._platform_client, throttle=snp_throttle)

    def _platform_client(self) -> PlatformClient:
        return PlatformClient(self.platform_socket, peer_timeout=30.0)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def lookup(self, path: str) -> bytes | None:
        # a busy PSP host may be slow to answer: the quick wrong-socket check is for users
        with self._lock, PlatformClient(self.platform_socket, peer_timeout=30.0) as client:
            if path == f"/ask_ark_{CA_NAME}.cert":
                return client.ca_chain()
            if path.startswith("/cek/id/"):
                wanted = path.removeprefix("/cek/id/").upper()
                if self._chip_id is None or self._cek is None:
                    self._chip_id, self._cek = client.get_id()[:64], client.signed_cek()
                return self._cek if self._chip_id.hex().upper() == wanted else None
        return None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="kds", daemon=True)
        thread.start()
        return thread
