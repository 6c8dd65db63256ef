"""The launch plan's pieces: paths must be absolute, QEMU's comma escaping, libvirt's JSON."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.qemu.plan import LaunchPaths, compact_json, esc


def test_relative_paths_are_refused() -> None:
    with pytest.raises(DomainXMLError, match="lib_dir must be an absolute path, got 'run'"):
        LaunchPaths(lib_dir="run", monitor_socket="/run/m.sock")
    with pytest.raises(DomainXMLError, match="log_dir must be an absolute path"):
        LaunchPaths(lib_dir="/run", monitor_socket="/run/m.sock", log_dir="log")


def test_commas_double_and_json_is_compact_in_order() -> None:
    assert esc("/a,b,,c") == "/a,,b,,,,c"
    assert compact_json({"b": 1, "a": True, "c": "x"}) == '{"b":1,"a":true,"c":"x"}'
