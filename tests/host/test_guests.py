"""The running hypervisors' bookkeeping, with a fake monitor (an event stream) and a real child
process: events move the domain's state, a handler's bug costs one event and is logged, a
guest's power-off ends its process, cleanup forgets the run."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import HostError
from sevlaunch.host import driver
from sevlaunch.host.events import EventBus
from sevlaunch.host.guests import Guests
from sevlaunch.host.runtime import GUEST_BOOTED_EVENT, MEASUREMENT_EVENT, Runtime
from sevlaunch.host.store import Store

UUID = "5a1b2c3d-0000-4000-8000-000000000001"


class FakeMonitor:
    """What Guests reads of a qemu.qmp client: an event stream, and a disconnect."""

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        self._events = list(events)
        self.disconnected = False

    @property
    def events(self) -> AsyncIterator[dict[str, Any]]:
        async def stream() -> AsyncIterator[dict[str, Any]]:
            for event in self._events:
                yield event
            await asyncio.Event().wait()  # a live monitor: nothing more, until cancelled

        return stream()

    async def disconnect(self) -> None:
        self.disconnected = True


@pytest.fixture
def guests(tmp_path: Path) -> Guests:
    store = Store(tmp_path / "state")
    store.put_domain(UUID, "g", "<domain/>")
    store.set_runtime(UUID, state="paused", reason="user", launch=1)
    return Guests(store, EventBus(), None)


def child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


async def pump(guests: Guests, events: list[dict[str, Any]], pid: int) -> Runtime:
    runtime = Runtime(pid, FakeMonitor(events), driver.RunPaths(Path("/nonexistent")))  # type: ignore[arg-type]
    guests.attach(guests.row(UUID), runtime, None)
    for _ in range(50):
        await asyncio.sleep(0.01)
    return runtime


def test_events_move_the_state_and_a_bad_one_is_logged(
    guests: Guests, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict[str, Any]] = [
        {"event": MEASUREMENT_EVENT, "data": {}},
        {"event": MEASUREMENT_EVENT, "data": {}},
        {"event": GUEST_BOOTED_EVENT, "data": {"halted": False, "secrets": 5}},  # not a list
        {"event": "RESUME"},
    ]
    proc = child()

    async def body() -> list[dict[str, Any]]:
        async with guests.events.subscribe() as queue:
            runtime = await pump(guests, events, proc.pid)
            seen = [queue.get_nowait() for _ in range(queue.qsize())]
            guests.cleanup(guests.row(UUID), "destroyed")
            assert runtime.measured
            return seen

    with caplog.at_level(logging.ERROR, "sevlaunch.host"):
        seen = asyncio.run(body())
    proc.kill()
    proc.wait()
    assert [e["event"] for e in seen].count("measurement-available") == 1
    assert [e.get("qmp_event") for e in seen if e["event"] == "hypervisor"] == [
        MEASUREMENT_EVENT, MEASUREMENT_EVENT, GUEST_BOOTED_EVENT, "RESUME",
    ]  # fmt: skip
    assert "QMP event SEVLAUNCH_GUEST_BOOTED was not handled" in caplog.text
    row = guests.row(UUID)
    assert (row.state, row.reason) == ("shutoff", "destroyed")


def test_a_guest_power_off_ends_the_process(guests: Guests) -> None:
    proc = child()

    async def body() -> Runtime:
        runtime = await pump(guests, [{"event": "SHUTDOWN", "data": {"guest": True}}], proc.pid)
        assert runtime.terminator is not None
        await runtime.terminator
        return runtime

    runtime = asyncio.run(body())
    assert proc.wait(10) != 0
    assert runtime.stopping == "shutdown"


def test_a_stop_after_a_shutdown_is_not_a_pause(guests: Guests) -> None:
    """-no-shutdown follows SHUTDOWN with STOP: the domain is stopping, not paused by a user."""
    runtime = Runtime(0, FakeMonitor([]), driver.RunPaths(Path("/nonexistent")))  # type: ignore[arg-type]
    guests.store.set_runtime(UUID, state="running", reason="unpaused")
    runtime.stopping = "shutdown"
    guests._on_event(UUID, "g", runtime, "STOP", {})
    assert guests.row(UUID).state == "running"
    runtime.stopping = None
    guests._on_event(UUID, "g", runtime, "STOP", {})
    assert (guests.row(UUID).state, guests.row(UUID).reason) == ("paused", "user")


def test_unknown_and_stopped_domains_are_libvirts_errors(guests: Guests) -> None:
    with pytest.raises(HostError) as caught:
        guests.row("x")
    assert str(caught.value) == "Domain not found: no domain with matching name or uuid 'x'"
    guests.store.set_runtime(UUID, state="shutoff")
    with pytest.raises(HostError) as caught:
        guests.running(guests.row(UUID))
    assert str(caught.value) == "Requested operation is not valid: domain is not running"
    assert guests.lock(UUID) is guests.lock(UUID)
