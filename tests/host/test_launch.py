"""A start and its resumes through the host manager on the emulated platform: step 13 is the
first resume of a launch only (a resume after a suspend is just a resume), step 10 is recorded
at the first read of the measurement, and a guest's power-off ends its hypervisor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sevlaunch.host import driver
from sevlaunch.host.manager import HostManager
from sevlaunch.protocol import LaunchSecurityInfo, Step
from tests.host.conftest import Media, Platform, owner_session, sev_domain_xml
from tests.host.test_manager import run


def steps(m: HostManager, name: str) -> list[tuple[int, str, str]]:
    return [(s["step"], s["outcome"], s["detail"]) for s in m.timeline(name)]


def test_the_first_resume_is_step_13_and_a_resume_after_suspend_is_not(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    owner = owner_session(platform, short_dir / "owner")

    async def body(m: HostManager) -> list[dict[str, Any]]:
        await m.define(sev_domain_xml("vm", media, owner, kernel=False, disk=False, small=True))
        await m.start("vm", paused=True)
        async with m.events.subscribe() as queue:
            await m.resume("vm")
            await m.suspend("vm")
            await m.resume("vm")
            events = [queue.get_nowait() for _ in range(queue.qsize())]
        finish = [s for s in steps(m, "vm") if s[2] == "LAUNCH_FINISH, vCPUs running"]
        assert finish == [(int(Step.RESUMED_BOOTED), "ok", "LAUNCH_FINISH, vCPUs running")]
        assert m.domain("vm").state == "running"
        return events

    events = run(short_dir / "state", platform, body)
    lifecycle = [(e["type"], e["detail"]) for e in events if e["event"] == "lifecycle"]
    assert lifecycle == [("Resumed", "Unpaused"), ("Suspended", "Paused"), ("Resumed", "Unpaused")]
    resumes = [
        e for e in events if e["event"] == "launch-step" and e["detail"].startswith("LAUNCH")
    ]
    assert len(resumes) == 1  # the guest's own boot report is step 13's other record


def test_reading_the_measurement_records_step_10_once_per_launch(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    owner = owner_session(platform, short_dir / "owner")

    async def body(m: HostManager) -> None:
        await m.define(sev_domain_xml("m", media, owner, kernel=False, disk=False, small=True))
        await m.start("m", paused=True)
        infos = [await m.launch_security_info("m") for _ in range(3)]
        assert len({i.measurement for i in infos if isinstance(i, LaunchSecurityInfo)}) == 1
        m._runtime.clear()  # a restarted manager finds the guest and its progress again

    run(short_dir / "state", platform, body)

    async def again(m: HostManager) -> None:
        await m.launch_security_info("m")
        assert [s[0] for s in steps(m, "m")].count(int(Step.MEASUREMENT_READ)) == 1

    run(short_dir / "state", platform, again)


async def _stopped(queue: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    while (event := await queue.get())["event"] != "lifecycle" or event["type"] != "Stopped":
        pass
    return event


def test_a_guest_power_off_ends_its_hypervisor(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    """The hypervisor runs with -no-shutdown: the guest's power-off only stops it, and the
    manager ends it, as libvirt does for on_poweroff=destroy."""

    async def body(m: HostManager) -> int:
        await m.define(sev_domain_xml("off", media, None, kernel=False, disk=False, small=True))
        row = await m.start("off")
        assert row.pid is not None
        await m.wait_booted("off", 60)
        async with m.events.subscribe() as queue:
            await m.shutdown("off")
            # the manager's own record of the stop, not the process's exit: a manager closed
            # between the two (the hypervisor a zombie, its watcher not yet run) leaves the
            # domain for the next one to find dead, without the reason
            stopped = await asyncio.wait_for(_stopped(queue), 30)
        assert stopped["detail"] == "Shutdown"
        assert await driver.wait_gone(row.pid, 30)
        return row.pid

    pid = run(short_dir / "state", platform, body)
    assert not driver.pid_alive(pid)

    async def after(m: HostManager) -> None:
        row = m.domain("off")
        assert (row.state, row.reason) == ("shutoff", "shutdown")

    run(short_dir / "state", platform, after)
