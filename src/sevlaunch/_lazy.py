"""Names of a package imported on first use (PEP 562), so that importing the package for one
layout or primitive does not pay for all of its modules at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a name of ``where`` (name → submodule) is
    imported from its submodule on first use and kept in ``namespace`` (the package's
    ``globals()``), so later lookups never come here again."""

    def lookup(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return lookup
