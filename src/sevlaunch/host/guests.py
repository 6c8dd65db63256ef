"""The running hypervisors the host manager watches: their runtimes, the per-domain job locks,
the QMP events that move a domain's state and launch steps, and what is left when one stops.

libvirt's domain jobs serialise calls on one domain; different domains proceed at once. A
guest's power-off ends its hypervisor here, as libvirt does for ``on_poweroff=destroy``: with
``-no-shutdown`` the hypervisor only stops its vCPUs and waits for the manager to end it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from sevlaunch.host import driver, platform_port
from sevlaunch.host.domxml import Domain
from sevlaunch.host.events import EventBus
from sevlaunch.host.runtime import (
    GUEST_BOOTED_EVENT,
    MEASUREMENT_EVENT,
    Runtime,
    as_dict,
    invalid,
    no_domain,
    quiet_disconnect,
    remove_run_files,
    stopped_detail,
)
from sevlaunch.host.steps import host_steps
from sevlaunch.host.store import DomainRow, Store
from sevlaunch.host.timeline import GUEST_BOOTED, GUEST_HALTED, record_step
from sevlaunch.protocol import Outcome, SnpStep, Step

log = logging.getLogger("sevlaunch.host")


class Guests:
    """The runtimes by domain UUID, their locks, and everything their events change."""

    def __init__(self, store: Store, events: EventBus, platform: str | None) -> None:
        self.store = store
        self.events = events
        self.platform = platform
        self.runtime: dict[str, Runtime] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, uuid: str) -> asyncio.Lock:
        return self._locks.setdefault(uuid, asyncio.Lock())

    def row(self, key: str) -> DomainRow:
        row = self.store.domain(key)
        if row is None:
            raise no_domain(key)
        return row

    def running(self, row: DomainRow) -> Runtime:
        runtime = self.runtime.get(row.uuid)
        if runtime is None or row.state not in ("running", "paused"):
            raise invalid("domain is not running")
        return runtime

    def step(
        self,
        row: DomainRow,
        launch: int,
        step: Step | SnpStep,
        outcome: Outcome,
        detail: str = "",
        began: float | None = None,
    ) -> None:
        record_step(self.store, self.events, row, launch, step, outcome, detail, began)

    # ---- watching

    def attach(self, row: DomainRow, runtime: Runtime, exited: asyncio.Future[int] | None) -> None:
        self.runtime[row.uuid] = runtime
        runtime.watcher = asyncio.create_task(self._watch(row.uuid, runtime, exited))
        runtime.events = asyncio.create_task(self._pump_events(row.uuid, row.name, runtime))

    async def _watch(self, uuid: str, runtime: Runtime, exited: asyncio.Future[int] | None) -> None:
        """Notice the hypervisor's exit, however it happens."""
        if exited is not None:
            await exited
        else:
            while driver.pid_alive(runtime.pid):
                await asyncio.sleep(0.2)
        row = self.store.domain(uuid)
        if row is None or self.runtime.get(uuid) is not runtime:
            return
        await self.cleanup_async(row, runtime.stopping or "crashed")

    async def _pump_events(self, uuid: str, name: str, runtime: Runtime) -> None:
        """Every QMP event, one at a time; one that cannot be handled is logged, and the next
        is read, so a bug costs one event and not the domain's event handling."""
        async for event in runtime.client.events:
            kind = str(event["event"])
            data = as_dict(event.get("data"))
            try:
                self._on_event(uuid, name, runtime, kind, data)
            except Exception:
                log.exception("domain %s: QMP event %s was not handled", name, kind)
            self.events.publish("hypervisor", name, qmp_event=kind, data=data)

    def _on_event(
        self, uuid: str, name: str, runtime: Runtime, kind: str, data: Mapping[str, Any]
    ) -> None:
        row = self.store.domain(uuid)
        if row is None:
            return
        if kind == MEASUREMENT_EVENT:
            self.measured(name, runtime, row.launch)
        elif kind == GUEST_BOOTED_EVENT:
            self._boot_reported(row, data)
            if data.get("halted"):
                runtime.boot_failure = (
                    f"the {GUEST_HALTED}: {data.get('reason') or 'no reason given'}"
                )
            runtime.booted.set()
        elif kind == "SHUTDOWN" and data.get("guest"):
            runtime.stopping = runtime.stopping or "shutdown"
            runtime.terminator = asyncio.create_task(driver.terminate(runtime.pid))
        elif kind == "STOP" and runtime.stopping is None:
            self.store.set_runtime(uuid, state="paused", reason="user")
        elif kind == "RESUME":
            self.store.set_runtime(uuid, state="running", reason="unpaused")

    def _boot_reported(self, row: DomainRow, data: Mapping[str, Any]) -> None:
        """Step 13's second record (SNP: step 12): the guest's own report of its boot, or of
        its halt."""
        step = host_steps(Domain.from_xml(row.xml)).booted
        if data.get("halted"):
            detail = f"{GUEST_HALTED}: {data.get('reason') or 'no reason given'}"
            self.step(row, row.launch, step, Outcome.FAILED, detail)
            return
        secrets = ", ".join(str(s) for s in data.get("secrets") or ()) or "none"
        detail = f"{GUEST_BOOTED}: secrets {secrets}, disk {data.get('disk-label')}"
        self.step(row, row.launch, step, Outcome.OK, detail)

    def measured(self, name: str, runtime: Runtime, launch: int) -> None:
        """Announce the measurement once per run: from the hypervisor's extension event when a
        monitor was connected in time, else from polling ``query-sev`` as libvirt would."""
        if not runtime.measured:
            runtime.measured = True
            self.events.publish("measurement-available", name, launch=launch)

    # ---- stopping

    async def cleanup_async(self, row: DomainRow, reason: str, *, emit: bool = True) -> None:
        """:meth:`cleanup`, and for a guest that died without its own teardown, free its SEV
        context on the platform (DEACTIVATE, DECOMMISSION), as KVM does when QEMU dies."""
        handle = row.sev_handle
        self.cleanup(row, reason, emit=emit)
        if reason == "crashed" and handle and self.platform is not None:
            await platform_port.free_sev_context(self.platform, handle)

    def cleanup(self, row: DomainRow, reason: str, *, emit: bool = True) -> None:
        """Forget a stopped guest: monitor, runtime files; libvirt's "shut off (reason)"."""
        runtime = self.runtime.pop(row.uuid, None)
        if runtime is not None:
            if not runtime.booted.is_set():  # wake boot waiters: this run will never boot
                runtime.boot_failure = f"the domain stopped ({reason}) before the guest booted"
                runtime.booted.set()
            for task in (runtime.events, runtime.watcher):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            asyncio.get_running_loop().create_task(quiet_disconnect(runtime.client))
        self.store.set_runtime(row.uuid, state="shutoff", reason=reason, pid=None, sev_handle=None)
        if row.run_dir:
            remove_run_files(row.run_dir)
        if emit:
            self.events.lifecycle(row.name, "Stopped", stopped_detail(reason))

    async def close(self) -> None:
        """Stop watching; the guests keep running, as they do when libvirtd stops."""
        for runtime in list(self.runtime.values()):
            for task in (runtime.watcher, runtime.events):
                if task is not None:
                    task.cancel()
            await quiet_disconnect(runtime.client)
        self.runtime.clear()
