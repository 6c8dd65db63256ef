"""The host manager's client against a running daemon: typed values back, libvirt's errors
raised with their class, an unreachable daemon named by its address."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sevlaunch.errors import HostError
from sevlaunch.host.client import HostClient, read_token
from sevlaunch.protocol import HostEvent
from tests.host.conftest import Daemon, Media, sev_domain_xml


def test_definitions_and_errors_round_trip(module_daemon: Daemon, media: Media) -> None:
    with HostClient(module_daemon.uri) as client:
        info = client.node_sev_info()
        assert info.cbitpos == 51
        defined = client.define(sev_domain_xml("client-vm", media, None, kernel=False, disk=False))
        assert (defined.name, defined.state) == ("client-vm", "shut off")
        assert "client-vm" in [d.name for d in client.list_domains(all_domains=True)]
        with pytest.raises(HostError) as caught:
            client.start("no-such-domain")
        assert caught.value.kind == "Domain not found"
        with pytest.raises(HostError) as refused:
            client.define("<domain type='kvm'><name>..</name></domain>")
        assert refused.value.kind == "XML error"
        client.undefine("client-vm")


def test_an_unreachable_daemon_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        HostClient(f"unix:{tmp_path}/none.sock", timeout=5) as client,
        pytest.raises(HostError) as caught,
    ):
        client.list_domains()
    assert "none.sock" in str(caught.value)
    monkeypatch.delenv("SEVLAUNCH_HOST_TOKEN_FILE", raising=False)
    assert read_token(None) is None
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert read_token(str(token)) == "s3cret"


def test_a_domain_stream_carries_that_domain_only(module_daemon: Daemon, media: Media) -> None:
    """``events(domain)`` is filtered by the host: the other domain's events never arrive."""
    heard: list[HostEvent] = []
    subscribed = threading.Event()

    def listen() -> None:
        with HostClient(module_daemon.uri) as watcher:
            for event in watcher.events("ev-b"):
                heard.append(event)
                if event.kind == "subscribed":
                    subscribed.set()
                elif event.kind == "lifecycle" and event.fields.get("type") == "Undefined":
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert subscribed.wait(30)
    with HostClient(module_daemon.uri) as client:
        for name in ("ev-a", "ev-b"):
            client.define(sev_domain_xml(name, media, None, kernel=False, disk=False))
        for name in ("ev-a", "ev-b"):
            client.undefine(name)
    thread.join(30)
    assert not thread.is_alive()
    assert [(e.domain, e.fields.get("type")) for e in heard if e.kind == "lifecycle"] == [
        ("ev-b", "Defined"),
        ("ev-b", "Undefined"),
    ]


def test_a_restarted_host_is_waited_for_once_it_has_answered(
    start_daemon: Callable[..., Daemon],
) -> None:
    """The VM tool's client (``reconnect``) rides out a host manager restart mid-launch: the
    request that found nothing listening is sent again once the host is back; a client made
    without it fails at once."""
    daemon = start_daemon()
    with HostClient(daemon.uri, reconnect=30) as waiting, HostClient(daemon.uri) as at_once:
        assert waiting.list_domains() == []
        assert at_once.list_domains() == []
        daemon.stop()
        with pytest.raises(HostError, match=r"cannot reach"):
            at_once.list_domains()
        back = threading.Timer(1.0, daemon.start)
        back.start()
        began = time.monotonic()
        try:
            assert waiting.list_domains() == []
        finally:
            back.join()
        assert time.monotonic() - began >= 0.9  # it waited for the restart, it did not fail


def test_a_wrong_address_fails_at_once_even_with_reconnect(tmp_path: Path) -> None:
    began = time.monotonic()
    with (
        HostClient(f"unix:{tmp_path}/none.sock", reconnect=30) as client,
        pytest.raises(HostError, match=r"none\.sock"),
    ):
        client.node_sev_info()
    assert time.monotonic() - began < 5
