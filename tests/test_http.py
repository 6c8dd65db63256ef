"""The one address syntax (``sevlaunch._http``) and its clients' TLS contexts."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch import _http
from sevlaunch.errors import UsageError
from tests.tlsca import TlsFiles


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("unix:/run/sevlaunch/host.sock", "unix:/run/sevlaunch/host.sock"),
        ("/run/sevlaunch/host.sock", "unix:/run/sevlaunch/host.sock"),
        ("host.sock", "unix:host.sock"),
        ("./odd:name", "unix:./odd:name"),
        ("tcp:127.0.0.1:8470", "http://127.0.0.1:8470"),
        ("tcp:[::1]:8470", "http://[::1]:8470"),
        ("http://localhost:8470/", "http://localhost:8470"),
        ("https://broker.example:8443", "https://broker.example:8443"),
        ("https://broker.example", "https://broker.example:443"),
        ("https://gw.example/broker/", "https://gw.example:443/broker"),
    ],
)
def test_every_form_parses_to_one_canonical_spelling(text: str, canonical: str) -> None:
    address = _http.parse(text)
    assert str(address) == canonical
    assert _http.parse(canonical) == address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected unix:PATH (or a bare path)"),
        ("unix:", "needs a socket path"),
        ("127.0.0.1:8470", "for TCP write tcp:127.0.0.1:8470"),
        ("[::1]:8470", "for TCP write tcp:[::1]:8470"),
        ("ftp://x", "expected unix:PATH"),
        ("tcp:8470", "expected tcp:HOST:PORT"),
        ("tcp:host:99999", "must be a number 0-65535"),
        ("http://host:port", "must be a number 0-65535"),
        ("http://user@host:1", "expected http(s)://HOST:PORT"),
        ("http://host:1/?q=1", "expected http(s)://HOST:PORT"),
    ],
)
def test_bad_addresses_name_the_forms(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as caught:
        _http.parse(text, what="broker")
    assert expected in str(caught.value)


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_a_usage_error(text: str) -> None:
    try:
        address = _http.parse(text)
    except UsageError:
        return
    assert _http.parse(str(address)) == address


@given(
    st.sampled_from(["127.0.0.1", "localhost", "::1", "10.0.0.5", "example.org", "0.0.0.0"]),
    st.integers(0, 65535),
    st.sampled_from(["tcp", "http", "https"]),
)
def test_tcp_forms_round_trip(host: str, port: int, scheme: str) -> None:
    bracketed = f"[{host}]" if ":" in host else host
    text = f"tcp:{bracketed}:{port}" if scheme == "tcp" else f"{scheme}://{bracketed}:{port}"
    address = _http.parse(text)
    assert (address.host, address.port) == (host, port)
    assert _http.parse(str(address)) == address


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("localhost.example", False),  # a name is remote unless it is localhost: no DNS
    ],
)
def test_loopback_is_decided_without_a_lookup(host: str, loopback: bool) -> None:
    assert _http.is_loopback(host) is loopback


def test_plain_http_to_a_remote_host_is_refused_before_any_connection() -> None:
    remote = _http.parse("http://10.1.2.3:8470")
    with pytest.raises(UsageError, match="in clear"):
        _http.client(remote, what="broker")
    client = _http.client(remote, what="broker", insecure_plain_http=True)  # connects lazily
    client.close()


def _context(client: httpx.Client) -> ssl.SSLContext:
    transport = client._transport  # the one transport every request takes
    assert isinstance(transport, httpx.HTTPTransport)
    context = transport._pool._ssl_context
    assert isinstance(context, ssl.SSLContext)
    return context


def test_plain_and_unix_clients_share_one_context_that_trusts_nothing() -> None:
    clients = [
        _http.client(_http.parse(text), what="host manager")
        for text in ("unix:/nonexistent.sock", "tcp:127.0.0.1:1", "http://localhost:2")
    ]
    contexts = {id(_context(c)) for c in clients}
    assert len(contexts) == 1
    unused = _context(clients[0])
    assert unused.verify_mode == ssl.CERT_REQUIRED
    assert unused.cert_store_stats()["x509_ca"] == 0
    for c in clients:
        c.close()


def test_https_clients_share_one_context_per_ca_file(tls: TlsFiles) -> None:
    first = _http.client(_http.parse("https://127.0.0.1:1"), what="broker", ca_file=tls.ca)
    second = _http.client(_http.parse("https://127.0.0.1:2"), what="broker", ca_file=tls.ca)
    other = _http.client(_http.parse("https://127.0.0.1:3"), what="broker", ca_file=tls.other_ca)
    assert _context(first) is _context(second)
    assert _context(first) is not _context(other)
    assert _context(first).cert_store_stats()["x509_ca"] == 1
    for c in (first, second, other):
        c.close()


def test_a_ca_file_is_used_for_https_only_and_must_hold_a_certificate(
    tls: TlsFiles, tmp_path: Path
) -> None:
    plain = _http.client(_http.parse("unix:/x.sock"), what="host manager", ca_file=tls.ca)
    assert _context(plain).cert_store_stats()["x509_ca"] == 0  # not loaded for a socket
    plain.close()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(UsageError, match="holds no PEM certificate"):
        _http.tls_context(junk)
    with pytest.raises(UsageError, match="cannot read the CA file"):
        _http.tls_context(tmp_path / "absent.pem")


def test_the_platform_socket_is_a_unix_address() -> None:
    assert _http.platform_socket("unix:/run/p.sock") == "/run/p.sock"
    assert _http.platform_socket("/run/p.sock") == "/run/p.sock"
    with pytest.raises(UsageError, match="Unix socket only"):
        _http.platform_socket("tcp:127.0.0.1:1")


def test_never_sent_is_nothing_listening_only(tmp_path: Path) -> None:
    """Only a refused connection or a missing socket file means the request never left; a
    timeout may have reached the service, so retrying it is not safe."""
    with (
        httpx.Client(transport=httpx.HTTPTransport(uds=str(tmp_path / "none.sock"))) as c,
        pytest.raises(httpx.ConnectError) as missing,
    ):
        c.get("http://x/")
    assert _http.never_sent(missing.value)
    assert not _http.never_sent(httpx.ReadTimeout("slow"))
    assert not _http.never_sent(httpx.ConnectError("TLS handshake failed"))
    assert not _http.never_sent(ValueError("not HTTP at all"))
