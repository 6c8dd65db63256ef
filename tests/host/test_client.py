"""The host manager's client against a running daemon: typed values back, libvirt's errors
raised with their class, an unreachable daemon named by its address."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.errors import HostError
from sevlaunch.host.client import HostClient, read_token
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
