"""A click group that imports a subcommand's module only when that subcommand runs.

``sevlaunch owner digest`` must start as fast as a single-purpose tool, so the command tree
names its commands as ``"module:attribute"`` strings instead of importing every layer. Given
each command's help (``short_help_of``), the group's own ``--help`` lists them without
importing any.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(
        self,
        *args: Any,
        lazy: dict[str, str] | None = None,
        short_help_of: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.short_help_of = dict(short_help_of or {})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists them, from ``short_help_of`` when it covers every command."""
        names = self.list_commands(ctx)
        if not names or any(name not in self.short_help_of for name in names):
            super().format_commands(ctx, formatter)
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (n, click.Command(n, help=self.short_help_of[n]).get_short_help_str(limit))
            for n in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(n for n in self.lazy if self._available(n))})

    def _available(self, cmd_name: str) -> bool:
        module_name = self.lazy[cmd_name].split(":")[0]
        return importlib.util.find_spec(module_name) is not None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)
