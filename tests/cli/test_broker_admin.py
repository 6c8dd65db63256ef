"""``sevlaunch broker launcher`` and ``sevlaunch broker launch`` against a real broker process
(launches live 1 s there and it sweeps every 0.1 s)."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.broker.client import BrokerClient
from sevlaunch.cli import cli
from sevlaunch.errors import AccessDeniedError
from tests.broker.conftest import DIGEST, OWNER_TOKEN, POLICY
from tests.broker.fakeplatform import FakePlatform
from tests.broker.servers import Files, broker_process, write_files

Server = tuple[str, Files]


@pytest.fixture(scope="module")
def platform() -> FakePlatform:
    return FakePlatform.create(b"cli-admin")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, platform: FakePlatform) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("broker-admin")
    files = write_files(tmp)
    sock = tmp / "broker.sock"
    fast = ("--launch-ttl", "1", "--sweep-interval", "0.1")
    with broker_process(f"sqlite:///{tmp / 'broker.db'}", files, sock, "cli-admin", *fast):
        with BrokerClient(f"unix:{sock}", OWNER_TOKEN) as owner:
            owner.add_root(platform.ca_file, "lab")
            owner.add_workload("web", [POLICY], [DIGEST])
        yield f"unix:{sock}", files


def run(server: Server, *args: str, ok: bool = True) -> str:
    url, files = server
    env = {"SEVLAUNCH_BROKER_URL": url, "SEVLAUNCH_OWNER_TOKEN_FILE": str(files.owner_token)}
    result = CliRunner().invoke(cli, ["broker", *args], env=env)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_a_launcher_is_added_listed_and_revoked(
    server: Server, tmp_path: Path, platform: FakePlatform
) -> None:
    out = run(server, "launcher", "add", "ci", "--max-open", "4", "--rate", "30")
    assert "added launcher ci (max-open 4, rate 30/min, burst 200 (default))" in out
    token = out.strip().splitlines()[-1]
    assert token.startswith("sevl_")
    token_file = tmp_path / "nightly.token"
    out = run(server, "launcher", "add", "nightly", "--token-out", str(token_file))
    assert "sevl_" not in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    again = run(server, "launcher", "add", "other", "--token-out", str(token_file), ok=False)
    assert f"cannot create token file {token_file}" in again
    listed = run(server, "launcher", "list")
    assert "ci\tactive\topen=0\tmax-open 4, rate 30/min, burst 200 (default)" in listed
    assert token not in listed
    url = server[0]
    with BrokerClient(url, token.encode()) as ci:
        started = ci.start_launch("web", platform.node)
        assert "ci\tactive\topen=1" in run(server, "launcher", "list")
        assert "revoked launcher ci" in run(server, "launcher", "revoke", "ci")
        with pytest.raises(AccessDeniedError):
            ci.start_launch("web", platform.node)
    shown = json.loads(run(server, "launch", "show", started.launch_id, "--json"))
    assert (shown["launcher"], shown["state"], shown["reason"]) == (
        "ci",
        "refused",
        "launcher-revoked",
    )
    rows = json.loads(run(server, "launcher", "list", "--json"))
    revoked = {r["name"]: bool(r["revokedAt"]) for r in rows}
    assert revoked == {"ci": True, "default": False, "nightly": False, "other": False}


def test_expired_launches_are_listed_and_shown_as_such(
    server: Server, tmp_path: Path, platform: FakePlatform
) -> None:
    token_file = tmp_path / "batch.token"
    run(server, "launcher", "add", "batch", "--token-out", str(token_file))
    with BrokerClient(server[0], token_file.read_bytes().strip()) as batch:
        launch = batch.start_launch("web", platform.node).launch_id
    deadline = time.monotonic() + 30
    while launch not in run(server, "launch", "list", "--state", "expired"):
        assert time.monotonic() < deadline, run(server, "launch", "list")
        time.sleep(0.1)
    listed = run(server, "launch", "list", "--launcher", "batch").splitlines()
    assert [line.split("  ")[2:] for line in listed] == [["batch", "web", "expired (expired)"]]
    shown = run(server, "launch", "show", launch)
    assert "state:    expired (expired)" in shown
    assert "launcher: batch" in shown
    audit = run(server, "audit", "--launch", launch)
    assert f"launch.expire  expired  reason=expired  workload=web  launch={launch}" in audit
    assert "launcher=batch" in audit
