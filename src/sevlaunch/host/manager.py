"""The host manager (libvirt's role for SEV guests): domains, their lifecycle, node SEV info,
launch security info and state, secrets, events, and restart safety.

One :class:`HostManager` per host. Calls on one domain serialise on a per-domain job lock, as
libvirt's domain jobs do; different domains proceed concurrently.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import os
import shutil
import sys
import time
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from sevlaunch.errors import DomainXMLError, HostError, SevlaunchError
from sevlaunch.host import driver
from sevlaunch.host.domxml import Domain
from sevlaunch.host.events import EventBus
from sevlaunch.host.qemu_cmdline import HostSevDefaults, LaunchPaths, build_launch_plan
from sevlaunch.host.store import DomainRow, Store

MEASUREMENT_EVENT = "SEV_LAUNCH_MEASUREMENT_AVAILABLE"
GUEST_BOOTED_EVENT = "SEVLAUNCH_GUEST_BOOTED"
SHUTDOWN_TIMEOUT = 30.0
RECONNECT_TIMEOUT = 30.0

PARTY_HOST = "host"
PARTY_HYPERVISOR = "hypervisor"
PARTY_FIRMWARE = "firmware"
PARTY_GUEST = "guest"


def _invalid(detail: str) -> HostError:
    return HostError("Requested operation is not valid", detail)


def _no_domain(key: str) -> HostError:
    return HostError("Domain not found", f"no domain with matching name or uuid '{key}'")


@dataclass
class Runtime:
    """A running hypervisor: its pid, QMP client and the task watching it."""

    pid: int
    client: QMPClient
    paths: driver.RunPaths
    watcher: asyncio.Task[None] | None = None
    events: asyncio.Task[None] | None = None
    stopping: str | None = None  # "destroyed" / "shutdown" when we asked for it
    booted: asyncio.Event = field(default_factory=asyncio.Event)
    measured: bool = False  # "measurement-available" published for this run


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
        self._sev_info: dict[str, Any] | None = None
        self._sev_error: HostError | None = None
        self._sev_info_lock = asyncio.Lock()

    # ---- start-up and shut-down of the manager itself

    async def startup(self) -> None:
        """Find running guests again (pid file and QMP socket); mark dead ones crashed. All at
        once: a guest killed mid-start may need seconds before its monitor answers."""
        rows = [r for r in self.store.domain_rows() if r.state in ("running", "paused")]
        await asyncio.gather(*(self._recover(row) for row in rows))

    async def _recover(self, row: DomainRow) -> None:
        paths = driver.RunPaths(Path(row.run_dir or self.run_root / row.uuid))
        pid = driver.find_hypervisor(paths, row.pid)
        if pid is not None and await self._reattach(row, pid, paths):
            return
        if pid is not None:  # alive, ours (its argv names our run dir), but no monitor
            await driver.terminate(pid)
        await self._cleanup_async(row, "crashed")

    async def _reattach(self, row: DomainRow, pid: int, paths: driver.RunPaths) -> bool:
        """Connect to a guest that outlived the manager; False when its monitor is gone."""
        try:
            client = await driver.connect(pid, paths, timeout=RECONNECT_TIMEOUT)
            status = await driver.qmp_execute(client, "query-status")
        except HostError:
            return False
        runtime = Runtime(pid, client, paths)
        steps = self.store.steps(row.uuid, row.launch)
        if any(s.step == 13 and s.party == PARTY_GUEST for s in steps):
            runtime.booted.set()
        runtime.measured = any(s.step == 9 and s.outcome == "ok" for s in steps)  # no repeat
        self._attach(row, runtime, proc=None)
        running = bool(as_dict(status).get("running"))
        reason = row.reason if row.state == "paused" and not running else "unpaused"
        self.store.set_runtime(
            row.uuid, state="running" if running else "paused", reason=reason, pid=pid
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
            raise _no_domain(key)
        return row

    # ---- node

    async def node_sev_info(self, *, refresh: bool = False) -> dict[str, Any]:
        """virNodeGetSEVInfo from the hypervisor's ``query-sev-capabilities``, cached as libvirt
        caches it (a binary without SEV is remembered too, until ``refresh``)."""
        async with self._sev_info_lock:
            if (self._sev_info is None and self._sev_error is None) or refresh:
                try:
                    self._sev_info, self._sev_error = await self._probe_sev(), None
                except HostError as exc:
                    self._sev_info, self._sev_error = None, exc
            if self._sev_error is not None:
                raise HostError(
                    self._sev_error.kind, self._sev_error.detail, field=self._sev_error.field
                )
            assert self._sev_info is not None
            return dict(self._sev_info)

    async def _probe_sev(self) -> dict[str, Any]:
        paths = driver.RunPaths(self.run_root / f"probe-{uuidlib.uuid4().hex[:8]}")
        argv = ["-S", "-no-user-config", "-nodefaults", "-display", "none", "-machine", "none"]
        argv += ["-accel", "kvm", "-accel", "tcg"]  # KVM when the host has it, as libvirt probes
        argv += ["-qmp", f"unix:{paths.qmp},server=on,wait=off"]
        proc = await driver.spawn(self.qemu, argv, paths, self._env())
        exited = asyncio.ensure_future(proc.wait())
        try:
            client = await driver.connect(proc.pid, paths, exited)
            try:
                caps = as_dict(await client.execute("query-sev-capabilities"))
            except Exception as exc:
                raise HostError(
                    "Operation not supported",
                    f"QEMU does not support SEV guest: {self.qemu}: query-sev-capabilities: {exc}",
                ) from None
            finally:
                with contextlib.suppress(Exception):
                    await client.execute("quit")
                await _quiet_disconnect(client)
        finally:
            if not exited.done():
                driver.kill(proc.pid, 9)
            await exited
            shutil.rmtree(paths.root, ignore_errors=True)
        info = {
            "pdh": caps["pdh"],
            "cert-chain": caps["cert-chain"],
            "cbitpos": caps["cbitpos"],
            "reduced-phys-bits": caps["reduced-phys-bits"],
        }
        if caps.get("cpu0-id"):
            info["cpu0-id"] = caps["cpu0-id"]
        info.update(self._asid_counts())
        return info

    def _asid_counts(self) -> dict[str, int]:
        """max-guests / max-es-guests: the platform's ASID split (libvirt reads CPUID)."""
        if self.platform is None:
            return {}
        try:
            from sevlaunch.platform.client import PlatformClient

            with PlatformClient(self.platform) as client:
                profile = client.profile()
            return {
                "max-guests": profile.max_guests,
                "max-es-guests": profile.max_es_guests,
            }
        except Exception:
            return {}

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
            domain = Domain.from_xml(xml.replace("</name>", f"</name>\n  <uuid>{uuid}</uuid>", 1))
        self.store.put_domain(uuid, domain.name, domain.to_xml())
        self.events.lifecycle(domain.name, "Defined", "Added" if existing is None else "Updated")
        return self._row(uuid)

    def undefine(self, key: str) -> None:
        row = self._row(key)
        if row.state in ("running", "paused"):
            raise _invalid(f"domain '{row.name}' is {row.state}: destroy it before undefining it")
        self.store.delete_domain(row.uuid)
        self.events.lifecycle(row.name, "Undefined", "Removed")

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
                raise _invalid("domain is already running")
            launch = row.launch + 1
            self.store.set_runtime(row.uuid, launch=launch)
            try:
                await self._start(row, launch, paused)
            except Exception as exc:
                self.store.add_step(
                    row.uuid, launch, 8, "hypervisor started paused", PARTY_HOST, "failed", str(exc)
                )
                self.events.publish(
                    "launch-step",
                    row.name,
                    step=8,
                    name="hypervisor start",
                    outcome="failed",
                    detail=str(exc),
                )
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
            detail = "dhCert and session " + (
                "from stored secrets" if sev.dh_cert_secret or sev.session_secret else "inline"
            )
            self._step(row, launch, 6, "launch blobs received", "VM tool", "ok", detail)
        plan = build_launch_plan(
            domain,
            LaunchPaths(
                lib_dir=str(paths.root), monitor_socket=str(paths.qmp), pidfile=str(paths.pidfile)
            ),
            emulator=self.qemu,
            resolve_secret=self._secret_bytes,
            host_sev=self._host_sev(),
        )
        for planned in plan.files:
            _write_private(Path(planned.path), planned.content, planned.mode)
        argv = list(plan.argv[1:])
        if not domain.serials:
            argv += [
                "-chardev",
                f"file,id=charconsole,path={paths.console}",
                "-serial",
                "chardev:charconsole",
            ]
        if sev is not None:
            self._step(
                row,
                launch,
                7,
                "sev-guest object built",
                PARTY_HOST,
                "ok",
                f"policy {sev.policy_text}",
            )
        began = time.time()
        self.store.set_runtime(
            row.uuid, state="paused", reason="starting up", pid=None, run_dir=str(paths.root)
        )
        proc = await driver.spawn(plan.argv[0], argv, paths, self._env())
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
        self._step(
            row,
            launch,
            8,
            "hypervisor started paused (-S)",
            PARTY_HYPERVISOR,
            "ok",
            f"pid {proc.pid}",
            began,
        )
        self.events.lifecycle(row.name, "Started", "Booted")
        self.events.lifecycle(row.name, "Suspended", "Paused")
        if sev is not None:
            sev_state = as_dict(await driver.qmp_execute(client, "query-sev"))
            self.store.set_runtime(row.uuid, sev_handle=sev_state.get("handle"))
            outcome = "ok" if sev_state.get("state") == "launch-secret" else "failed"
            self._step(
                row,
                launch,
                9,
                "firmware launch measured",
                PARTY_FIRMWARE,
                outcome,
                f"SEV state {sev_state.get('state')}",
                began,
            )
            if outcome == "ok":
                self._measured(row.name, runtime, launch)
        if not paused:
            await self._resume(self._row(row.uuid), runtime)
        else:
            self.store.set_runtime(row.uuid, reason="user")

    def _step(
        self,
        row: DomainRow,
        launch: int,
        step: int,
        name: str,
        party: str,
        outcome: str,
        detail: str = "",
        began: float | None = None,
    ) -> None:
        now = time.time()
        duration = now - began if began is not None else None
        self.store.add_step(
            row.uuid,
            launch,
            step,
            name,
            party,
            outcome,
            detail,
            started=began or now,
            duration=duration,
        )
        self.events.publish(
            "launch-step",
            row.name,
            launch=launch,
            step=step,
            name=name,
            party=party,
            outcome=outcome,
            detail=detail,
            duration=duration,
        )

    def _secret_bytes(self, secret_uuid: uuidlib.UUID) -> bytes:
        value = self.store.secret_value(str(secret_uuid))
        if value is None:
            raise HostError(
                "Secret not found",
                f"no secret with matching uuid '{secret_uuid}' or it has no value",
            )
        return value

    def _host_sev(self) -> HostSevDefaults | None:
        """cbitpos / reduced-phys-bits from the cached capabilities (qemuProcessUpdateSEVInfo)."""
        info = self._sev_info
        if info is None:
            return None
        return HostSevDefaults(
            cbitpos=int(info["cbitpos"]), reduced_phys_bits=int(info["reduced-phys-bits"])
        )

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
                        outcome = "failed" if data.get("halted") else "ok"
                        detail = (
                            "guest halted"
                            if data.get("halted")
                            else f"secrets {data.get('secrets')}, disk {data.get('disk-label')}"
                        )
                        self._step(
                            row, row.launch, 13, "guest booted", PARTY_GUEST, outcome, detail
                        )
                    runtime.booted.set()
                elif kind == "SHUTDOWN" and data.get("guest"):
                    runtime.stopping = runtime.stopping or "shutdown"
                elif kind == "STOP":
                    self.store.set_runtime(uuid, state="paused", reason="user")
                elif kind == "RESUME":
                    self.store.set_runtime(uuid, state="running", reason="unpaused")
                self.events.publish("hypervisor", name, qmp_event=kind, data=data)

    async def _cleanup_async(self, row: DomainRow, reason: str, *, emit: bool = True) -> None:
        """:meth:`_cleanup`, and for a guest that died without its own teardown, free its SEV
        context on the platform (DEACTIVATE, DECOMMISSION), as KVM does when QEMU dies."""
        handle = row.sev_handle
        self._cleanup(row, reason, emit=emit)
        if reason == "crashed" and handle and self.platform is not None:
            await self._free_sev_context(handle)

    async def _free_sev_context(self, handle: int) -> None:
        from sevlaunch.platform.client import AsyncPlatformClient

        client = AsyncPlatformClient(self.platform)
        try:
            for command in (client.deactivate, client.decommission):
                with contextlib.suppress(SevlaunchError, OSError):
                    await asyncio.wait_for(command(handle), 10.0)
        finally:
            with contextlib.suppress(SevlaunchError, OSError):
                await client.close()

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
            for task in (runtime.events, runtime.watcher):
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            asyncio.get_running_loop().create_task(_quiet_disconnect(runtime.client))
        self.store.set_runtime(row.uuid, state="shutoff", reason=reason, pid=None, sev_handle=None)
        if row.run_dir:
            paths = driver.RunPaths(Path(row.run_dir))
            for leftover in (
                paths.qmp,
                paths.pidfile,
                paths.root / "dh_cert.base64",
                paths.root / "session.base64",
            ):
                leftover.unlink(missing_ok=True)
        if emit:
            detail = {"crashed": "Crashed", "destroyed": "Destroyed", "shutdown": "Shutdown"}.get(
                reason, "Failed"
            )
            self.events.lifecycle(row.name, "Stopped", detail)

    def _running(self, row: DomainRow) -> Runtime:
        runtime = self._runtime.get(row.uuid)
        if runtime is None or row.state not in ("running", "paused"):
            raise _invalid("domain is not running")
        return runtime

    async def resume(self, key: str) -> None:
        row = self._row(key)
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            if row.state == "running":
                raise _invalid("domain is already running")
            await self._resume(row, runtime)

    async def _resume(self, row: DomainRow, runtime: Runtime) -> None:
        began = time.time()
        try:
            await driver.qmp_execute(runtime.client, "cont")
        except HostError as exc:
            self._step(row, row.launch, 13, "resumed", PARTY_HYPERVISOR, "failed", str(exc), began)
            raise
        self.store.set_runtime(row.uuid, state="running", reason="unpaused")
        self._step(
            row,
            row.launch,
            13,
            "resumed",
            PARTY_HYPERVISOR,
            "ok",
            "LAUNCH_FINISH, vCPUs running",
            began,
        )
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
        runtime = self._running(self._row(key))
        await asyncio.wait_for(runtime.booted.wait(), timeout)

    # ---- launch security

    async def launch_security_info(self, key: str) -> dict[str, Any]:
        """virDomainGetLaunchSecurityInfo: measurement, then query-sev, as libvirt orders them."""
        row = self._row(key)
        if Domain.from_xml(row.xml).launch_security is None:
            return {}
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            measure = await driver.qmp_execute(runtime.client, "query-sev-launch-measure")
            sev = await driver.qmp_execute(runtime.client, "query-sev")
        info = {
            "sev-measurement": measure["data"],
            "sev-api-major": sev["api-major"],
            "sev-api-minor": sev["api-minor"],
            "sev-build-id": sev["build-id"],
            "sev-policy": sev["policy"],
        }
        self._step(row, row.launch, 10, "measurement read", "VM tool", "ok", "")
        return info

    async def set_launch_security_state(self, key: str, params: Mapping[str, Any]) -> None:
        """virDomainSetLaunchSecurityState: only SEV domains, only while paused."""
        allowed = {"sev-secret-header": str, "sev-secret": str, "sev-secret-set-address": int}
        for name, value in params.items():
            if name not in allowed:
                raise HostError("invalid argument", f"parameter '{name}' not supported")
            if not isinstance(value, allowed[name]) or isinstance(value, bool):
                raise HostError("invalid argument", f"invalid type for parameter '{name}'")
        row = self._row(key)
        sev = Domain.from_xml(row.xml).launch_security
        if sev is None or sev.type != "sev":
            raise HostError(
                "Operation not supported",
                "setting a launch secret is only supported in SEV-enabled domains",
            )
        if "sev-secret-header" not in params or "sev-secret" not in params:
            raise HostError("invalid argument", "Both secret and the secret header are required")
        for name in ("sev-secret-header", "sev-secret"):
            try:
                base64.b64decode(params[name], validate=True)
            except (binascii.Error, ValueError):
                raise HostError(
                    "invalid argument", f"parameter '{name}' is not valid base64"
                ) from None
        async with self._lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self._running(row)
            if row.state != "paused":
                raise _invalid("domain must be in a paused state")
            arguments: dict[str, Any] = {
                "packet-header": params["sev-secret-header"],
                "secret": params["sev-secret"],
            }
            if "sev-secret-set-address" in params:
                arguments["gpa"] = params["sev-secret-set-address"]
            began = time.time()
            try:
                await driver.qmp_execute(runtime.client, "sev-inject-launch-secret", arguments)
            except HostError as exc:
                self._step(
                    row,
                    row.launch,
                    12,
                    "secret injected",
                    PARTY_FIRMWARE,
                    "failed",
                    str(exc),
                    began,
                )
                raise
            self._step(
                row, row.launch, 12, "secret injected", PARTY_FIRMWARE, "ok", "LAUNCH_SECRET", began
            )

    # ---- console and timeline

    def console(self, key: str) -> str:
        row = self._row(key)
        serials = [s for s in Domain.from_xml(row.xml).serials if s.type == "file" and s.path]
        path = (
            Path(serials[0].path)
            if serials and serials[0].path
            else driver.RunPaths(Path(row.run_dir or self.run_root / row.uuid)).console
        )
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def timeline(self, key: str, launch: int | None = None) -> list[dict[str, Any]]:
        row = self._row(key)
        return [s.as_dict() for s in self.store.steps(row.uuid, launch)]

    # ---- secrets

    def secret_define(self, xml: str) -> str:
        from sevlaunch.host.secrets import Secret

        secret = Secret.from_xml(xml)
        if secret.uuid is None:
            secret = dataclasses.replace(secret, uuid=uuidlib.uuid4())
        self.store.put_secret(str(secret.uuid), secret.to_xml())
        return str(secret.uuid)

    def secret_set_value(self, uid: str, value: bytes) -> None:
        if self.store.secret_xml(uid) is None:
            raise HostError("Secret not found", f"no secret with matching uuid '{uid}'")
        self.store.set_secret_value(uid, value)

    def secret_list(self) -> list[dict[str, Any]]:
        return [{"uuid": u, "xml": x, "has-value": v} for u, x, v in self.store.secret_rows()]

    def secret_undefine(self, uid: str) -> None:
        if self.store.secret_xml(uid) is None:
            raise HostError("Secret not found", f"no secret with matching uuid '{uid}'")
        self.store.delete_secret(uid)


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create a file with ``mode`` from its first byte on (libvirt's 0600 launch blobs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def resolve_binary(name: str) -> str:
    """A hypervisor binary: on PATH, else (for ``sevlaunch-vmm``) beside this Python's scripts."""
    if os.sep in name or shutil.which(name):
        return name
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else name


def as_dict(value: object) -> dict[str, Any]:
    """A QMP object as a dict (qemu.qmp types its replies as ``object``)."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


async def _quiet_disconnect(client: QMPClient) -> None:
    with contextlib.suppress(Exception):
        await client.disconnect()


__all__ = ["DomainXMLError", "HostManager"]
