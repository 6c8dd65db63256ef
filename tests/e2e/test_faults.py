"""Issue 13's fault proof: each service killed with SIGKILL in the middle of 5 concurrent
launches (the platform, the host manager, the broker, then one hypervisor), restarted the way
it was started (:func:`~sevlaunch.orchestrate.services.start_service`, the one harness).

Each round reports the launches lost (a VM tool that hung or died instead of answering), the
domains lost (launched and booted, then missing from the host manager), the orphans left (a
hypervisor process the host manager does not list as running, a launch context the platform
holds for no running guest) and whether the next launch works; then, once every launch left
behind is past its expiry, that none is still pending at the broker. All must be 0, and yes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pytest

from sevlaunch.orchestrate import demo
from sevlaunch.orchestrate.launch import LaunchResult
from sevlaunch.orchestrate.services import Service, start_service
from tests.orchestrate.stack import RunningStack, pids_naming, running_stack, unique, wait_for

TTL = 6.0  # seconds a launch may wait for its measurement at the broker
LAUNCHES = 5
ROUND_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def env() -> Iterator[RunningStack]:
    with running_stack(broker_args=("--launch-ttl", str(TTL), "--sweep-interval", "0.2")) as s:
        yield s


@dataclass
class Report:
    victim: str
    lost: list[str] = field(default_factory=list)
    domains_lost: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    next_launch: str = ""
    pending_past_expiry: list[str] = field(default_factory=list)
    expired: int = 0

    def line(self) -> str:
        return (
            f"kill -9 {self.victim:8s}: launches lost {len(self.lost)}, domains lost "
            f"{len(self.domains_lost)}, orphans {len(self.orphans)}, failed cleanly "
            f"{len(self.failed)}, next launch {self.next_launch}, pending past expiry "
            f"{len(self.pending_past_expiry)} (expired by the sweep: {self.expired})"
        )


def _vmms(env: RunningStack) -> list[int]:
    """The guests' hypervisor processes (not the host manager's short-lived SEV probe)."""
    found = [pid for pid in pids_naming(str(env.root)) if b"sevlaunch-vmm" in _argv(pid)]
    return [pid for pid in found if b"/probe-" not in _argv(pid)]


def _argv(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _service(env: RunningStack, name: str) -> Service:
    (found,) = [s for s in env.stack.services if s.name == name]
    return found


def _kill_and_restart(env: RunningStack, victim: str) -> None:
    """SIGKILL the victim; a service comes back with its own argv and log, as an init system
    would restart it; a hypervisor does not (its domain is for the host manager to settle)."""
    if victim == "vmm":
        os.kill(_vmms(env)[0], signal.SIGKILL)
        return
    old = _service(env, victim)
    old.stop(kill=True)
    socket = {"platform": env.stack.platform_socket, "host": env.stack.host_socket}.get(
        victim, env.stack.broker_socket
    )
    argv = old.process.args
    assert isinstance(argv, list)  # the harness starts every service from an argv list
    new = start_service(victim, argv, log=old.log, ready=socket, connect=True)
    env.stack.services[env.stack.services.index(old)] = new


def _launch(env: RunningStack, name: str) -> LaunchResult:
    return env.launch(env.xml(name))


def _orphans(env: RunningStack) -> list[str]:
    """Hypervisors of no running domain, and platform launch contexts beyond the running
    guests."""
    with env.host() as host:
        domains = host.list_domains()
    running = {d.uuid for d in domains}
    found = [
        f"vmm pid {pid}" for pid in _vmms(env) if not any(u.encode() in _argv(pid) for u in running)
    ]
    contexts = env.guest_contexts()
    if contexts > len(domains):
        found.append(f"{contexts - len(domains)} platform guest context(s)")
    return found


def _pending_past_expiry(env: RunningStack, ids: list[str]) -> tuple[list[str], int]:
    """Wait until each of these launches still pending is past its expiry (and a sweep
    interval more), then name those the broker still has pending; and how many expired."""
    with env.broker_admin() as broker:
        rows = [broker.launch(i) for i in ids]
        pending = [r for r in rows if r.state == "awaiting-measurement"]
        if pending:
            time.sleep(max(0.0, max(r.expires_at for r in pending) - time.time()) + 1.0)
        rows = [broker.launch(i) for i in ids]
    late = [r.id for r in rows if r.state == "awaiting-measurement" and r.expires_at < time.time()]
    return late, sum(r.state == "expired" for r in rows)


def _round(env: RunningStack, victim: str) -> Report:
    report = Report(victim)
    names = [unique(f"fault-{victim}") for _ in range(LAUNCHES)]
    with ThreadPoolExecutor(LAUNCHES) as pool:
        futures: dict[str, Future[LaunchResult]] = {n: pool.submit(_launch, env, n) for n in names}
        wait_for(lambda: bool(_vmms(env)), 60.0, "a hypervisor of this round to start")
        _kill_and_restart(env, victim)
        done, _ = wait(futures.values(), timeout=ROUND_TIMEOUT)
        results: dict[str, LaunchResult] = {}
        for name, future in futures.items():
            if future not in done or future.exception() is not None:
                report.lost.append(f"{name}: {future.exception() if future in done else 'hung'}")
                continue
            results[name] = future.result()
    booted = [n for n, r in results.items() if r.ok]
    report.failed = [r.message for r in results.values() if not r.ok]
    with env.host() as host:
        listed = {d.name for d in host.list_domains()}
    report.domains_lost = [n for n in booted if n not in listed]
    demo.destroy_all(env.stack)
    wait_for(lambda: not _vmms(env), 30.0, "the destroyed domains' hypervisors to end")
    report.orphans = _orphans(env)
    after = _launch(env, unique(f"after-{victim}"))
    report.next_launch = "ok" if after.ok else after.message
    ids = [r.launch_id for r in results.values() if r.launch_id]
    report.pending_past_expiry, report.expired = _pending_past_expiry(env, ids)
    demo.destroy_all(env.stack)
    return report


@pytest.mark.parametrize("victim", ["platform", "host", "broker", "vmm"])
def test_kill_9_mid_launch_loses_nothing(env: RunningStack, victim: str) -> None:
    report = _round(env, victim)
    print(report.line())
    for message in report.failed:
        print(f"  {message}")
    assert report.lost == [], report
    assert report.domains_lost == [], report
    assert report.orphans == [], report
    assert report.next_launch == "ok", report
    assert report.pending_past_expiry == [], report
