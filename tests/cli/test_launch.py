"""``sevlaunch launch`` run as a user runs it (a subprocess) against a real host manager, platform
and broker: JSON results, N guests at once, failures that name their step, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.orchestrate.services import start_service
from sevlaunch.protocol import Step
from tests.orchestrate.stack import BIN, RunningStack, running_stack, unique
from tests.services import broker_argv, free_port
from tests.tlsca import TlsFiles

SEVLAUNCH = str(BIN / "sevlaunch")


@pytest.fixture(scope="module")
def env() -> Iterator[RunningStack]:
    with running_stack() as running:
        yield running


def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
    environ.update(extra or {})
    return subprocess.run(
        [SEVLAUNCH, *args], capture_output=True, text=True, env=environ, timeout=120, check=False
    )


def write_xml(env: RunningStack, tmp_path: Path, name: str, firmware: Path | None = None) -> str:
    path = tmp_path / f"{name}.xml"
    path.write_text(env.xml(name, firmware))
    return str(path)


def broker_args(env: RunningStack) -> list[str]:
    stack = env.stack
    return [
        "--connect",
        stack.host_uri,
        "--broker",
        stack.broker_url,
        "--workload",
        "demo",
        "--launcher-token-file",
        str(stack.launcher_token),
        "--kds-url",
        stack.kds_url,
    ]


def host_list(env: RunningStack) -> dict[str, str]:
    """``sevlaunch host list --all --json``: every domain's state."""
    done = run("host", "list", "--connect", env.stack.host_uri, "--all", "--json")
    assert done.returncode == 0, done.stderr
    return {row["name"]: row["state"] for row in json.loads(done.stdout)}


def assert_booted(result: dict[str, Any], name: str) -> None:
    assert result["ok"], result["message"]
    assert result["domain"] == name
    assert [s["status"] for s in result["steps"]] == ["ok"] * len(Step)
    assert [s["name"] for s in result["steps"]] == [s.title for s in Step]


def test_json_result_of_one_launch(env: RunningStack, tmp_path: Path) -> None:
    name = unique("cli")
    done = run("launch", write_xml(env, tmp_path, name), *broker_args(env), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert_booted(result, name)
    assert (result["error"], result["failed_step"]) == (None, None)
    assert host_list(env)[name] == "running"
    env.destroy(name)


def test_count_launches_n_guests_at_once(env: RunningStack, tmp_path: Path) -> None:
    base = unique("many")
    args = [write_xml(env, tmp_path, base), *broker_args(env), "--count", "3", "--json"]
    done = run("launch", *args)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    names = [f"{base}-{i}" for i in (1, 2, 3)]
    assert [r["domain"] for r in results] == names
    for result, name in zip(results, names, strict=True):
        assert_booted(result, name)
    states = host_list(env)
    assert all(states[n] == "running" for n in names)
    for name in names:
        env.destroy(name)


def test_refused_launch_json_names_the_step_and_the_domain_is_destroyed(
    env: RunningStack, tmp_path: Path
) -> None:
    name = unique("cli-tampered")
    xml = write_xml(env, tmp_path, name, env.art.tampered)
    done = run("launch", xml, *broker_args(env), "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is False
    assert result["failed_step"] == 11
    assert result["message"].startswith(f"{name}: step 11 (measurement checked) failed: ")
    assert "the domain was destroyed" in result["message"]
    assert host_list(env)[name] == "shut off"


def test_refused_launch_tells_the_user_which_step_failed(env: RunningStack, tmp_path: Path) -> None:
    name = unique("cli-tampered")
    done = run("launch", write_xml(env, tmp_path, name, env.art.tampered), *broker_args(env))
    assert done.returncode == 1
    assert f"{name}: step 11 (measurement checked) failed: " in done.stderr
    assert "the domain was destroyed" in done.stderr
    assert "attested launch of" in done.stdout  # the progress table, printed once
    assert "✗" in done.stdout
    assert host_list(env)[name] == "shut off"


def test_launch_takes_every_address_and_token_from_what_demo_keep_prints(
    env: RunningStack, tmp_path: Path
) -> None:
    """The variables ``demo --keep`` prints are the ones ``launch`` reads."""
    stack = env.stack
    printed = {
        "SEVLAUNCH_HOST": stack.host_uri,
        "SEVLAUNCH_BROKER_URL": stack.broker_url,
        "SEVLAUNCH_LAUNCHER_TOKEN_FILE": str(stack.launcher_token),
        "SEVLAUNCH_KDS_URL": stack.kds_url,
        "SEVLAUNCH_WORKLOAD": "demo",
    }
    name = unique("cli-env")
    done = run("launch", write_xml(env, tmp_path, name), "--json", extra=printed)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing deprecated, nothing missing
    assert_booted(json.loads(done.stdout), name)
    env.destroy(name)


def test_old_launch_spellings_still_work_with_a_deprecation_line(
    env: RunningStack, tmp_path: Path
) -> None:
    stack = env.stack
    name = unique("cli-old")
    old = ["--host", stack.host_uri, "--broker", stack.broker_url, "--workload", "demo"]
    old += ["--token-file", str(stack.launcher_token), "--kds-url", stack.kds_url, "--json"]
    done = run("launch", write_xml(env, tmp_path, name), *old)
    assert done.returncode == 0, done.stderr
    assert "--host is deprecated" in done.stderr
    assert "--token-file is deprecated" in done.stderr
    assert_booted(json.loads(done.stdout), name)
    env.destroy(name)


@pytest.fixture
def tls_broker(env: RunningStack, tls: TlsFiles) -> Iterator[str]:
    """A second broker instance on the stack's database, serving HTTPS with a test CA."""
    stack = env.stack
    files = {"kek": stack.root / "kek", "owner": stack.owner_token}
    files["launcher"] = stack.launcher_token
    port = free_port()
    argv = broker_argv(stack.root, f"tcp:127.0.0.1:{port}", files)
    argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--instance", "tls"]
    broker = start_service(
        "broker",
        [SEVLAUNCH, *argv],
        log=stack.root / "broker-tls.log",
        until=lambda s: "listening on" in s.log_tail(1 << 20),
    )
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        broker.stop(10)


def test_the_vm_tool_reaches_an_https_broker_with_its_ca_file(
    env: RunningStack, tls_broker: str, tls: TlsFiles, tmp_path: Path
) -> None:
    args = broker_args(env)
    args[args.index("--broker") + 1] = tls_broker
    name = unique("cli-tls")
    done = run("launch", write_xml(env, tmp_path, name), *args, "--ca-file", str(tls.ca), "--json")
    assert done.returncode == 0, done.stderr
    assert_booted(json.loads(done.stdout), name)
    env.destroy(name)
    name = unique("cli-badca")
    done = run(
        "launch", write_xml(env, tmp_path, name), *args, "--ca-file", str(tls.other_ca), "--json"
    )
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert f"the TLS certificate of {tls_broker} is not trusted by the CA file" in result["message"]
    assert name not in host_list(env)


def test_unreachable_host_fails_at_step_2(env: RunningStack, tmp_path: Path) -> None:
    name = unique("cli-nohost")
    args = broker_args(env)
    args[1] = f"unix:{tmp_path / 'absent.sock'}"
    done = run("launch", write_xml(env, tmp_path, name), *args, "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["failed_step"] == 2
    assert "no guest was started" in result["message"]
    assert name not in host_list(env)


def test_owner_dir_launch(env: RunningStack, tmp_path: Path) -> None:
    name = unique("cli-local")
    owner = env.owner_dir(tmp_path / "owner")
    args = ["-c", env.stack.host_uri, "--owner-dir", str(owner), "--kds-url", env.stack.kds_url]
    done = run("launch", write_xml(env, tmp_path, name), *args, "--json")
    assert done.returncode == 0, done.stderr
    assert_booted(json.loads(done.stdout), name)
    env.destroy(name)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-c", "unix:/x"], "give either --broker ADDRESS --workload NAME or --owner-dir DIR"),
        (
            ["-c", "unix:/x", "--broker", "unix:/b", "--owner-dir", "/o"],
            "give either --broker ADDRESS --workload NAME or --owner-dir DIR",
        ),
        (["-c", "unix:/x", "--broker", "unix:/b"], "--broker needs --workload NAME"),
        (
            ["-c", "unix:/x", "--broker", "unix:/b", "--workload", "w"],
            "--broker needs the launcher token: no token file: pass --launcher-token-file",
        ),
        (["-c", "ftp:x", "--owner-dir", "."], "expected unix:PATH (or a bare path), tcp:"),
        (["-c", "unix:/x", "--owner-dir", "/nonexistent"], "owner.json"),
        (
            ["-c", "http://10.1.2.3:8470", "--owner-dir", "."],
            "refusing plain HTTP to the host manager at http://10.1.2.3:8470",
        ),
    ],
    ids=["no-owner", "two-owners", "no-workload", "no-token", "bad-uri", "no-owner-json", "clear"],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    xml = tmp_path / "d.xml"
    xml.write_text(
        "<domain type='kvm'><name>d</name><memory>1</memory><os><type>hvm</type></os></domain>"
    )
    done = run("launch", str(xml), *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr
