"""The README's walk-through ("Running each service" and "The guest owner's tools") works as
written: its shell blocks, every line but those marked ``# aside:``, run verbatim by bash in a
scratch directory that holds the clone's examples, against the emulated platform, with the
services started in the background by the walk-through itself. The only things the test
chooses are where RUNDIR, HOME and TMPDIR are, which port the broker's default is and that
the hypervisor uses RUNDIR's platform even if a /dev/sev exists (the environment a newcomer's
shell would have), so that it runs beside other tests."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("Running each service", "The guest owner's tools")
ASIDE = "# aside:"
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
TIMEOUT = 300


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def commands(block: str) -> list[str]:
    """The block's lines, a line continued with a backslash joined to the next."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        if line.endswith("\\"):
            pending += line + "\n"
            continue
        out.append(pending + line)
        pending = ""
    return out


def walk_through() -> tuple[str, list[str]]:
    """The script the test runs, and the aside lines it leaves out."""
    text = (ROOT / "README.md").read_text()
    lines: list[str] = []
    for title in SECTIONS:
        for block in BLOCK.findall(section(text, title)):
            lines.extend(commands(block))
    run = [line for line in lines if ASIDE not in line]
    asides = [line for line in lines if ASIDE in line]
    return "\n".join(run) + "\n", asides


def test_the_walk_through_leaves_out_only_what_it_marks_as_an_aside() -> None:
    script, asides = walk_through()
    assert 0 < len(asides) <= 4, asides
    for line in asides:  # an aside says why it cannot run here
        assert line.split(ASIDE, 1)[1].strip(), line
    for needed in ("platform serve", "host serve", "broker serve", "sevlaunch launch", "&\n"):
        assert needed in script
    background = re.findall(r"[^&]&[ \t]*(?:#.*)?$", script, re.MULTILINE)
    assert len(background) == script.count("until grep -s 'listening on\\|^error:'") == 4


def environment(tmp_path: Path) -> dict[str, str]:
    """A newcomer's shell: the clone's venv on PATH and no sevlaunch variables set. ``tmp_path``
    is short: a hypervisor's monitor socket lives in the walk-through's host state directory,
    and Unix socket paths have at most 107 bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
    for name in ("run", "home", "tmp"):
        (tmp_path / name).mkdir(mode=0o700)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"),
        TMPDIR=str(tmp_path / "tmp"),
        SEVLAUNCH_BROKER_URL=f"tcp:127.0.0.1:{free_port()}",  # the default port may be taken
        # the hypervisor prefers /dev/sev to RUNDIR's platform, as on a real host; another
        # test (tests/libvirtd.py) links /dev/sev to its own platform while it runs
        SEVLAUNCH_SEV_DEVICE=str(tmp_path / "run" / "sevlaunch" / "platform.sock"),
    )
    return env


def run_bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """bash -e on the script, in its own process group, which is killed whatever happens
    (a failed line leaves the background services running: they must not outlive the test)."""
    output = cwd / "walk-through.out"
    with output.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the walk-through did not end within {TIMEOUT} s:\n{output.read_text()}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, output.read_text(), "")


def logs(directory: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')}" for p in directory.glob("*.log")
    )


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (pytest's are too deep for socket paths)."""
    path = Path(tempfile.mkdtemp(prefix="sl-readme-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the walk-through uses openssl rand")
def test_the_readme_walk_through_launches_guests_that_unlock_their_disk(short_tmp: Path) -> None:
    tmp_path = short_tmp
    script, _ = walk_through()
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copytree(ROOT / "examples", clone / "examples")
    env = environment(tmp_path)
    result = run_bash(script, clone, env)
    work = [p for p in (tmp_path / "tmp").iterdir() if p.is_dir()]
    assert len(work) == 1, work  # the walk-through's own scratch directory
    where = f"\n{result.stdout[-8000:]}\n{logs(work[0])[-8000:]}"
    assert result.returncode == 0, where
    out = result.stdout
    assert out.count("launched and booted") == 3, where  # broker, SEV-ES, owner.json
    # the console of the VM tool's guest and of the step-by-step one
    assert out.count("cryptsetup: vda: unlocked with luks-key; disk label 'root'") >= 2, where
    assert "OK: the measurement matches launch digest" in out, where
    assert "Traceback" not in out + logs(work[0]), where
    for name in ("platform", "host", "broker", "kds"):  # each served, and none is left
        assert "listening on" in (work[0] / f"{name}.log").read_text(), where
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == "", f"processes left running: {leftover.stdout}"
    for private in ("kek", "owner.token", "launcher.token", "disk.key", "vm_tek.bin"):
        assert (work[0] / private).stat().st_mode & 0o077 == 0, private
