"""Write docs/cli.md, the command reference, from each command's own help.

The click tree is walked from ``sevlaunch.cli.cli`` with every lazily registered command
loaded, so the reference says exactly what ``--help`` says: usage, description, options.
``tests/cli/test_reference.py`` regenerates it in memory and fails when docs/cli.md is stale.

Usage: ``python scripts/cli_reference.py [--check]`` (``--check``: exit 1 if stale, write
nothing).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"
REGENERATE = "python scripts/cli_reference.py"


def walk(command: click.Command, ctx: click.Context) -> Iterator[click.Context]:
    """Every command's context, depth first, subcommands in the order ``--help`` lists them."""
    yield ctx
    if not isinstance(command, click.Group):
        return
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        yield from walk(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))


def anchor(path: str) -> str:
    """GitHub's heading anchor for ``## `path` ``."""
    return path.lower().replace(" ", "-")


def description(command: click.Command) -> list[str]:
    """The help text as Markdown paragraphs: click's ``\\b`` blocks stay preformatted, the rest
    is unwrapped; what follows ``\\f`` is for code readers, not users."""
    text = inspect.cleandoc((command.help or "").split("\f")[0])
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("\b"):
            out.append("```\n" + paragraph.lstrip("\b").strip("\n") + "\n```")
        elif paragraph.strip():
            out.append(" ".join(line.strip() for line in paragraph.splitlines()))
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def options(ctx: click.Context) -> list[str]:
    rows = []
    for param in ctx.command.get_params(ctx):
        if not isinstance(param, click.Option):  # arguments are named in the usage line
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        rows.append(f"| `{cell(names)}` | {cell(help_text)} |")
    if not rows:
        return []
    return ["| Option | Description |", "|---|---|", *rows]


def subcommands(ctx: click.Context) -> list[str]:
    command = ctx.command
    if not isinstance(command, click.Group):
        return []
    rows = ["| Command | Description |", "|---|---|"]
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        path = f"{ctx.command_path} {name}"
        rows.append(f"| [`{path}`](#{anchor(path)}) | {cell(sub.get_short_help_str(limit=120))} |")
    return rows


def section(ctx: click.Context) -> str:
    usage = " ".join([ctx.command_path, *ctx.command.collect_usage_pieces(ctx)])
    parts = [f"## {ctx.command_path}", f"```\nUsage: {usage}\n```", *description(ctx.command)]
    for block in (subcommands(ctx), options(ctx)):
        if block:
            parts.append("\n".join(block))
    return "\n\n".join(parts) + "\n"


def render() -> str:
    """docs/cli.md's text."""
    from sevlaunch.cli import cli

    with cli.make_context("sevlaunch", [], resilient_parsing=True) as top:
        contexts = list(walk(cli, top))
        head = [
            "# sevlaunch command reference",
            "",
            "Generated from each command's own `--help` by `" + REGENERATE + "`; do not edit",
            "by hand (`tests/cli/test_reference.py` fails when this file is stale).",
            "",
        ]
        contents = [
            "  " * (len(ctx.command_path.split()) - 1) + f"- [`{p}`](#{anchor(p)})"
            for ctx in contexts
            for p in [ctx.command_path]
        ]
        return "\n".join([*head, *contents, ""]) + "\n" + "\n".join(section(c) for c in contexts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is stale")
    args = parser.parse_args(argv)
    text = render()
    current = TARGET.read_text() if TARGET.exists() else None
    if args.check:
        if current != text:
            print(f"{TARGET} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
