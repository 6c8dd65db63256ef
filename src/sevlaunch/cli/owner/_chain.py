"""The platform-chain options shared by ``owner verify`` and ``owner session``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def chain_options(*, chain_required: bool) -> Callable[[F], F]:
    """``--chain``, ``--ca``, ``--cek`` and ``--trust-root``, with the same names and help."""

    def decorate(func: F) -> F:
        options = (
            click.option(
                "--chain",
                "chain_path",
                required=chain_required,
                type=click.Path(dir_okay=False),
                help="Platform chain: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK] (sevctl export).",
            ),
            click.option(
                "--ca",
                "ca_path",
                type=click.Path(dir_okay=False),
                help="AMD CA file ASK ‖ ARK (ask_ark_<gen>.cert), when the chain is not a full export.",
            ),
            click.option(
                "--cek",
                "cek_path",
                type=click.Path(dir_okay=False),
                help="AMD-signed CEK from AMD's key server, replacing the chain's CEK.",
            ),
            click.option(
                "--trust-root",
                "trust_roots",
                multiple=True,
                type=click.Path(dir_okay=False),
                help="Also trust this root: an ARK, or a CA file ASK ‖ ARK such as an emulated "
                "platform's (platform export-root). Repeatable.",
            ),
        )
        for option in reversed(options):
            func = option(func)
        return func

    return decorate
