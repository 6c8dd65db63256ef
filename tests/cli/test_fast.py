"""The click-free fast paths print exactly what click prints, and hand click the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sevlaunch.cli import _fast, _measure, cli
from sevlaunch.cli._commands import COMMANDS, ROOT_HELP
from tests.owner.ovmf_images import image  # an AmdSev-like firmware with a hashes area

SEVLAUNCH = Path(sys.executable).parent / "sevlaunch"


def _click_help(width: int) -> str:
    """What click renders for ``sevlaunch --help`` laid out ``width`` wide."""
    result = CliRunner().invoke(
        cli, ["--help"], prog_name="sevlaunch", terminal_width=width, catch_exceptions=False
    )
    assert result.exit_code == 0
    return result.output


def test_the_table_says_what_each_command_says() -> None:
    ctx = click.Context(cli)
    assert cli.help == ROOT_HELP
    for name, (target, text) in COMMANDS.items():
        module, attr = target.split(":")
        command = getattr(__import__(module, fromlist=[attr]), attr)
        assert cli.get_command(ctx, name) is command
        first = (command.help or "").split("\n\n")[0]
        assert " ".join(first.split()) == text, name


@pytest.mark.parametrize("width", range(50, 140, 3))
def test_root_help_is_clicks_at_every_width(width: int) -> None:
    fast = _fast.root_help("sevlaunch", width)
    if fast is None:  # too narrow to print without wrapping: click does it
        assert len(ROOT_HELP) + 2 > width
        return
    assert fast + "\n" == _click_help(width)


def test_short_help_cuts_as_click_does() -> None:
    texts = [COMMANDS["demo"][1], "One. Two three.", "word " * 30, "a" * 70, "ab cd. ef gh"]
    for text in texts:
        for limit in range(5, 90):
            clicks = click.Command("x", help=text).get_short_help_str(limit)
            assert _fast.short_help(text, limit) == clicks, (text, limit)


def _both(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """The whole process (fast path or not) and what click alone prints for ``args``."""
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run(
        [SEVLAUNCH, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=60,
    )
    clicks = CliRunner().invoke(cli, args, prog_name="sevlaunch", terminal_width=78)
    assert done.returncode == clicks.exit_code, (args, done.stderr, clicks.output)
    assert done.stdout + done.stderr == clicks.output, args
    return done, clicks.output


def test_owner_digest_fast_and_click_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths, for click in this process too
    (tmp_path / "fw.fd").write_bytes(image())
    (tmp_path / "k").write_bytes(b"kernel")
    (tmp_path / "r").write_bytes(b"initrd")
    (tmp_path / "dir").mkdir()
    lines = [
        ["-f", "fw.fd"],
        ["--firmware=fw.fd", "--output-format", "base64"],
        ["-ffw.fd", "-k", "k", "-r", "r", "-e", "console=ttyS0  quiet"],
        ["-f", "fw.fd", "--kernel", "k", "--cmdline="],
        # not for the fast path: click answers, the fast path must not
        ["-f", "fw.fd", "-f", "fw.fd"],
        ["-f", "missing.fd"],
        ["-f", "dir"],
        ["-f", "fw.fd", "--initrd", "r"],
        ["-f", "fw.fd", "--output-format", "HEX"],
        ["-f"],
        ["-f", "--kernel"],
        ["--firmwar", "fw.fd"],
        ["-f", "fw.fd", "--es", "--vcpus", "1"],
        ["-f", "fw.fd", "--help"],
        ["-f", "k", "-k", "k"],  # a firmware with no hashes area given a kernel
    ]
    for line in lines:
        _both(["owner", "digest", *line], tmp_path)


def test_the_fast_path_takes_only_plain_lines(tmp_path: Path) -> None:
    (tmp_path / "fw.fd").write_bytes(image())
    fw = str(tmp_path / "fw.fd")
    assert _fast.owner_digest(["-f", fw]) is not None
    for refused in (["-f", fw, "-x"], ["-f", fw, "--es"], ["-f", fw, "extra"], ["-k", fw]):
        assert _fast.owner_digest(refused) is None
    assert _fast.run(["sevlaunch", "owner", "verify"]) is None
    assert _fast.run(["sevlaunch", "--version"]) is None
    assert _fast.root_help("python -m sevlaunch.cli", 78) is None  # click names the program


def test_the_tables_build_the_click_options() -> None:
    digest = cli.get_command(click.Context(cli), "owner").get_command(click.Context(cli), "digest")
    params = {p.name: p for p in digest.params}
    for opt in (_measure.FIRMWARE, *_measure.DIRECT_BOOT, _measure.OUTPUT_FORMAT):
        assert set(params[opt.dest].opts) == set(opt.decls)
        assert params[opt.dest].help == opt.help


def test_help_and_digest_run_without_click(tmp_path: Path) -> None:
    (tmp_path / "fw.fd").write_bytes(image())
    script = (
        "import sys\n"
        "from sevlaunch.cli import _fast\n"
        "assert _fast.run(['sevlaunch', '--help']) == 0\n"
        f"assert _fast.run(['sevlaunch', 'owner', 'digest', '-f', {str(tmp_path / 'fw.fd')!r}]) == 0\n"
        "for heavy in ('click', 'typing', 'sevlaunch.formats.ovmf', 'cryptography'):\n"
        "    assert heavy not in sys.modules, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_root_help_as_a_whole_process_is_clicks(tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        _both([flag], tmp_path)
