"""Starting a domain, libvirt's qemuProcessStart for an SEV guest: the launch steps the host
takes (6 the blobs, 7 the sev-guest object, 8 the hypervisor started paused, 9 the firmware
measured) and step 13's first half, the resume that runs LAUNCH_FINISH.

A start that fails half-way stops the hypervisor (SIGTERM lets it tear its SEV context down)
and is recorded as failed at step 8, with the hypervisor's own words.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sevlaunch.errors import HostError, SevlaunchError
from sevlaunch.host import driver
from sevlaunch.host.domxml import Domain
from sevlaunch.host.guests import Guests
from sevlaunch.host.qemu import HostSevDefaults, SecretResolver
from sevlaunch.host.runtime import Runtime, as_dict, invalid
from sevlaunch.host.startplan import blobs_detail, prepare_start
from sevlaunch.host.steps import host_steps
from sevlaunch.host.store import DomainRow
from sevlaunch.protocol import Outcome, Step


@dataclass(frozen=True)
class Hypervisor:
    """What a start needs from the manager: the binary, its environment, the run and log
    directories, the secrets and the host's SEV geometry."""

    binary: str
    env: dict[str, str]
    run_root: Path
    log_dir: Callable[[str], Path]
    resolve_secret: SecretResolver
    host_sev: Callable[[], HostSevDefaults | None]


async def start(guests: Guests, hv: Hypervisor, key: str, *, paused: bool) -> DomainRow:
    """virDomainCreateWithFlags; the caller has checked SEV support for an SEV domain."""
    row = guests.row(key)
    async with guests.lock(row.uuid):
        row = guests.row(row.uuid)
        if row.state in ("running", "paused"):
            raise invalid("domain is already running")
        launch = row.launch + 1
        guests.store.set_runtime(row.uuid, launch=launch)
        try:
            await _start(guests, hv, row, launch, paused)
        except Exception as exc:
            started = host_steps(Domain.from_xml(row.xml)).started
            guests.step(row, launch, started, Outcome.FAILED, str(exc))
            await _abort(guests, guests.row(row.uuid))
            if isinstance(exc, SevlaunchError):
                raise
            raise driver.internal_error(f"{type(exc).__name__}: {exc}") from exc
    return guests.row(row.uuid)


async def _abort(guests: Guests, row: DomainRow) -> None:
    runtime = guests.runtime.get(row.uuid)
    if runtime is not None:
        runtime.stopping = "failed"
        await driver.terminate(runtime.pid)
    guests.cleanup(row, "failed", emit=False)


async def _start(guests: Guests, hv: Hypervisor, row: DomainRow, launch: int, paused: bool) -> None:
    domain = Domain.from_xml(row.xml)
    paths = driver.RunPaths(hv.run_root / row.uuid)
    sev = domain.launch_security
    vocabulary = host_steps(domain)
    shutil.rmtree(paths.root, ignore_errors=True)
    paths.root.mkdir(parents=True, mode=0o700)
    began = time.time()
    if sev is not None and sev.type == "sev":
        guests.step(row, launch, Step.BLOBS_PASSED, Outcome.OK, blobs_detail(sev), began)
    began = time.time()
    binary, argv = prepare_start(
        domain,
        paths,
        hv.log_dir(domain.name),
        emulator=hv.binary,
        resolve_secret=hv.resolve_secret,
        host_sev=hv.host_sev(),
    )
    if sev is not None:
        detail = f"policy {sev.policy_text or 'default (QEMU 0x00030000)'}"
        guests.step(row, launch, vocabulary.built, Outcome.OK, detail, began)
    began = time.time()
    runtime = await _spawn(guests, hv, row, binary, argv, paths)
    guests.step(row, launch, vocabulary.started, Outcome.OK, f"pid {runtime.pid}", began)
    guests.events.lifecycle(row.name, "Started", "Booted")
    guests.events.lifecycle(row.name, "Suspended", "Paused")
    if sev is not None and vocabulary.snp:
        began = time.time()
        snp_state = as_dict(await driver.qmp_execute(runtime.client, "query-sev"))
        ok = snp_state.get("state") == "launch-update"
        outcome = Outcome.OK if ok else Outcome.FAILED
        detail = f"SNP state {snp_state.get('state')}"
        guests.step(row, launch, vocabulary.launched, outcome, detail, began)
    elif sev is not None:
        # step 9 begins where step 8 ended: the firmware's measurement, confirmed by query-sev
        began = time.time()
        sev_state = as_dict(await driver.qmp_execute(runtime.client, "query-sev"))
        guests.store.set_runtime(row.uuid, sev_handle=sev_state.get("handle"))
        outcome = Outcome.OK if sev_state.get("state") == "launch-secret" else Outcome.FAILED
        detail = f"SEV state {sev_state.get('state')}"
        guests.step(row, launch, Step.LAUNCH_MEASURED, outcome, detail, began)
        if outcome is Outcome.OK:
            guests.measured(row.name, runtime, launch)
    if not paused:
        await resume_run(guests, guests.row(row.uuid), runtime)
    else:
        guests.store.set_runtime(row.uuid, reason="user")


async def _spawn(
    guests: Guests,
    hv: Hypervisor,
    row: DomainRow,
    binary: str,
    argv: list[str],
    paths: driver.RunPaths,
) -> Runtime:
    """Start the hypervisor and connect to its monitor; one whose monitor never comes is
    stopped, not waited on."""
    guests.store.set_runtime(
        row.uuid, state="paused", reason="starting up", pid=None, run_dir=str(paths.root)
    )
    proc = await driver.spawn(binary, argv, paths, hv.env)
    exited = asyncio.ensure_future(proc.wait())
    try:
        client = await driver.connect(proc.pid, paths, exited)
    except HostError:
        if not exited.done():
            await driver.terminate(proc.pid)
        await exited
        raise
    runtime = Runtime(proc.pid, client, paths)
    guests.store.set_runtime(
        row.uuid, state="paused", reason="starting up", pid=proc.pid, run_dir=str(paths.root)
    )
    guests.attach(guests.row(row.uuid), runtime, exited)
    return runtime


async def resume_run(guests: Guests, row: DomainRow, runtime: Runtime) -> None:
    """QMP ``cont``; the first of a run is step 13 (LAUNCH_FINISH; SNP's step 7, where the
    pages are measured too), a resume after a suspend is only a resume."""
    began = time.time()
    first = not runtime.resumed
    vocabulary = host_steps(Domain.from_xml(row.xml))
    try:
        await driver.qmp_execute(runtime.client, "cont")
    except HostError as exc:
        if first:
            guests.step(row, row.launch, vocabulary.resumed, Outcome.FAILED, str(exc), began)
        raise
    runtime.resumed = True
    guests.store.set_runtime(row.uuid, state="running", reason="unpaused")
    if first:
        detail = "LAUNCH_FINISH, vCPUs running"
        if vocabulary.snp:
            detail = "SNP_LAUNCH_UPDATE of every page, VMSAs, SNP_LAUNCH_FINISH; vCPUs running"
        guests.step(row, row.launch, vocabulary.resumed, Outcome.OK, detail, began)
    guests.events.lifecycle(row.name, "Resumed", "Unpaused")
