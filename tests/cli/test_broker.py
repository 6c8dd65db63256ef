"""``sevlaunch broker`` client commands against a real broker process on a UNIX socket."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from tests.broker.conftest import SECRET
from tests.broker.fakeplatform import FakePlatform
from tests.broker.servers import Files, broker_process, write_files


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Files]]:
    tmp = tmp_path_factory.mktemp("broker")
    files = write_files(tmp)
    sock = tmp / "broker.sock"
    with broker_process(f"sqlite:///{tmp / 'broker.db'}", files, sock, "cli-test"):
        yield f"unix:{sock}", files


def run(server: tuple[str, Files], *args: str, ok: bool = True) -> str:
    url, files = server
    result = CliRunner().invoke(
        cli,
        ["broker", *args],
        env={"SEVLAUNCH_BROKER_URL": url, "SEVLAUNCH_OWNER_TOKEN_FILE": str(files.owner_token)},
    )
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def test_owner_administers_roots_workloads_and_secrets(
    server: tuple[str, Files], tmp_path: Path
) -> None:
    platform = FakePlatform.create(b"cli")
    (tmp_path / "ca.cert").write_bytes(platform.ca_file)
    assert "trusted root lab" in run(
        server, "trust", "add", str(tmp_path / "ca.cert"), "--name", "lab"
    )
    assert "ask+ark" in run(server, "trust", "list")
    firmware = tmp_path / "OVMF.fd"
    firmware.write_bytes(b"\x90" * 8192)
    (tmp_path / "luks").write_bytes(SECRET)
    out = run(
        server,
        "workload",
        "add",
        "web",
        "--policy",
        "nodbg,noks",
        "--firmware",
        str(firmware),
        "--secret",
        f"luks-key:{tmp_path / 'luks'}",
        "--min-api",
        "1.40",
        "--json",
    )
    shown = json.loads(out)
    assert shown["digests"] == [hashlib.sha256(firmware.read_bytes()).hexdigest()]
    assert shown["policies"] == [3]
    assert (shown["minApiMajor"], shown["minApiMinor"]) == (1, 40)
    run(server, "workload", "add", "db", "--policy", "0x1", "--digest", "ab" * 32)
    listed = run(server, "workload", "list")
    assert "web" in listed
    assert "db" in listed
    (tmp_path / "new").write_bytes(b"rotated passphrase")
    run(server, "secret", "set", "web", "luks-key", str(tmp_path / "new"))
    for args in (("workload", "show", "web"), ("workload", "list", "--json"), ("audit",)):
        text = run(server, *args)
        assert SECRET.decode() not in text
        assert "rotated passphrase" not in text
    assert "736869e5-84f0-4973-92ec-06879ce3da0b" in run(server, "workload", "show", "web")
    assert "secret.set" in run(server, "audit")
    run(server, "workload", "remove", "db")
    assert "no workload named 'db'" in run(server, "workload", "show", "db", ok=False)


def test_usage_errors_are_clear(server: tuple[str, Files], tmp_path: Path) -> None:
    out = run(server, "workload", "add", "x", "--policy", "1", ok=False)
    assert "--digest HEX" in out
    out = run(server, "workload", "add", "x", "--policy", "1", "--digest", "zz", ok=False)
    assert "64 hex digits" in out
    result = CliRunner().invoke(
        cli,
        ["broker", "workload", "list"],
        env={"SEVLAUNCH_OWNER_TOKEN_FILE": "", "SEVLAUNCH_BROKER_TOKEN_FILE": ""},
    )
    assert result.exit_code == 2
    assert "--owner-token-file" in result.output


def test_wrong_token_is_refused(server: tuple[str, Files], tmp_path: Path) -> None:
    url, files = server
    result = CliRunner().invoke(
        cli,
        [
            "broker",
            "workload",
            "list",
            "--broker",
            url,
            "--owner-token-file",
            str(files.launcher_token),
        ],
    )
    assert result.exit_code == 1
    assert "owner token" in result.output


def test_old_spellings_still_work_with_a_deprecation_line(server: tuple[str, Files]) -> None:
    url, files = server
    result = CliRunner().invoke(
        cli,
        ["broker", "workload", "list", "--url", url, "--token-file", str(files.owner_token)],
        env={"SEVLAUNCH_OWNER_TOKEN_FILE": ""},
    )
    assert result.exit_code == 0, result.output
    assert "--url is deprecated" in result.stderr
    assert "--token-file is deprecated" in result.stderr
    result = CliRunner().invoke(
        cli,
        ["broker", "trust", "list", "--broker", url],
        env={
            "SEVLAUNCH_OWNER_TOKEN_FILE": "",
            "SEVLAUNCH_BROKER_TOKEN_FILE": str(files.owner_token),
        },
    )
    assert result.exit_code == 0, result.output
    assert "SEVLAUNCH_BROKER_TOKEN_FILE is deprecated" in result.stderr


def test_an_unreachable_broker_is_named_with_how_to_start_one(tmp_path: Path) -> None:
    token = tmp_path / "owner.token"
    token.write_text("x" * 32)
    where = f"unix:{tmp_path / 'absent.sock'}"
    result = CliRunner().invoke(
        cli, ["broker", "workload", "list", "--broker", where, "--owner-token-file", str(token)]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert f"cannot reach {where}" in result.output
    assert "sevlaunch broker serve" in result.output


def test_audit_shows_the_newest_entries_unless_after_is_given(server: tuple[str, Files]) -> None:
    """issue 14: 'audit --limit 3' showed the three oldest entries of the log."""
    for name in ("a1", "a2", "a3"):
        run(server, "workload", "add", name, "--policy", "0x1", "--digest", "cd" * 32)
    everything = [e["id"] for e in json.loads(run(server, "audit", "--json"))]
    assert len(everything) < 100  # all of them, at the default limit
    newest = [e["id"] for e in json.loads(run(server, "audit", "--limit", "2", "--json"))]
    assert newest == everything[-2:]  # the last two, still in id order
    lines = run(server, "audit", "--limit", "2").splitlines()
    assert [int(line.split()[0]) for line in lines] == newest
    assert "workload=a3" in lines[-1]
    oldest = json.loads(run(server, "audit", "--after", "0", "--limit", "2", "--json"))
    assert [e["id"] for e in oldest] == everything[:2]
    onward = json.loads(run(server, "audit", "--after", str(everything[0]), "--json"))
    assert [e["id"] for e in onward] == everything[1:]
