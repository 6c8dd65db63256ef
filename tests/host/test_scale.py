"""Fifty SEV guests launched at once through the API, and the daemon killed (kill -9) in the
middle of their launches: after a restart every guest is either found again, still running,
or reported shut off; none is left behind unmanaged. A guest that died while the daemon was
down is reported shut off (crashed) and its SEV context is freed on the platform."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from sevlaunch.platform.client import PlatformClient
from tests.host.conftest import (
    Daemon,
    Media,
    OwnerFiles,
    Platform,
    owner_session,
    pids_naming,
    secret_packet,
    sev_domain_xml,
    wait_for,
)

N = 50
XML = {"Content-Type": "application/xml"}


def _define(daemon: Daemon, names: list[str], media: Media, owner: OwnerFiles) -> None:
    with daemon.client() as c:
        for name in names:
            xml = sev_domain_xml(name, media, owner, kernel=False, disk=False, small=True)
            c.post("/v1/domains", content=xml, headers=XML).raise_for_status()


async def _launch(c: httpx.AsyncClient, name: str, owner: OwnerFiles) -> dict[str, Any]:
    """define → start paused → measurement → secret → resume → booted, as the VM tool does."""
    (await c.post(f"/v1/domains/{name}/start", json={"paused": True})).raise_for_status()
    info = (await c.get(f"/v1/domains/{name}/launch-security")).raise_for_status().json()
    body = secret_packet(owner, info["sev-measurement"], b"luks passphrase")
    (await c.put(f"/v1/domains/{name}/launch-security", json=body)).raise_for_status()
    (await c.post(f"/v1/domains/{name}/resume")).raise_for_status()
    booted = await c.post(f"/v1/domains/{name}/wait-booted", params={"timeout": 120})
    return dict(booted.raise_for_status().json())


async def _launch_all(daemon: Daemon, names: list[str], owner: OwnerFiles) -> list[Any]:
    transport = httpx.AsyncHTTPTransport(uds=daemon.uri[5:])
    limits = httpx.Limits(max_connections=N)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://host", timeout=180, limits=limits
    ) as c:
        results = await asyncio.gather(
            *(_launch(c, name, owner) for name in names), return_exceptions=True
        )
        return list(results)


def _domains(daemon: Daemon) -> dict[str, dict[str, Any]]:
    with daemon.client() as c:
        return {d["name"]: d for d in c.get("/v1/domains", params={"all": True}).json()}


def test_fifty_concurrent_full_launches(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    names = [f"g{i:02d}" for i in range(N)]
    _define(daemon, names, media, owner)
    results = asyncio.run(_launch_all(daemon, names, owner))
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    domains = _domains(daemon)
    assert {domains[n]["state"] for n in names} == {"running"}
    assert len(pids_naming(str(daemon.state / "run"))) == N
    with daemon.client() as c:
        console = c.get("/v1/domains/g07/console").text
        steps = {s["step"] for s in c.get("/v1/domains/g42/timeline").json()}
    assert "luks-key" in console
    assert steps >= {6, 7, 8, 9, 10, 12, 13}


def test_kill9_mid_launch_then_restart_finds_every_guest(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    names = [f"k{i:02d}" for i in range(N)]
    _define(daemon, names, media, owner)

    async def launch_then_kill() -> None:
        task = asyncio.ensure_future(_launch_all(daemon, names, owner))
        started = 0
        while started < N // 3:  # a third of the guests have a process: kill mid-launch
            await asyncio.sleep(0.05)
            started = len(pids_naming(str(daemon.state / "run")))
        daemon.kill9()
        await task

    asyncio.run(launch_then_kill())
    alive_before = set(pids_naming(str(daemon.state / "run")))
    assert 0 < len(alive_before) < N
    daemon.restart()
    domains = _domains(daemon)
    active = {n for n, d in domains.items() if d["state"] in ("running", "paused")}
    live = set(pids_naming(str(daemon.state / "run")))
    # every live hypervisor belongs to a guest reported active, and vice versa
    assert len(live) == len(active)
    assert live <= alive_before
    for name, row in domains.items():
        if name not in active:
            assert row["state"] == "shut off", row
    # the guests found again are managed: finish or end each of them
    with daemon.client() as c:
        for name in sorted(active):
            if domains[name]["state"] == "paused":
                c.post(f"/v1/domains/{name}/resume").raise_for_status()
            assert c.get(f"/v1/domains/{name}").json()["state"] == "running"
            c.post(f"/v1/domains/{name}/destroy").raise_for_status()
    assert pids_naming(str(daemon.state / "run")) == []


def test_guest_killed_while_daemon_down_is_crashed_and_freed(
    platform: Platform, media: Media, start_daemon: Callable[..., Daemon], short_dir: Path
) -> None:
    daemon = start_daemon(platform=platform)
    owner = owner_session(platform, short_dir / "owner")
    _define(daemon, ["alive", "victim"], media, owner)
    with daemon.client() as c:
        c.post("/v1/domains/alive/start").raise_for_status()
        c.post("/v1/domains/victim/start", json={"paused": True}).raise_for_status()
        uuids = {d["name"]: d["uuid"] for d in c.get("/v1/domains").json()}
    run = {name: daemon.state / "run" / uid for name, uid in uuids.items()}
    pids = {name: int((run[name] / "qemu.pid").read_text()) for name in run}
    guests_before = _guest_count(platform)
    daemon.kill9()
    os.kill(pids["victim"], signal.SIGKILL)
    wait_for(lambda: not pids_naming(str(run["victim"])), 10, "the victim to die")
    # its connection to the platform closed with it: the platform freed its SEV context, as
    # KVM does when a VMM dies (sevlaunch.platform.bindings), before the host noticed
    wait_for(lambda: _guest_count(platform) == guests_before - 1, 10, "the SEV context freed")
    daemon.restart()
    domains = _domains(daemon)
    assert (domains["victim"]["state"], domains["victim"]["reason"]) == ("shut off", "crashed")
    assert domains["alive"]["state"] == "running"
    assert pids_naming(str(run["alive"])) == [pids["alive"]]  # same process, untouched
    assert _guest_count(platform) == guests_before - 1
    assert not (run["victim"] / "qmp.sock").exists()
    assert not (run["victim"] / "qemu.pid").exists()
    assert not (run["victim"] / "session.base64").exists()
    with daemon.client() as c:
        assert c.post("/v1/domains/victim/start", json={"paused": True}).json()["state"] == "paused"
        c.post("/v1/domains/alive/suspend").raise_for_status()
        c.post("/v1/domains/alive/resume").raise_for_status()


def _guest_count(platform: Platform) -> int:
    with PlatformClient(platform.socket) as client:
        return client.platform_status().guest_count
