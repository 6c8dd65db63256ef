"""Service addresses and the HTTP clients that reach them: the one address syntax of sevlaunch.

Every ``--listen`` and every client option takes ``unix:PATH`` (or a bare path, which means
the same), ``tcp:HOST:PORT``, ``http://HOST:PORT`` or ``https://HOST:PORT``. Clients never
build a TLS context per connection: plain and Unix-socket transports share one that is never
used for a handshake, and HTTPS ones share one per CA file, made on first use (issue 16: a
context per client cost 138 ms under load, three per launch).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sevlaunch.errors import UsageError

if TYPE_CHECKING:  # imported by the clients only: the VMM parses addresses too
    import ssl

    import httpx

#: Seconds to wait for a TCP or Unix-socket connection before naming the address in an error.
CONNECT_TIMEOUT = 5.0
FORMS = "unix:PATH (or a bare path), tcp:HOST:PORT, http://HOST:PORT or https://HOST:PORT"
HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d+)$")
#: A bare "word:" start is an unknown scheme, not a path (write ./word:... for such a file).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Address:
    """A parsed service address; ``str()`` gives its canonical spelling."""

    scheme: Literal["unix", "http", "https"]
    path: str = ""
    host: str = ""
    port: int = 0
    prefix: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.path}"
        return f"{self.scheme}://{_bracket(self.host)}:{self.port}{self.prefix}"

    @property
    def loopback(self) -> bool:
        """True for a Unix socket or a loopback host (decided without any name lookup)."""
        return self.scheme == "unix" or is_loopback(self.host)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal; any other name counts as remote (no DNS)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(text: str, given: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise UsageError(f"the port in {given!r} must be a number 0-65535")
    return int(text)


#: A web page's address that a page may link to: http(s) only (never javascript: or data:),
#: none of the characters that would end an HTML attribute.
PAGE = re.compile(r"^https?://[^\s\"'<>\\]{1,200}$")


def parse(text: str, *, what: str = "service") -> Address:
    """Parse one of :data:`FORMS`; a UsageError names the forms and the text given."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise UsageError(f"unix: needs a socket path for the {what}, got {text!r}")
        return Address("unix", path=text[5:])
    if text.startswith("tcp:"):
        host, sep, port = text[4:].rpartition(":")
        if not sep or not host.strip("[]"):
            raise UsageError(f"expected tcp:HOST:PORT for the {what}, got {text!r}")
        return Address("http", host=host.strip("[]"), port=_port(port, text))
    if text.startswith(("http://", "https://")):
        return _parse_url(text, what)
    if not text or _SCHEME.match(text) or HOST_PORT.match(text):
        hint = f"; for TCP write tcp:{text}" if HOST_PORT.match(text) else ""
        raise UsageError(f"expected {FORMS} for the {what}, got {text!r}{hint}")
    return Address("unix", path=text)


def _parse_url(text: str, what: str) -> Address:
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"the port in {text!r} must be a number 0-65535") from exc
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise UsageError(f"expected http(s)://HOST:PORT for the {what}, got {text!r}")
    scheme: Literal["http", "https"] = "https" if parts.scheme == "https" else "http"
    default = 443 if scheme == "https" else 80
    return Address(
        scheme,
        host=parts.hostname,
        port=default if port is None else port,
        prefix=parts.path.rstrip("/"),
    )


@functools.cache
def _unused_context() -> ssl.SSLContext:
    """The one context plain transports carry (httpx insists on one); never handshakes, and
    would refuse every certificate if it did (no CA loaded)."""
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


@functools.cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    import ssl

    return ssl.create_default_context(cafile=ca_file)


def tls_context(ca_file: str | Path | None) -> ssl.SSLContext:
    """The process's one verifying context for ``ca_file`` (``None``: the system's CAs)."""
    if ca_file is None:
        return _tls_context(None)
    path = Path(ca_file).resolve()
    import ssl

    try:
        return _tls_context(str(path))
    except ssl.SSLError as exc:  # an OSError too: first
        raise UsageError(f"the CA file {ca_file} holds no PEM certificate: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read the CA file {ca_file}: {exc.strerror}") from exc


def require_private(address: Address, *, what: str, insecure_plain_http: bool) -> None:
    """Refuse plain HTTP to a non-loopback host: a bearer token would cross it in clear."""
    if address.scheme == "http" and not address.loopback and not insecure_plain_http:
        raise UsageError(
            f"refusing plain HTTP to the {what} at {address}: its token would cross the "
            "network in clear; use https:// (the server's --tls-cert) or pass "
            "--insecure-plain-http"
        )


def client(
    address: Address,
    *,
    what: str,
    headers: dict[str, str] | None = None,
    timeout: float | None = 30.0,
    ca_file: str | Path | None = None,
    insecure_plain_http: bool = False,
) -> httpx.Client:
    """An httpx client for ``address``; refuses plain HTTP to a remote host (bearer tokens
    would cross the network in clear) unless ``insecure_plain_http``."""
    import httpx

    require_private(address, what=what, insecure_plain_http=insecure_plain_http)
    # one --ca-file serves every https:// service a command talks to; others need none
    verify = tls_context(ca_file) if address.scheme == "https" else _unused_context()
    if address.scheme == "unix":
        transport = httpx.HTTPTransport(uds=address.path, verify=verify, trust_env=False)
        base = f"http://sevlaunch-{what.replace(' ', '-')}"
    else:
        transport = httpx.HTTPTransport(verify=verify, trust_env=False)
        base = str(address)
    return httpx.Client(
        base_url=base,
        transport=transport,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        trust_env=False,
    )


def unreachable(
    exc: httpx.HTTPError, address: Address, ca_file: str | Path | None = None, hint: str = ""
) -> str:
    """One line saying why ``address`` could not be used, naming it; ``hint`` says how to
    start or name the service when nothing listens there."""
    import httpx

    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        trusted = f"the CA file {ca_file}" if ca_file else "the system's CAs (give --ca-file)"
        detail = text.split("certificate verify failed:", 1)[-1].strip(" ()_")
        return f"the TLS certificate of {address} is not trusted by {trusted}: {detail}"
    if isinstance(exc, httpx.ConnectError) and ("SSL" in text or "TLS" in text):
        return f"TLS handshake with {address} failed (is it serving https?): {text}"
    known: list[tuple[type[Exception], str]] = [
        (httpx.ConnectTimeout, f"no answer from {address} within {CONNECT_TIMEOUT:g} s"),
        (httpx.ReadTimeout, f"{address} accepted the connection but sent no answer in time"),
        (httpx.RemoteProtocolError, f"{address} did not answer HTTP as expected: {text}"),
        (httpx.ConnectError, f"cannot reach {address}: {text}" + (f"; {hint}" if hint else "")),
    ]
    for kind, message in known:
        if isinstance(exc, kind):
            return message
    return f"cannot reach {address}: {text}"


def never_sent(exc: BaseException) -> bool:
    """Whether nothing listened at the address (connection refused, no socket file), so the
    service never saw the request and retrying it repeats nothing; a TLS or protocol
    failure, or a timeout, is not that."""
    import httpx

    if not isinstance(exc, httpx.ConnectError):
        return False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionRefusedError, FileNotFoundError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def request(
    http: httpx.Client, method: str, path: str, *, wait: float = 0.0, **kwargs: Any
) -> httpx.Response:
    """``http.request``, sent again for up to ``wait`` seconds while nothing listens at the
    address (a service being restarted), backing off from 50 ms to 1 s; any other failure,
    or the last one, is raised as httpx raised it."""
    import httpx

    deadline, delay = time.monotonic() + wait, 0.05
    while True:
        try:
            return http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            if not (never_sent(exc) and time.monotonic() + delay < deadline):
                raise
        time.sleep(delay)  # the request was not sent: sending it again repeats nothing
        delay = min(2 * delay, 1.0)


def platform_socket(text: str) -> str:
    """The path of the platform service's socket (``unix:PATH`` or a bare path)."""
    address = parse(text, what="platform service")
    if address.scheme != "unix":
        raise UsageError(f"the platform service listens on a Unix socket only, got {text!r}")
    return address.path
