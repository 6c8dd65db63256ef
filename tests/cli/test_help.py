"""Every command and every option of the whole tree says what it is for in ``--help``."""

from __future__ import annotations

from collections.abc import Iterator

import click

from sevlaunch.cli import cli


def commands() -> Iterator[click.Context]:
    def walk(command: click.Command, ctx: click.Context) -> Iterator[click.Context]:
        yield ctx
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk(
                        sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True)
                    )

    with cli.make_context("sevlaunch", [], resilient_parsing=True) as top:
        yield from walk(cli, top)


def test_every_command_and_option_has_a_help_line() -> None:
    missing = []
    seen = 0
    for ctx in commands():
        command = ctx.command
        if not (command.help or command.short_help):
            missing.append(ctx.command_path)
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                seen += 1
                if not (param.help or "").strip():
                    missing.append(f"{ctx.command_path} {param.opts[0]}")
    assert seen > 200  # the whole tree was walked, lazily loaded groups included
    assert missing == []
