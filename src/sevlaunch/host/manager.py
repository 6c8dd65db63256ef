"""The host manager (libvirt's role for SEV guests): domains, their lifecycle, node SEV info,
launch security info and state, secrets, events, and restart safety.

One :class:`HostManager` per host. Calls on one domain serialise on a per-domain job lock, as
libvirt's domain jobs do; different domains proceed concurrently. The pieces live beside it:
:mod:`~sevlaunch.host.probe` (capability probe and cache), :mod:`~sevlaunch.host.recovery`
(guests found again after a restart), :mod:`~sevlaunch.host.launchsec` (launch security rules),
:mod:`~sevlaunch.host.startplan` (files and argv of a start), :mod:`~sevlaunch.host.timeline`
(launch steps) and :mod:`~sevlaunch.host.runtime` (a running hypervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
import uuid as uuidlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sevlaunch.errors import DomainXMLError, HostError, SevlaunchError
from sevlaunch.host import driver, launchsec, logs, platform_port, probe, recovery
from sevlaunch.host.domxml import Domain
from sevlaunch.host.events import EventBus
from sevlaunch.host.qemu_cmdline import HostSevDefaults
from sevlaunch.host.runtime import (
    GUEST_BOOTED_EVENT,
    MEASUREMENT_EVENT,
    Runtime,
    as_dict,
    invalid,
    no_domain,
    quiet_disconnect,
    remove_domain_dirs,
    remove_run_files,
    resolve_binary,
    stopped_detail,
    sweep_orphans,
)
from sevlaunch.host.secrets import Secret
from sevlaunch.host.secretstore import SecretStore, parse_secret_uuid
from sevlaunch.host.startplan import blobs_detail, prepare_start
from sevlaunch.host.store import DomainRow, Store
from sevlaunch.host.timeline import GUEST_BOOTED, GUEST_HALTED, record_step
from sevlaunch.protocol import LaunchSecurityInfo, NodeSevInfo, Outcome, Step


class HostManager:
    def __init__(
        self, state_dir: Path, *, qemu: str = "sevlaunch-vmm", platform: str | None = None
    ) -> None:
        state_dir = state_dir.absolute()  # QEMU gets absolute blob, socket and pid paths
        self.state_dir = state_dir
        self.store = Store(state_dir)
        self.run_root = state_dir / "run"
        self.run_root.mkdir(exist_ok=True, mode=0o700)
        self.qemu = resolve_binary(qemu)
        self.platform = platform
        self.events = EventBus()
        self._locks: dict[str, asyncio.Lock] = {}
        self._runtime: dict[str, Runtime] = {}
        self._sev_cache = probe.SevInfoCache(self._probe_sev)
        self.secrets = SecretStore(self.store)

    # ---- start-up and shut-down of the manager itself

    async def startup(self) -> None:
        """Find running guests again (pid file and QMP socket); mark dead ones crashed. All at
        once: a guest killed mid-start may need seconds before its monitor answers."""
        every = self.store.domain_rows()
        sweep_orphans(self.run_root, self.state_dir / logs.LOG_ROOT, every)
        rows = [r for r in every if r.state in ("running", "paused")]
        await asyncio.gather(*(self._recover(row) for row in rows))

    async def _recover(self, row: DomainRow) -> None:
        paths = recovery.run_paths(row, self.run_root)
        pid = driver.find_hypervisor(paths, row.pid)
        if pid is not None and await self._reattach(row, pid, paths):
            return
        if pid is not None:  # alive, ours (its argv names our run dir), but no monitor
            await driver.terminate(pid)
        await self._cleanup_async(row, "crashed")

    async def _reattach(self, row: DomainRow, pid: int, paths: driver.RunPaths) -> bool:
        """Connect to a guest that outlived the manager; False when its monitor is gone."""
        found = await recovery.reconnect(pid, paths)
        if found is None:
            return False
        client, running = found
        runtime = Runtime(pid, client, paths)
        recovery.restore_progress(runtime, self.store.steps(row.uuid, row.launch))
        self._attach(row, runtime, proc=None)
        self.store.set_runtime(
            row.uuid,
            state="running" if running else "paused",
            reason=recovery.recovered_reason(row, running),
            pid=pid,
        )
        return True

    async def close(self) -> None:
        """Stop watching guests; they keep running, as they do when libvirtd stops."""
        for runtime in list(self._runtime.values()):
            for task in (runtime.watcher, runtime.events):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(Exception):
                await runtime.client.disconnect()
        self._runtime.clear()
        self.store.close()

    def _lock(self, uuid: str) -> asyncio.Lock:
        return self._locks.setdefault(uuid, asyncio.Lock())

    def _row(self, key: str) -> DomainRow:
        row = self.store.domain(key)
        if row is None:
            raise no_domain(key)
        return row

    # ---- node

    async def node_sev_info(self, *, refresh: bool = False) -> NodeSevInfo:
        """virNodeGetSEVInfo from the hypervisor's ``query-sev-capabilities``, cached as libvirt
        caches it (a binary without SEV is remembered too, until ``refresh``)."""
        return await self._sev_cache.get(refresh=refresh)

    async def _probe_sev(self) -> NodeSevInfo:
        return await probe.probe_sev(self.qemu, self.run_root, self._env(), self.platform)

    def _env(self) -> dict[str, str]:
        return {"SEVLAUNCH_SEV_DEVICE": self.platform} if self.platform else {}

    # ---- domain definitions

    def define(self, xml: str) -> DomainRow:
        domain = Domain.from_xml(xml)
        existing = self.store.domain(domain.name)
        uuid = (
            str(domain.uuid)
            if domain.uuid
            else (existing.uuid if existing else str(uuidlib.uuid4()))
        )
        if existing is not None and existing.uuid != uuid:
            raise HostError(
                "operation failed",
                f"domain '{domain.name}' already exists with uuid {existing.uuid}",
            )
        other = self.store.domain(uuid)
        if other is not None and other.name != domain.name:
            raise HostError(
                "operation failed", f"domain '{other.name}' is already defined with uuid {uuid}"
            )
        if domain.uuid is None:
            domain = dataclasses.replace(domain, uuid=uuidlib.UUID(uuid))
        logs.check_log_paths(domain, self._log_dir(domain.name))
        self.store.put_domain(uuid, domain.name, domain.to_xml())
        self.events.lifecycle(domain.name, "Defined", "Added" if existing is None else "Updated")
        return self._row(uuid)

    def undefine(self, key: str) -> None:
        row = self._row(key)
        if row.state in ("running", "paused"):
            raise invalid(f"domain '{row.name}' is {row.state}: destroy it before undefining it")
        self.store.delete_domain(row.uuid)
        remove_domain_dirs(self.run_root / row.uuid, row.run_dir, self._log_dir(row.name))
        self.events.lifecycle(row.name, "Undefined", "Removed")

    def _log_dir(self, name: str) -> Path:
        return logs.log_dir(self.state_dir, name)

    def list_domains(self, *, all_domains: bool = False) -> list[DomainRow]:
        return [
            r for r in self.store.domain_rows() if all_domains or r.state in ("running", "paused")
        ]

    def dumpxml(self, key: str) -> str:
        return self._row(key).xml

    def domain(self, key: str) -> DomainRow:
        return self._row(key)

    # ---- lifecycle

    async def start(self, key: str, *, paused: bool = False) -> DomainRow:
        row = self._row(key)
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            if row.state in ("running", "paused"):
                raise invalid("domain is already running")
            launch = row.launch + 1
            self.store.set_runtime(row.uuid, launch=launch)
            try:
                await self._start(row, launch, paused)
            except Exception as exc:
                self._step(row, launch, Step.STARTED_PAUSED, Outcome.FAILED, str(exc))
                await self._abort_start(self._row(row.uuid))
                if isinstance(exc, SevlaunchError):
                    raise
                raise driver.internal_error(f"{type(exc).__name__}: {exc}") from exc
        return self._row(row.uuid)

    async def _abort_start(self, row: DomainRow) -> None:
        """Stop a hypervisor whose start failed half-way (SIGTERM lets it tear its SEV context
        down) and forget it."""
        runtime = self._runtime.get(row.uuid)
        if runtime is not None:
            runtime.stopping = "failed"
            await driver.terminate(runtime.pid)
        self._cleanup(row, "failed", emit=False)

    async def _require_sev(self) -> None:
        """libvirt's start-time check: an SEV domain needs a binary whose probe found SEV."""
        try:
            await self.node_sev_info()
        except HostError as exc:
            raise HostError(
                "unsupported configuration",
                f"'sev' launch security is not supported with this QEMU binary ({exc.detail})",
                field="launchSecurity",
                value=self.qemu,
            ) from None

    async def _start(self, row: DomainRow, launch: int, paused: bool) -> None:
        domain = Domain.from_xml(row.xml)
        paths = driver.RunPaths(self.run_root / row.uuid)
        sev = domain.launch_security
        if sev is not None:
            await self._require_sev()
        shutil.rmtree(paths.root, ignore_errors=True)
        paths.root.mkdir(parents=True, mode=0o700)
        if sev is not None and sev.type == "sev":
            self._step(row, launch, Step.BLOBS_PASSED, Outcome.OK, blobs_detail(sev))
        binary, argv = prepare_start(
            domain,
            paths,
            self._log_dir(domain.name),
            emulator=self.qemu,
            resolve_secret=self.secrets.value,
            host_sev=self._host_sev(),
        )
        if sev is not None:
            self._step(row, launch, Step.SEV_GUEST_BUILT, Outcome.OK, f"policy {sev.policy_text}")
        began = time.time()
        self.store.set_runtime(
            row.uuid, state="paused", reason="starting up", pid=None, run_dir=str(paths.root)
        )
        proc = await driver.spawn(binary, argv, paths, self._env())
        exited = asyncio.ensure_future(proc.wait())
        try:
            client = await driver.connect(proc.pid, paths, exited)
        except HostError:
            if (
                not exited.done()
            ):  # a monitor that never came: stop the hypervisor, do not wait on it
                await driver.terminate(proc.pid)
            await exited
            raise
        runtime = Runtime(proc.pid, client, paths)
        self.store.set_runtime(
            row.uuid, state="paused", reason="starting up", pid=proc.pid, run_dir=str(paths.root)
        )
        self._attach(self._row(row.uuid), runtime, proc=proc, exited=exited)
        self._step(row, launch, Step.STARTED_PAUSED, Outcome.OK, f"pid {proc.pid}", began)
        self.events.lifecycle(row.name, "Started", "Booted")
        self.events.lifecycle(row.name, "Suspended", "Paused")
        if sev is not None:
            sev_state = as_dict(await driver.qmp_execute(client, "query-sev"))
            self.store.set_runtime(row.uuid, sev_handle=sev_state.get("handle"))
            outcome = Outcome.OK if sev_state.get("state") == "launch-secret" else Outcome.FAILED
            detail = f"SEV state {sev_state.get('state')}"
            self._step(row, launch, Step.LAUNCH_MEASURED, outcome, detail, began)
            if outcome is Outcome.OK:
                self._measured(row.name, runtime, launch)
        if not paused:
            await self._resume(self._row(row.uuid), runtime)
        else:
            self.store.set_runtime(row.uuid, reason="user")

    def _step(
        self,
        row: DomainRow,
        launch: int,
        step: Step,
        outcome: Outcome,
        detail: str = "",
        began: float | None = None,
    ) -> None:
        record_step(self.store, self.events, row, launch, step, outcome, detail, began)

    def _host_sev(self) -> HostSevDefaults | None:
        """cbitpos / reduced-phys-bits from the cached capabilities (qemuProcessUpdateSEVInfo)."""
        return probe.host_sev_defaults(self._sev_cache.info)

    def _attach(
        self,
        row: DomainRow,
        runtime: Runtime,
        *,
        proc: asyncio.subprocess.Process | None,
        exited: asyncio.Future[int] | None = None,
    ) -> None:
        self._runtime[row.uuid] = runtime
        runtime.watcher = asyncio.create_task(self._watch(row.uuid, row.name, runtime, exited))
        runtime.events = asyncio.create_task(self._pump_events(row.uuid, row.name, runtime))

    async def _watch(
        self, uuid: str, name: str, runtime: Runtime, exited: asyncio.Future[int] | None
    ) -> None:
        """Notice the hypervisor's exit, however it happens."""
        if exited is not None:
            await exited
        else:
            while driver.pid_alive(runtime.pid):
                await asyncio.sleep(0.2)
        row = self.store.domain(uuid)
        if row is None or self._runtime.get(uuid) is not runtime:
            return
        await self._cleanup_async(row, runtime.stopping or "crashed")

    async def _pump_events(self, uuid: str, name: str, runtime: Runtime) -> None:
        with contextlib.suppress(Exception):
            async for event in runtime.client.events:
                kind = str(event["event"])
                data = as_dict(event.get("data"))
                if kind == MEASUREMENT_EVENT:
                    row = self.store.domain(uuid)
                    if row is not None:
                        self._measured(name, runtime, row.launch)
                elif kind == GUEST_BOOTED_EVENT:
                    row = self.store.domain(uuid)
                    if row is not None:
                        self._boot_reported(row, data)
                    if data.get("halted"):
                        runtime.boot_failure = (
                            f"the {GUEST_HALTED}: {data.get('reason') or 'no reason given'}"
                        )
                    runtime.booted.set()
                elif kind == "SHUTDOWN" and data.get("guest"):
                    runtime.stopping = runtime.stopping or "shutdown"
                elif kind == "STOP":
                    self.store.set_runtime(uuid, state="paused", reason="user")
                elif kind == "RESUME":
                    self.store.set_runtime(uuid, state="running", reason="unpaused")
                self.events.publish("hypervisor", name, qmp_event=kind, data=data)

    def _boot_reported(self, row: DomainRow, data: Mapping[str, Any]) -> None:
        """Step 13's second record: the guest's own report of its boot, or of its halt."""
        if data.get("halted"):
            detail = f"{GUEST_HALTED}: {data.get('reason') or 'no reason given'}"
            self._step(row, row.launch, Step.RESUMED_BOOTED, Outcome.FAILED, detail)
            return
        secrets = ", ".join(str(s) for s in data.get("secrets") or ()) or "none"
        detail = f"{GUEST_BOOTED}: secrets {secrets}, disk {data.get('disk-label')}"
        self._step(row, row.launch, Step.RESUMED_BOOTED, Outcome.OK, detail)

    async def _cleanup_async(self, row: DomainRow, reason: str, *, emit: bool = True) -> None:
        """:meth:`_cleanup`, and for a guest that died without its own teardown, free its SEV
        context on the platform (DEACTIVATE, DECOMMISSION), as KVM does when QEMU dies."""
        handle = row.sev_handle
        self._cleanup(row, reason, emit=emit)
        if reason == "crashed" and handle and self.platform is not None:
            await platform_port.free_sev_context(self.platform, handle)

    def _measured(self, name: str, runtime: Runtime, launch: int) -> None:
        """Announce the measurement once per run: from the hypervisor's extension event when a
        monitor was connected in time, else from polling ``query-sev`` as libvirt would."""
        if not runtime.measured:
            runtime.measured = True
            self.events.publish("measurement-available", name, launch=launch)

    def _cleanup(self, row: DomainRow, reason: str, *, emit: bool = True) -> None:
        """Forget a stopped guest: monitor, runtime files; libvirt's "shut off (reason)"."""
        runtime = self._runtime.pop(row.uuid, None)
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

    def _running(self, row: DomainRow) -> Runtime:
        runtime = self._runtime.get(row.uuid)
        if runtime is None or row.state not in ("running", "paused"):
            raise invalid("domain is not running")
        return runtime

    async def resume(self, key: str) -> None:
        row = self._row(key)
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            if row.state == "running":
                raise invalid("domain is already running")
            await self._resume(row, runtime)

    async def _resume(self, row: DomainRow, runtime: Runtime) -> None:
        began = time.time()
        try:
            await driver.qmp_execute(runtime.client, "cont")
        except HostError as exc:
            self._step(row, row.launch, Step.RESUMED_BOOTED, Outcome.FAILED, str(exc), began)
            raise
        self.store.set_runtime(row.uuid, state="running", reason="unpaused")
        detail = "LAUNCH_FINISH, vCPUs running"
        self._step(row, row.launch, Step.RESUMED_BOOTED, Outcome.OK, detail, began)
        self.events.lifecycle(row.name, "Resumed", "Unpaused")

    async def suspend(self, key: str) -> None:
        row = self._row(key)
        async with self._lock(row.uuid):
            runtime = self._running(self._row(row.uuid))
            await driver.qmp_execute(runtime.client, "stop")
            self.store.set_runtime(row.uuid, state="paused", reason="user")
            self.events.lifecycle(row.name, "Suspended", "Paused")

    async def shutdown(self, key: str) -> None:
        row = self._row(key)
        async with self._lock(row.uuid):
            runtime = self._running(self._row(row.uuid))
            runtime.stopping = "shutdown"
            await driver.qmp_execute(runtime.client, "system_powerdown")

    async def destroy(self, key: str) -> None:
        row = self._row(key)
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            runtime.stopping = "destroyed"
            await driver.terminate(runtime.pid)
            if runtime.watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(runtime.watcher), 5.0)
            if row.uuid in self._runtime:
                self._cleanup(row, "destroyed")

    async def wait_booted(self, key: str, timeout: float) -> None:
        """Until the guest reports its boot; HostError if it halted or the domain stopped."""
        runtime = self._running(self._row(key))
        await asyncio.wait_for(runtime.booted.wait(), timeout)
        if runtime.boot_failure is not None:
            raise HostError("operation failed", runtime.boot_failure)

    # ---- launch security

    async def launch_security_info(self, key: str) -> LaunchSecurityInfo | None:
        """virDomainGetLaunchSecurityInfo: measurement, then query-sev, as libvirt orders them;
        None (no parameters) for a domain without launch security."""
        row = self._row(key)
        if Domain.from_xml(row.xml).launch_security is None:
            return None
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            measure = await driver.qmp_execute(runtime.client, "query-sev-launch-measure")
            sev = await driver.qmp_execute(runtime.client, "query-sev")
        info = launchsec.security_info(measure, sev)
        self._step(row, row.launch, Step.MEASUREMENT_READ, Outcome.OK, "")
        return info

    async def set_launch_security_state(self, key: str, params: Mapping[str, Any]) -> None:
        """virDomainSetLaunchSecurityState: only SEV domains, only while paused."""
        launchsec.check_state_params(params)
        row = self._row(key)
        launchsec.check_secret_request(Domain.from_xml(row.xml).launch_security, params)
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            if row.state != "paused":
                raise invalid("domain must be in a paused state")
            arguments = launchsec.inject_arguments(params)
            began = time.time()
            try:
                await driver.qmp_execute(runtime.client, "sev-inject-launch-secret", arguments)
            except HostError as exc:
                self._step(row, row.launch, Step.SECRET_INJECTED, Outcome.FAILED, str(exc), began)
                raise
            self._step(row, row.launch, Step.SECRET_INJECTED, Outcome.OK, "LAUNCH_SECRET", began)

    # ---- console and timeline

    def console(self, key: str) -> str:
        """The console log, read only from the domain's own log directory (never started: "")."""
        row = self._row(key)
        path = logs.console_path(Domain.from_xml(row.xml), self._log_dir(row.name))
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def timeline(self, key: str, launch: int | None = None) -> list[dict[str, Any]]:
        row = self._row(key)
        return [s.as_dict() for s in self.store.steps(row.uuid, launch)]

    # ---- secrets (virSecret*, with libvirt's rules: sevlaunch.host.secretstore)

    def secret_define(self, xml: str) -> str:
        return str(self.secrets.define(Secret.from_xml(xml)).uuid)

    def secret_set_value(self, uid: str, value: bytes) -> None:
        self.secrets.set_value(parse_secret_uuid(uid), value)

    def secret_list(self) -> list[dict[str, Any]]:
        return [
            {"uuid": str(s.uuid), "xml": s.to_xml(), "has-value": self.secrets.has_value(s.uuid)}
            for s in self.secrets.list()
            if s.uuid is not None
        ]

    def secret_undefine(self, uid: str) -> None:
        self.secrets.undefine(parse_secret_uuid(uid))


__all__ = ["DomainXMLError", "HostManager"]
