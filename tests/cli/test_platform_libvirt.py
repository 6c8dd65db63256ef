"""``sevlaunch platform install-libvirt`` / ``uninstall-libvirt`` as a person calls them (the
changes themselves: tests/platform/test_libvirt_setup.py; with libvirtd: tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.platform.libvirt_setup import Layout


def test_install_without_a_running_platform_says_what_to_do(tmp_path: Path) -> None:
    absent = tmp_path / "platform.sock"
    result = CliRunner().invoke(cli, ["platform", "install-libvirt", "--platform", str(absent)])
    assert result.exit_code == 2
    assert f"{absent}: No such file or directory: start 'sevlaunch platform serve' first" in (
        result.output
    )


def test_install_refuses_a_file_that_is_no_socket(tmp_path: Path) -> None:
    plain = tmp_path / "file"
    plain.write_text("")
    result = CliRunner().invoke(cli, ["platform", "install-libvirt", "--platform", str(plain)])
    assert result.exit_code == 2
    assert "not a socket" in result.output


@pytest.mark.skipif(Layout().manifest.exists(), reason="this machine has an install to keep")
def test_uninstall_with_nothing_installed() -> None:
    result = CliRunner().invoke(cli, ["platform", "uninstall-libvirt"])
    assert result.exit_code == 2
    assert "nothing installed here" in result.output


def test_serve_takes_a_socket_group_that_exists(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["platform", "serve", "--state", str(tmp_path / "s"), "--listen", str(tmp_path / "p.sock"),
         "--socket-group", "no-such-group-here"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no group 'no-such-group-here'" in result.output
    assert not (tmp_path / "s").exists()  # refused before any state was made
