"""The CLI's shared helpers: an unreadable input names itself, an error is one line (or one JSON
object) and its exit status, and JSON output is stable (sorted keys)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, json_option, read_file
from sevlaunch.errors import HostError


@click.command()
@click.option("--code", default=1)
@json_option
def failing(code: int, as_json: bool) -> None:
    with errors_to_exit(as_json=as_json, code=code):
        raise HostError("operation invalid", "domain is not running")


@click.command()
def printing() -> None:
    emit_json({"b": 1, "a": [2]})


def test_an_error_is_one_line_on_stderr_and_its_exit_status() -> None:
    done = CliRunner().invoke(failing, ["--code", str(EXIT_USAGE)])
    assert done.exit_code == EXIT_USAGE
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ")
    assert "domain is not running" in done.stderr


def test_an_error_in_json_mode_is_one_object_on_stdout() -> None:
    done = CliRunner().invoke(failing, ["--json"])
    assert done.exit_code == 1
    answer = json.loads(done.stdout)
    assert answer["ok"] is False
    assert "domain is not running" in answer["error"]


def test_json_output_has_sorted_keys() -> None:
    assert CliRunner().invoke(printing).stdout == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'


def test_an_unreadable_input_names_what_and_where(tmp_path: Path) -> None:
    (tmp_path / "cert").write_bytes(b"x")
    assert read_file(tmp_path / "cert", "certificate") == b"x"
    with pytest.raises(click.UsageError, match=r"cannot read certificate .*missing: No such file"):
        read_file(tmp_path / "missing", "certificate")
