"""``serve_forever``'s checks come before anything is made: a listener that would carry tokens
in clear, and a state directory the daemon cannot write, are refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.errors import SevlaunchError, UsageError
from sevlaunch.host.serve import serve_forever


def test_plain_http_off_loopback_is_refused_before_the_state_is_touched(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with pytest.raises(UsageError, match=r"refusing plain HTTP on 0\.0\.0\.0"):
        serve_forever(state, "tcp:0.0.0.0:1", qemu="sevlaunch-vmm", platform=None, token="t")
    assert not state.exists()


def test_a_state_directory_it_cannot_make_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    state = blocker / "state"
    with pytest.raises(SevlaunchError, match="a-file"):
        serve_forever(
            state, f"unix:{tmp_path}/h.sock", qemu="sevlaunch-vmm", platform=None, token=None
        )
    assert not (tmp_path / "h.sock").exists()
