"""The packages' lazy names (PEP 562, ``sevlaunch._lazy``): every exported name resolves to its
submodule's object and is kept; an unknown one is an AttributeError, as for any module."""

from __future__ import annotations

import types

import pytest

import sevlaunch.crypto
import sevlaunch.formats
import sevlaunch.formats.snp
from sevlaunch._lazy import exports


@pytest.mark.parametrize("package", [sevlaunch.formats, sevlaunch.formats.snp, sevlaunch.crypto])
def test_every_exported_name_resolves(package: types.ModuleType) -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None
        assert name in vars(package)  # kept: the next lookup is an ordinary attribute


def test_a_name_loads_its_submodule_once_and_an_unknown_one_is_refused() -> None:
    namespace: dict[str, object] = {}
    lookup = exports("sevlaunch.formats", {"Policy": "policy"}, namespace)
    from sevlaunch.formats.policy import Policy

    assert lookup("Policy") is Policy
    assert namespace == {"Policy": Policy}
    with pytest.raises(AttributeError, match="has no attribute 'Session'"):
        lookup("Session")
