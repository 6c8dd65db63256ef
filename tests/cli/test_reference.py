"""docs/cli.md is the commands' own help, regenerated: a stale copy fails here."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "cli_reference.py"


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_current(reference: ModuleType) -> None:
    target = ROOT / "docs" / "cli.md"
    current = target.read_text() if target.exists() else ""
    fresh = reference.render()
    if current != fresh:
        diff = difflib.unified_diff(
            current.splitlines(),
            fresh.splitlines(),
            "docs/cli.md",
            "the commands' help",
            lineterm="",
        )
        pytest.fail(
            "docs/cli.md is stale: run `python scripts/cli_reference.py`\n"
            + "\n".join(list(diff)[:40])
        )


def test_every_command_of_the_tree_has_a_section(reference: ModuleType) -> None:
    from sevlaunch.cli import cli

    text = reference.render()
    with cli.make_context("sevlaunch", [], resilient_parsing=True) as top:
        paths = [ctx.command_path for ctx in reference.walk(cli, top)]
    assert "sevlaunch launch" in paths
    assert "sevlaunch demo" in paths
    assert "sevlaunch owner digest" in paths  # loaded from a nested lazy group
    for path in paths:
        assert f"\n## {path}\n" in text


def test_section_renders_usage_help_and_options(reference: ModuleType) -> None:
    @click.command()
    @click.argument("src")
    @click.option(
        "--mode", type=click.Choice(["a", "b"]), default="a", show_default=True, help="A|B."
    )
    def toy(src: str, mode: str) -> None:
        """First line
        wrapped here.

        \b
        keep
          as is
        \f
        For code readers only.
        """

    ctx = toy.make_context("toy", [], resilient_parsing=True)
    text = reference.section(ctx)
    assert text.startswith(
        "## toy\n\n```\nUsage: toy [OPTIONS] SRC\n```\n\nFirst line wrapped here."
    )
    assert "```\nkeep\n  as is\n```" in text
    assert "code readers" not in text
    assert "| `--mode [a\\|b]` | A\\|B.  [default: a] |" in text
    assert "`SRC`" not in text
