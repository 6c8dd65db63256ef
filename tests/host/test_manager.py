"""HostManager in-process over the emulated hypervisor and platform: definitions, launch files,
capability cache, job locking, failed starts, events, and recovery by a second manager."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sevlaunch.errors import DomainXMLError, HostError
from sevlaunch.host import driver
from sevlaunch.host.manager import HostManager
from sevlaunch.protocol import NodeSevInfo
from tests.host.conftest import VMM, Media, Platform, owner_session, sev_domain_xml

T = TypeVar("T")


class CountingManager(HostManager):
    probes = 0

    async def _probe_sev(self) -> NodeSevInfo:
        self.probes += 1
        return await super()._probe_sev()


def run(state: Path, platform: Platform, body: Callable[[CountingManager], Awaitable[T]]) -> T:
    async def main() -> T:
        manager = CountingManager(state, qemu=VMM, platform=str(platform.socket))
        await manager.startup()
        try:
            return await body(manager)
        finally:
            for uuid in list(manager._runtime):
                await manager.destroy(uuid)
            await manager.close()

    return asyncio.run(main())


def test_define_assigns_a_uuid_and_redefine_keeps_it(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    async def body(m: HostManager) -> None:
        first = await m.define(sev_domain_xml("d", media, None, kernel=False, disk=False))
        again = await m.define(sev_domain_xml("d", media, None, kernel=False, disk=False))
        assert first.uuid == again.uuid
        assert f"<uuid>{first.uuid}</uuid>" in m.dumpxml("d")
        assert m.domain(first.uuid).name == "d"
        clash = m.dumpxml("d").replace("<name>d</name>", "<name>e</name>")
        with pytest.raises(HostError, match="already defined with uuid"):
            await m.define(clash)
        with pytest.raises(DomainXMLError):
            await m.define("<domain type='kvm'><name>broken</name></domain")
        m.undefine("d")
        assert m.list_domains(all_domains=True) == []

    run(short_dir / "state", platform, body)


def test_sev_start_fills_geometry_from_the_cached_probe_and_writes_private_blobs(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    owner = owner_session(platform, short_dir / "owner")

    async def body(m: CountingManager) -> None:
        info = await m.node_sev_info()
        await m.define(
            sev_domain_xml("geo", media, owner, kernel=False, disk=False, geometry=False)
        )
        row = await m.start("geo", paused=True)
        assert m.probes == 1  # start used the cache
        argv = Path(f"/proc/{row.pid}/cmdline").read_bytes().split(b"\0")
        sev = json.loads(next(a for a in argv if b'"sev-guest"' in a))
        assert (sev["id"], sev["cbitpos"], sev["reduced-phys-bits"]) == (
            "lsec0",
            info.cbitpos,
            info.reduced_phys_bits,
        )
        assert b"-S" in argv
        for blob in ("dh-cert-file", "session-file"):
            path = Path(sev[blob])
            assert path.parent == Path(row.run_dir or "")
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == owner.session.read_text().strip()
        await m.destroy("geo")
        assert not path.exists()
        await m.node_sev_info(refresh=True)
        assert m.probes == 2

    run(short_dir / "state", platform, body)


def test_one_domain_starts_once_when_asked_twice_at_the_same_time(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    async def body(m: HostManager) -> tuple[object, ...]:
        await m.define(sev_domain_xml("once", media, None, kernel=False, disk=False, small=True))
        return await asyncio.gather(
            m.start("once", paused=True), m.start("once", paused=True), return_exceptions=True
        )

    results = run(short_dir / "state", platform, body)
    errors = [r for r in results if isinstance(r, HostError)]
    assert len(errors) == 1
    assert errors[0].detail == "domain is already running"


def test_a_failed_start_is_recorded_with_the_hypervisors_words(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    xml = sev_domain_xml("bad", media, None, kernel=False, disk=False)
    xml = xml.replace(str(media.firmware), str(short_dir / "missing.fd"))

    async def body(m: HostManager) -> HostError:
        await m.define(xml)
        with pytest.raises(HostError) as caught:
            await m.start("bad")
        return caught.value

    error = run(short_dir / "state", platform, body)
    assert error.kind == "internal error"
    assert "process exited while connecting to monitor" in error.detail
    assert "missing.fd" in error.detail

    async def after(m: HostManager) -> None:
        row = m.domain("bad")
        assert (row.state, row.reason, row.pid) == ("shutoff", "failed", None)
        failed = [s for s in m.timeline("bad") if s["outcome"] == "failed"]
        assert [s["step"] for s in failed] == [8]

    run(short_dir / "state", platform, after)


def test_a_missing_stored_secret_is_secret_not_found(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    async def body(m: HostManager) -> None:
        godh = m.secret_define("<secret ephemeral='no' private='yes'/>")
        session = m.secret_define("<secret ephemeral='no' private='yes'/>")
        m.secret_set_value(godh, b"not used")
        await m.define(
            sev_domain_xml("ref", media, None, kernel=False, disk=False, secrets=(godh, session))
        )
        with pytest.raises(HostError) as caught:
            await m.start("ref", paused=True)
        assert caught.value.kind == "Secret not found"
        assert session in caught.value.detail
        assert m.domain("ref").state == "shutoff"

    run(short_dir / "state", platform, body)


def test_events_name_lifecycle_and_launch_steps(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    owner = owner_session(platform, short_dir / "owner")

    async def body(m: HostManager) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with m.events.subscribe() as queue:
            await m.define(sev_domain_xml("ev", media, owner, kernel=False, disk=False))
            await m.start("ev", paused=True)
            await m.destroy("ev")
            while not queue.empty():
                seen.append(queue.get_nowait())
        return seen

    events = run(short_dir / "state", platform, body)
    lifecycle = [(e["type"], e["detail"]) for e in events if e["event"] == "lifecycle"]
    assert lifecycle == [
        ("Defined", "Added"),
        ("Started", "Booted"),
        ("Suspended", "Paused"),
        ("Stopped", "Destroyed"),
    ]
    steps = [e["step"] for e in events if e["event"] == "launch-step"]
    assert steps == [6, 7, 8, 9]
    assert any(e["event"] == "measurement-available" for e in events)


def test_a_second_manager_finds_the_guests_of_the_first(
    short_dir: Path, platform: Platform, media: Media
) -> None:
    async def first(m: HostManager) -> int:
        await m.define(sev_domain_xml("kept", media, None, kernel=False, disk=False, small=True))
        row = await m.start("kept", paused=True)
        m._runtime.clear()  # forget it, as a killed daemon would: close() leaves it running
        assert row.pid is not None
        return row.pid

    pid = run(short_dir / "state", platform, first)
    assert driver.pid_alive(pid)

    async def second(m: HostManager) -> None:
        row = m.domain("kept")
        assert (row.state, row.pid) == ("paused", pid)
        await m.resume("kept")
        assert m.domain("kept").state == "running"

    run(short_dir / "state", platform, second)
    assert not driver.pid_alive(pid)  # run() destroyed it through the second manager
