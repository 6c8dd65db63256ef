"""The platform's state file: an exact round trip, and any damage (a flipped byte, a cut, a
wrong version) refused as damaged, never read as some other state; the directory's lock keeps
a second service out and sweeps what a killed save left."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import PlatformError
from sevlaunch.platform.state import STATE_FILE, StateDir, StoredState

PATH = Path("/state/platform.state")
states = st.builds(
    StoredState,
    st.sampled_from(["naples", "rome", "milan", "genoa", "turin"]),
    st.binary(max_size=300),
)


@given(states)
def test_a_state_round_trips(state: StoredState) -> None:
    assert StoredState.from_bytes(state.to_bytes(), path=PATH) == state


@given(states, st.data())
def test_a_flipped_byte_is_refused_as_damaged(state: StoredState, data: st.DataObject) -> None:
    raw = bytearray(state.to_bytes())
    offset = data.draw(st.integers(0, len(raw) - 1))
    raw[offset] ^= data.draw(st.integers(1, 255))
    with pytest.raises(PlatformError, match=f"state file {PATH} is damaged"):
        StoredState.from_bytes(bytes(raw), path=PATH)


@given(states, st.data())
def test_a_cut_file_is_refused_as_damaged(state: StoredState, data: st.DataObject) -> None:
    raw = state.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(PlatformError, match="is damaged"):
        StoredState.from_bytes(raw[:cut], path=PATH)


@given(st.binary(max_size=200))
def test_any_other_bytes_are_refused_as_damaged(data: bytes) -> None:
    """After the magic too: the checksum covers every byte, so nothing random gets through."""
    for raw in (data, b"SEVLAUNCH-PLATFORM-STATE\n" + data):
        with pytest.raises(PlatformError, match="restore it from a backup"):
            StoredState.from_bytes(raw, path=PATH)


def test_the_directory_is_one_services_and_a_killed_saves_leftover_goes(tmp_path: Path) -> None:
    first = StateDir(tmp_path / "s")
    first.lock()
    try:
        first.save(StoredState("milan", b"identity"))
        leftover = first.path / f".{STATE_FILE}.abc.tmp"
        leftover.write_bytes(b"half")
        with pytest.raises(PlatformError, match="in use by another platform service"):
            StateDir(first.path).lock()
    finally:
        first.unlock()
    second = StateDir(first.path)
    second.lock()
    try:
        assert not leftover.exists()
        assert second.load() == StoredState("milan", b"identity")
        assert (second.state_file.stat().st_mode & 0o777, second.path.stat().st_mode & 0o777) == (
            0o600,
            0o700,
        )
    finally:
        second.unlock()
