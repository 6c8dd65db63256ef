"""Whole-process figures are taken as an installed package runs: with its bytecode cached.

pip compiles a wheel's modules at install; an editable checkout gets its ``__pycache__`` on
first import, unless ``PYTHONDONTWRITEBYTECODE`` is set, and then every process recompiles
every module it imports (about 0.1 s for the VMM), which no user pays. Peer tools measured
beside ours (sev-snp-measure) are installed wheels, so ours is compiled the same way first.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import sevlaunch


def ensure_bytecode() -> None:
    """Write any missing or stale ``.pyc`` of the sevlaunch package (quietly)."""
    compileall.compile_dir(Path(sevlaunch.__file__).parent, quiet=2)
