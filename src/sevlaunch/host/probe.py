"""Node SEV info (virNodeGetSEVInfo): probe the hypervisor binary's ``query-sev-capabilities``
once, as libvirt does, and cache the answer, including a binary without SEV.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from qemu.qmp import QMPClient

from sevlaunch.errors import FormatError, HostError, QemuCommandError
from sevlaunch.host import driver, platform_port
from sevlaunch.host.qemu import HostSevDefaults
from sevlaunch.host.runtime import as_dict, quiet_disconnect
from sevlaunch.protocol import NodeSevInfo

log = logging.getLogger("sevlaunch.host")


async def probe_sev(
    qemu: str, run_root: Path, env: dict[str, str], platform: str | None
) -> NodeSevInfo:
    """Run ``qemu`` without a machine, ask its monitor for SEV capabilities, then stop it."""
    caps = as_dict((await _ask(qemu, run_root, env, ["query-sev-capabilities"]))[0])
    try:
        info = NodeSevInfo.from_wire(caps)
    except FormatError as exc:
        raise HostError(
            "internal error", f"{qemu}: query-sev-capabilities: {exc}", field=exc.field
        ) from exc
    counts = platform_port.asid_counts(platform)
    return info if counts is None else info.with_asids(*counts)


async def probe_launch_security_types(
    qemu: str, run_root: Path, env: dict[str, str]
) -> tuple[str, ...]:
    """The domain capabilities' ``launchSecurity`` sectypes (libvirt 10.5): ``sev`` and
    ``sev-snp`` when the binary has SEV capabilities and the ``sev-guest`` /
    ``sev-snp-guest`` QOM types; none without SEV capabilities (SNP builds on them)."""
    try:
        _, listed = await _ask(qemu, run_root, env, ["query-sev-capabilities", "qom-list-types"])
    except HostError:
        return ()
    names = (
        {t.get("name") for t in listed if isinstance(t, dict)}
        if isinstance(listed, list)
        else set()
    )
    return tuple(t for t in ("sev", "sev-snp") if f"{t}-guest" in names)


async def _ask(qemu: str, run_root: Path, env: dict[str, str], commands: list[str]) -> list[object]:
    """Each command's answer from ``qemu`` run without a machine, as libvirt probes it; a
    command error is "no SEV" (libvirt: GenericError means unsupported, not a failure)."""
    paths = driver.RunPaths(run_root / f"probe-{uuidlib.uuid4().hex[:8]}")
    argv = ["-S", "-no-user-config", "-nodefaults", "-display", "none", "-machine", "none"]
    argv += ["-accel", "kvm", "-accel", "tcg"]  # KVM when the host has it, as libvirt probes
    argv += ["-qmp", f"unix:{paths.qmp},server=on,wait=off"]
    proc = await driver.spawn(qemu, argv, paths, env)
    exited = asyncio.ensure_future(proc.wait())
    answers: list[object] = []
    try:
        client = await driver.connect(proc.pid, paths, exited)
        try:
            for command in commands:
                answers.append(await driver.qmp_execute(client, command))
        except QemuCommandError as exc:
            raise HostError(
                "Operation not supported",
                f"QEMU does not support SEV guest: {qemu}: {command}: {exc.desc}",
                field=exc.command,
                value=exc.error_class,
            ) from exc
        finally:
            await _quit(client)
    finally:
        if not exited.done():
            driver.kill(proc.pid, 9)
        await exited
        shutil.rmtree(paths.root, ignore_errors=True)
    return answers


async def _quit(client: QMPClient) -> None:
    """Ask the probed binary to exit; it may already have (the caller kills it if not)."""
    try:
        await driver.qmp_execute(client, "quit")
    except HostError as exc:
        log.debug("probe: quit: %s", exc)
    await quiet_disconnect(client)


class SevInfoCache:
    """The probe's answer or its error, kept until a refresh (libvirt's capabilities cache), or
    until ``stamp`` changes: libvirt re-probes when the SEV device it probed changed
    (virQEMUCapsIsValid checks kvm_amd's ``sev`` parameter); here the device is the platform
    service, and a restarted one has a new socket."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[NodeSevInfo]],
        stamp: Callable[[], object] = lambda: None,
    ) -> None:
        self._probe = probe
        self._stamp = stamp
        self._probed: object = None
        self.info: NodeSevInfo | None = None
        self._error: HostError | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, refresh: bool = False) -> NodeSevInfo:
        """The cached info; probe first when nothing is cached, the device changed or on
        ``refresh``."""
        async with self._lock:
            stamp = self._stamp()
            cached = self.info is not None or self._error is not None
            if not cached or refresh or stamp != self._probed:
                self._probed = stamp
                try:
                    self.info, self._error = await self._probe(), None
                except HostError as exc:
                    self.info, self._error = None, exc
            if self._error is not None:
                raise HostError(
                    self._error.kind, self._error.detail, field=self._error.field
                ) from self._error
            if self.info is None:  # the probe either answered or raised HostError above
                raise HostError("internal error", "the SEV capability probe left no answer")
            return self.info


def device_stamp(socket: str | None) -> tuple[int, int, int] | None:
    """Which platform socket is there now (device, inode, change time): None without one."""
    if socket is None:
        return None
    try:
        st = os.stat(socket)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def host_sev_defaults(info: NodeSevInfo | None) -> HostSevDefaults | None:
    """cbitpos / reduced-phys-bits from cached capabilities (qemuProcessUpdateSEVInfo)."""
    if info is None:
        return None
    return HostSevDefaults(cbitpos=info.cbitpos, reduced_phys_bits=info.reduced_phys_bits)
