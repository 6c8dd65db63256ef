"""The ``sevlaunch`` command tree. Nothing imports this package; it imports the rest lazily.

:func:`main` first offers the command line to :mod:`sevlaunch.cli._fast` (``--help`` and a
plain ``owner digest`` run there without click); everything else goes to the click group
:data:`cli` (:mod:`sevlaunch.cli._root`), imported on first use.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's flag without importing typing (see cli._fast)
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    from sevlaunch.cli import _fast

    code = _fast.run(sys.argv)
    if code is not None:
        sys.exit(code)
    from sevlaunch.cli._root import cli

    cli()


def __getattr__(name: str) -> Any:
    if name == "cli":
        from sevlaunch.cli._root import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
