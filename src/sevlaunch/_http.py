"""Where an HTTP client of a sevlaunch service connects: the address forms ``--listen`` takes."""

from __future__ import annotations

import httpx

from sevlaunch.errors import UsageError


def transport_for(uri: str, *, what: str = "service") -> tuple[httpx.HTTPTransport | None, str]:
    """An httpx transport and base URL for ``unix:PATH``, ``tcp:HOST:PORT`` or ``http(s)://``."""
    if uri.startswith("unix:"):
        return httpx.HTTPTransport(uds=uri[5:]), f"http://sevlaunch-{what}"
    if uri.startswith("tcp:"):
        host, _, port = uri[4:].rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"expected tcp:HOST:PORT, got {uri!r}")
        return None, f"http://{host}:{port}"
    if uri.startswith(("http://", "https://")):
        return None, uri.rstrip("/")
    raise UsageError(
        f"expected unix:PATH or tcp:HOST:PORT (or http(s)://HOST:PORT) for the {what}, got {uri!r}"
    )
