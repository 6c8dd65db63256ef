"""The lazy command group: its help lists commands from their given help without importing
them, a command whose module is absent is not listed, a command's module is imported when it
runs, and a target that is not a click command is a bug named as one."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sevlaunch.cli._lazy import LazyGroup

MODULE = "sevlaunch_lazy_test_commands"


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> click.Group:
    (tmp_path / f"{MODULE}.py").write_text(
        "import click\n\n"
        "@click.command()\n"
        "def hello():\n"
        "    click.echo('hello ran')\n\n"
        "not_a_command = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    lazy = {
        "hello": f"{MODULE}:hello",
        "broken": f"{MODULE}:not_a_command",
        "gone": "sevlaunch_no_such_module_here:cmd",
    }
    helps = {"hello": "Say hello.", "broken": "Not a command.", "gone": "Never listed."}
    return LazyGroup("root", lazy=lazy, short_help_of=helps)


def test_help_lists_the_available_commands_without_importing_them(group: click.Group) -> None:
    done = CliRunner().invoke(group, ["--help"])
    assert done.exit_code == 0, done.output
    assert "hello   Say hello." in done.output
    assert "broken  Not a command." in done.output
    assert "gone" not in done.output
    assert MODULE not in sys.modules


def test_a_command_is_imported_when_it_runs(group: click.Group) -> None:
    done = CliRunner().invoke(group, ["hello"])
    assert (done.exit_code, done.output) == (0, "hello ran\n")
    assert MODULE in sys.modules


def test_a_target_that_is_not_a_command_is_named(group: click.Group) -> None:
    with pytest.raises(TypeError, match=f"{MODULE}:not_a_command is not a click command"):
        CliRunner().invoke(group, ["broken"], catch_exceptions=False)
