"""Guest handles bound to their connection (issue 13, hole 7): the attack from a second
connection of the real ``sevlaunch platform serve``, refused; the owner's launch unharmed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sevlaunch.errors import FirmwareError, PlatformError
from sevlaunch.formats.commands import Command, HandleBuffer, LaunchUpdateBuffer
from sevlaunch.formats.memory import SparseMemory
from sevlaunch.formats.status import Status
from sevlaunch.platform.bindings import GuestBindings, Peer, named_handle
from sevlaunch.platform.client import PlatformClient
from tests.platform.conftest import copy_template
from tests.platform.test_serve import Server

POLICY = 0x0  # debugging allowed: DBG_DECRYPT would hand a stranger the plaintext
SECRET = b"the guest's own memory, 32 byte" + b"!"
PADDR = 0x10_0000
WAIT_LIMIT = 30.0  # a bound on waiting for the release, not an assertion about speed


@pytest.fixture
def server(short_dir: Path) -> Iterator[Server]:
    copy_template(short_dir / "state")
    srv = Server(short_dir)
    srv.start()
    yield srv
    srv.stop()


def _launch(owner: PlatformClient) -> tuple[int, SparseMemory]:
    """LAUNCH_START, ACTIVATE, LAUNCH_UPDATE_DATA of SECRET: memory now holds ciphertext."""
    owner.ensure_init()
    handle = owner.launch_start(POLICY, b"", b"")
    profile = owner.profile()
    owner.activate(handle, profile.max_es_guests + 1)
    memory = SparseMemory()
    memory.write(PADDR, SECRET)
    owner.launch_update_data(handle, PADDR, len(SECRET), memory)
    assert memory.read(PADDR, len(SECRET)) != SECRET
    return handle, memory


def _refused(attempt: Callable[[], object]) -> str:
    """The answer an unknown handle gets: INVALID_GUEST from the PSP, or for the memory
    controller's guest reads and writes the service's refusal carrying that status."""
    with pytest.raises((FirmwareError, PlatformError)) as info:
        attempt()
    if isinstance(info.value, FirmwareError):
        assert info.value.status == Status.INVALID_GUEST
    else:
        assert "fw_error=16 'Guest handle is invalid'" in str(info.value)
    return str(info.value)


def test_a_second_connection_cannot_touch_a_guest_it_did_not_launch(server: Server) -> None:
    with PlatformClient(server.sock) as owner, PlatformClient(server.sock) as stranger:
        handle, memory = _launch(owner)
        asid = owner.profile().max_es_guests + 2
        attacks: list[Callable[[], object]] = [
            lambda: stranger.dbg_decrypt(handle, PADDR, len(SECRET), memory),
            lambda: stranger.guest_read(handle, PADDR, len(SECRET), memory),
            lambda: stranger.guest_write(handle, PADDR, b"\0" * 16, memory),
            lambda: stranger.dbg_encrypt(handle, PADDR, b"\0" * 16, memory),
            lambda: stranger.launch_update_data(handle, PADDR, 16, SparseMemory()),
            lambda: stranger.launch_measure(handle),
            lambda: stranger.guest_status(handle),
            lambda: stranger.activate(handle, asid),
            lambda: stranger.deactivate(handle),
            lambda: stranger.decommission(handle),
            lambda: stranger.launch_start(POLICY, b"", b"", handle=handle),  # share its key
        ]
        messages = [_refused(attack) for attack in attacks]
        assert all("on this connection" in m for m in messages)
        # a handle that exists and one that does not get the same answer: nothing to probe
        unknown = _refused(lambda: stranger.guest_status(handle + 1000))
        assert unknown.replace(f"handle {handle + 1000}", "handle N") == messages[6].replace(
            f"handle {handle}", "handle N"
        )
        # the platform commands stay open to the socket's owner on any connection
        assert stranger.platform_status().guest_count == 1
        assert stranger.pdh_cert_export().pdh.to_bytes()
        # and the owner's launch goes on untouched
        measurement = owner.launch_measure(handle)
        owner.launch_finish(handle)
        assert owner.guest_read(handle, PADDR, len(SECRET), memory) == SECRET
        assert owner.guest_status(handle).handle == handle
        assert measurement.to_bytes()
        owner.deactivate(handle)
        owner.decommission(handle)
        assert stranger.platform_status().guest_count == 0


def test_the_guests_of_a_closed_connection_are_released(server: Server) -> None:
    """As KVM frees a dead VMM's SEV context: the ASID and the handle go with the connection."""
    with PlatformClient(server.sock) as watcher:
        owner = PlatformClient(server.sock)
        handle, _ = _launch(owner)
        assert watcher.platform_status().guest_count == 1
        owner.close()
        deadline = time.monotonic() + WAIT_LIMIT
        while watcher.platform_status().guest_count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.platform_status().guest_count == 0
        # the ASID is free again: a new guest of another connection can take it (after the
        # DF_FLUSH a freed ASID needs)
        with PlatformClient(server.sock) as again:
            again.df_flush()
            _, _ = _launch(again)
            assert handle != 0
    assert "Traceback" not in server.log()


# ---- the bindings alone


def _buffer(command: Command, handle: int) -> bytes:
    if command is Command.LAUNCH_UPDATE_DATA:
        return LaunchUpdateBuffer(handle, PADDR, 16).to_bytes()
    return HandleBuffer(handle).to_bytes()


def test_named_handle_covers_guest_commands_and_key_sharing_only() -> None:
    assert named_handle(Command.DECOMMISSION, _buffer(Command.DECOMMISSION, 7)) == 7
    assert named_handle(Command.LAUNCH_UPDATE_DATA, _buffer(Command.LAUNCH_UPDATE_DATA, 9)) == 9
    assert named_handle(Command.LAUNCH_START, (0).to_bytes(4, "little") + bytes(40)) is None
    assert named_handle(Command.LAUNCH_START, (5).to_bytes(4, "little") + bytes(40)) == 5
    assert named_handle(Command.PLATFORM_STATUS, (5).to_bytes(4, "little") + bytes(20)) is None
    assert named_handle(Command.DECOMMISSION, b"\1\0") is None  # too short: firmware refuses


def test_bindings_follow_create_and_decommission() -> None:
    bindings, a, b = GuestBindings(), Peer(), Peer()
    start = bytes(44)
    written = (3).to_bytes(4, "little") + bytes(40)
    bindings.record(a, Command.LAUNCH_START, Status.POLICY_FAILURE, start, written)
    assert bindings.refusal(a, Command.DECOMMISSION, _buffer(Command.DECOMMISSION, 3))
    bindings.record(a, Command.LAUNCH_START, Status.SUCCESS, start, written)
    assert bindings.refusal(a, Command.DECOMMISSION, _buffer(Command.DECOMMISSION, 3)) is None
    assert bindings.refusal(b, Command.DECOMMISSION, _buffer(Command.DECOMMISSION, 3))
    with pytest.raises(FirmwareError):
        bindings.check_access(b, 3)
    bindings.check_access(a, 3)
    bindings.record(a, Command.DECOMMISSION, Status.SUCCESS, _buffer(Command.DECOMMISSION, 3), b"")
    assert bindings.refusal(a, Command.DECOMMISSION, _buffer(Command.DECOMMISSION, 3))
    assert bindings.release(a) == []
    bindings.record(b, Command.LAUNCH_START, Status.SUCCESS, start, written)
    assert bindings.release(b) == [3]
    assert bindings.refusal(b, Command.DECOMMISSION, _buffer(Command.DECOMMISSION, 3))
