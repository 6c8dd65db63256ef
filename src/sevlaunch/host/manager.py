"""The host manager (libvirt's role for SEV guests): domains, their lifecycle, node SEV info,
launch security info and state, secrets, events, and restart safety.

One :class:`HostManager` per host. The pieces live beside it: :mod:`~sevlaunch.host.guests`
(the running hypervisors, their locks and events), :mod:`~sevlaunch.host.launch` (a start),
:mod:`~sevlaunch.host.validate` (define-time checks), :mod:`~sevlaunch.host.probe` (capability
probe and cache), :mod:`~sevlaunch.host.recovery` (guests found again after a restart),
:mod:`~sevlaunch.host.launchsec` (launch security rules), :mod:`~sevlaunch.host.secretstore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sevlaunch.errors import DomainXMLError, HostError
from sevlaunch.host import driver, launch, launchsec, logs, platform_port, probe, recovery
from sevlaunch.host.domxml import Domain
from sevlaunch.host.events import EventBus
from sevlaunch.host.guests import Guests
from sevlaunch.host.runtime import (
    Runtime,
    invalid,
    remove_domain_dirs,
    resolve_binary,
    sweep_orphans,
)
from sevlaunch.host.secrets import Secret
from sevlaunch.host.secretstore import SecretStore, parse_secret_uuid
from sevlaunch.host.steps import host_steps
from sevlaunch.host.store import DomainRow, Store
from sevlaunch.host.timeline import record_report
from sevlaunch.host.validate import validate_define
from sevlaunch.protocol import (
    LaunchSecurityInfo,
    NodeSevInfo,
    NodeSnpInfo,
    Outcome,
    SnpLaunchSecurityInfo,
    Step,
    StepReport,
)


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
        self.guests = Guests(self.store, self.events, platform)
        self._sev_cache = probe.SevInfoCache(
            self._probe_sev, lambda: probe.device_stamp(self.platform)
        )
        self._sectypes: tuple[str, ...] | None = None
        self.secrets = SecretStore(self.store)

    @property
    def _runtime(self) -> dict[str, Runtime]:
        return self.guests.runtime

    def _row(self, key: str) -> DomainRow:
        return self.guests.row(key)

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
        await self.guests.cleanup_async(row, "crashed")

    async def _reattach(self, row: DomainRow, pid: int, paths: driver.RunPaths) -> bool:
        """Connect to a guest that outlived the manager; False when its monitor is gone."""
        found = await recovery.reconnect(pid, paths)
        if found is None:
            return False
        client, running = found
        runtime = Runtime(pid, client, paths)
        recovery.restore_progress(
            runtime,
            self.store.steps(row.uuid, row.launch),
            host_steps(Domain.from_xml(row.xml)),
        )
        self.guests.attach(row, runtime, None)
        self.store.set_runtime(
            row.uuid,
            state="running" if running else "paused",
            reason=recovery.recovered_reason(row, running),
            pid=pid,
        )
        return True

    async def close(self) -> None:
        """Stop watching guests; they keep running, as they do when libvirtd stops."""
        await self.guests.close()
        self.store.close()

    # ---- node

    async def node_sev_info(self, *, refresh: bool = False) -> NodeSevInfo:
        """virNodeGetSEVInfo from the hypervisor's ``query-sev-capabilities``, cached as libvirt
        caches it (a binary without SEV is remembered too, until ``refresh``)."""
        return await self._sev_cache.get(refresh=refresh)

    async def node_snp_info(self, *, refresh: bool = False) -> NodeSnpInfo:
        """SEV-SNP on this node: the launchSecurity types the hypervisor can start (probed once,
        cached as libvirt's domain capabilities are) and the platform's SNP status (asked each
        time: its TCBs move with SNP_CONFIG and firmware updates)."""
        if self._sectypes is None or refresh:
            self._sectypes = await probe.probe_launch_security_types(
                self.qemu, self.run_root, self._env()
            )
        status = await asyncio.to_thread(platform_port.snp_status, self.platform)
        return launchsec.node_snp_info(self._sectypes, status)

    async def _probe_sev(self) -> NodeSevInfo:
        return await probe.probe_sev(self.qemu, self.run_root, self._env(), self.platform)

    def _env(self) -> dict[str, str]:
        return {"SEVLAUNCH_SEV_DEVICE": self.platform} if self.platform else {}

    async def _no_sev(self) -> str | None:
        """Why the hypervisor has no SEV (the probe's error), or None when it has."""
        try:
            await self.node_sev_info()
        except HostError as exc:
            return exc.detail
        return None

    # ---- domain definitions

    async def define(self, xml: str) -> DomainRow:
        """virDomainDefineXML: parse, validate against the hypervisor's capabilities as libvirt
        does at define (the SEV probe only for an SEV domain), store."""
        domain = Domain.from_xml(xml)
        lsec = domain.launch_security
        needs_sev = lsec is not None and lsec.type in ("sev", "sev-snp")
        no_sev = await self._no_sev() if needs_sev else None
        validate_define(domain, no_sev=no_sev)
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
        if Domain.from_xml(row.xml).launch_security is not None:
            await self._require_sev()
        hypervisor = launch.Hypervisor(
            binary=self.qemu,
            env=self._env(),
            run_root=self.run_root,
            log_dir=self._log_dir,
            resolve_secret=self.secrets.value,
            host_sev=lambda: probe.host_sev_defaults(self._sev_cache.info),
        )
        return await launch.start(self.guests, hypervisor, key, paused=paused)

    async def _require_sev(self) -> None:
        """Start-time, for a domain defined before the hypervisor lost SEV (or was replaced):
        libvirt's define-time words, with the probe's reason."""
        try:
            await self.node_sev_info()
        except HostError as exc:
            raise HostError(
                "unsupported configuration",
                f"SEV launch security is not supported with this QEMU binary ({exc.detail})",
                field="launchSecurity",
                value=self.qemu,
            ) from exc

    async def resume(self, key: str) -> None:
        row = self._row(key)
        async with self.guests.lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self.guests.running(row)
            if row.state == "running":
                raise invalid("domain is already running")
            await launch.resume_run(self.guests, row, runtime)

    async def suspend(self, key: str) -> None:
        row = self._row(key)
        async with self.guests.lock(row.uuid):
            runtime = self.guests.running(self._row(row.uuid))
            await driver.qmp_execute(runtime.client, "stop")
            self.store.set_runtime(row.uuid, state="paused", reason="user")
            self.events.lifecycle(row.name, "Suspended", "Paused")

    async def shutdown(self, key: str) -> None:
        row = self._row(key)
        async with self.guests.lock(row.uuid):
            runtime = self.guests.running(self._row(row.uuid))
            runtime.stopping = "shutdown"
            await driver.qmp_execute(runtime.client, "system_powerdown")

    async def destroy(self, key: str) -> None:
        row = self._row(key)
        async with self.guests.lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self.guests.running(row)
            runtime.stopping = "destroyed"
            await driver.terminate(runtime.pid)
            if runtime.watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):  # the watcher cleaned up
                    await asyncio.wait_for(asyncio.shield(runtime.watcher), 5.0)
            if row.uuid in self._runtime:
                self.guests.cleanup(row, "destroyed")

    async def wait_booted(self, key: str, timeout: float) -> None:
        """Until the guest reports its boot; HostError if it halted or the domain stopped."""
        runtime = self.guests.running(self._row(key))
        await asyncio.wait_for(runtime.booted.wait(), timeout)
        if runtime.boot_failure is not None:
            raise HostError("operation failed", runtime.boot_failure)

    # ---- launch security

    async def launch_security_info(
        self, key: str
    ) -> LaunchSecurityInfo | SnpLaunchSecurityInfo | None:
        """virDomainGetLaunchSecurityInfo: measurement, then query-sev, as libvirt orders them;
        None (no parameters) for a domain without launch security; for SEV-SNP only
        query-sev (libvirt 10.5: no measurement). Step 10 is recorded at the first read of an
        SEV run, not at every one."""
        row = self._row(key)
        lsec = Domain.from_xml(row.xml).launch_security
        if lsec is None:
            return None
        async with self.guests.lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self.guests.running(row)
            if lsec.is_snp:
                return launchsec.snp_security_info(
                    await driver.qmp_execute(runtime.client, "query-sev")
                )
            began = time.time()
            measure = await driver.qmp_execute(runtime.client, "query-sev-launch-measure")
            sev = await driver.qmp_execute(runtime.client, "query-sev")
        info = launchsec.security_info(measure, sev)
        if not runtime.measurement_read:
            runtime.measurement_read = True
            detail = f"sev-measurement {info.measurement_b64}"
            self.guests.step(row, row.launch, Step.MEASUREMENT_READ, Outcome.OK, detail, began)
        return info

    async def set_launch_security_state(self, key: str, params: Mapping[str, Any]) -> None:
        """virDomainSetLaunchSecurityState: only SEV domains, only while paused."""
        launchsec.check_state_params(params)
        row = self._row(key)
        launchsec.check_secret_request(Domain.from_xml(row.xml).launch_security, params)
        async with self.guests.lock(row.uuid):
            row = self._row(row.uuid)
            runtime = self.guests.running(row)
            if row.state != "paused":
                raise invalid("domain must be in a paused state")
            arguments = launchsec.inject_arguments(params)
            began = time.time()
            step = Step.SECRET_INJECTED
            try:
                await driver.qmp_execute(runtime.client, "sev-inject-launch-secret", arguments)
            except HostError as exc:
                self.guests.step(row, row.launch, step, Outcome.FAILED, str(exc), began)
                raise
            self.guests.step(row, row.launch, step, Outcome.OK, "LAUNCH_SECRET", began)

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

    def report_steps(self, key: str, reports: Sequence[StepReport]) -> int:
        """The VM tool's record of the steps the host does not see (1-5, 11) for the domain's
        current launch, kept in its timeline once each; how many were new."""
        row = self._row(key)
        for report in reports:
            if report.outcome not in set(Outcome):
                raise HostError(
                    "invalid argument",
                    f"step {int(report.step)}: outcome must be ok or failed",
                    field="outcome",
                    value=report.outcome,
                )
        recorded = {s.step for s in self.store.steps(row.uuid, row.launch)}
        return sum(record_report(self.store, self.events, row, r, recorded) for r in reports)

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
