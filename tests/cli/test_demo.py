"""``sevlaunch demo`` as a newcomer runs it: one command, exit 0, the unlocked disk on the guest's
console, the tampered firmware refused at step 11, and nothing left running afterwards (unless
``--keep`` asked for it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from sevlaunch.orchestrate.demo import DISK_LABEL
from tests.orchestrate.stack import BIN, pids_naming, reap

SEVLAUNCH = str(BIN / "sevlaunch")


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
    environ["COLUMNS"] = "200"  # long lines stay whole in a pipe
    return subprocess.run(
        [SEVLAUNCH, "demo", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def assert_demo_output(out: str, guests: int) -> None:
    for index in range(1, guests + 1):
        assert f"demo-{index} serial console" in out
    assert out.count(f"disk label '{DISK_LABEL}'") == guests
    assert "refused at step 11: the measurement matches none" in out
    assert "no secret was released and the domain was destroyed" in out
    assert f"{guests}/{guests} attested guests booted and unlocked their disk" in out
    assert "the tampered launch was refused;" in out
    assert "refused: True" not in out  # words, not a Python value
    assert "every expected outcome happened" in out


def test_demo_runs_and_cleans_up() -> None:
    done = demo()
    assert done.returncode == 0, done.stdout + done.stderr
    assert_demo_output(done.stdout, 1)
    assert_cleaned_up(done.stdout)


def assert_cleaned_up(out: str) -> None:
    """The demo's temporary work directory is gone and nothing it started still runs."""
    found = re.search(r"work directory: (\S+)", out)
    assert found is not None
    root = found.group(1)
    try:
        assert not Path(root).exists(), "the temporary work directory was left behind"
        assert pids_naming(root) == [], "a service or guest outlived the demo"
    finally:
        reap(root)


def test_demo_three_guests_kept_running() -> None:
    root = Path(tempfile.mkdtemp(prefix="sl-demo-"))  # short: guest sockets live under it
    try:
        done = demo("--guests", "3", "--keep", "--dir", str(root))
        assert done.returncode == 0, done.stdout + done.stderr
        assert_demo_output(done.stdout, 3)
        host = re.search(
            r"host manager dashboard: (http://127\.0\.0\.1:\d+/) \(token: the file (\S+)\)",
            done.stdout,
        )
        broker = re.search(
            r"broker dashboard: (http://127\.0\.0\.1:\d+/) \(owner token: the file (\S+)\)",
            done.stdout,
        )
        assert host is not None, done.stdout
        assert broker is not None, done.stdout
        assert (host.group(2), broker.group(2)) == (
            str(root / "host.token"),
            str(root / "owner.token"),
        )
        assert f"export SEVLAUNCH_HOST_TOKEN_FILE={root / 'host.token'}" in done.stdout
        for (url, token_file), fragment in zip(
            (host.groups(), broker.groups()), ("domains", "launches"), strict=True
        ):
            assert httpx.get(url, timeout=10).status_code == 200  # the page a browser opens
            data = f"{url}ui/fragments/{fragment}"
            assert httpx.get(data, timeout=10).status_code == 401  # its data needs the token
            token = Path(token_file).read_text().strip()
            shown = httpx.get(data, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert shown.status_code == 200
            assert "demo-1" in shown.text  # both pages name the guest
        address = "tcp:" + host.group(1).removeprefix("http://").rstrip("/")
        listed = subprocess.run(
            [
                SEVLAUNCH,
                "host",
                "list",
                "--connect",
                address,
                "--host-token-file",
                host.group(2),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        running = {row["name"] for row in json.loads(listed.stdout)}
        assert running == {"demo-1", "demo-2", "demo-3"}
        assert "pkill" not in done.stdout
        # the printed lines, pasted into a shell, reach the services and then stop them
        lines = done.stdout.splitlines()
        pasted = [line for line in lines if line.startswith("export ")]
        pasted.append(next(line for line in lines if line.startswith("for vm in ")))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
        environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
        stopped = subprocess.run(
            ["bash", "-e", "-c", "\n".join(pasted)],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert stopped.stdout.count("destroyed") == 3
        wait_until_gone(str(root))
    finally:
        reap(str(root))
        shutil.rmtree(root, ignore_errors=True)


def wait_until_gone(root: str, timeout: float = 20.0) -> None:
    """The services stop on SIGTERM in their own time; none may be left."""
    import time

    deadline = time.monotonic() + timeout
    while pids_naming(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_naming(root) == [], "a service or guest outlived the stop line"


def test_demo_refuses_a_work_directory_too_deep_for_unix_sockets(tmp_path: Path) -> None:
    root = tmp_path / ("d" * 60)
    done = demo("--dir", str(root))
    assert done.returncode == 1
    assert "too long" in done.stdout
    assert "Unix sockets take at most 107" in done.stdout
    assert not root.exists()
