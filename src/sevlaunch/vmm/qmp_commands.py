"""QEMU's QMP commands for an SEV guest, bound to a :class:`Machine`.

Names, arguments, replies and error texts are QEMU's (qapi/misc-i386.json, target/i386/sev.c),
so libvirt-style management code and the qemu.qmp client work unchanged.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sevlaunch.errors import FirmwareError, PlatformError, QmpCommandError, VmmError
from sevlaunch.qmp import QMPServer
from sevlaunch.vmm.machine import Machine
from sevlaunch.vmm.port import SevPlatform

Args = dict[str, Any]


@dataclass
class VmmCommands:
    """The command handlers; ``machine`` is None for ``-machine none`` (capability probes)."""

    machine: Machine | None
    name: str | None
    device: SevPlatform | None
    device_error: str
    on_quit: Callable[[], None]
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def register(self, server: QMPServer) -> None:
        server.register("query-name", self.query_name)
        server.register("query-status", self.query_status)
        server.register("cont", self.cont)
        server.register("stop", self.stop)
        server.register("system_powerdown", self.system_powerdown)
        server.register("quit", self.quit)
        server.register("query-sev", self.query_sev)
        server.register("query-sev-capabilities", self.query_sev_capabilities)
        server.register("query-sev-launch-measure", self.query_sev_launch_measure)
        server.register(
            "sev-inject-launch-secret",
            self.sev_inject_launch_secret,
            {"packet-header": "str", "secret": "str", "*gpa": "uint64"},
        )
        server.register(
            "query-sev-attestation-report", self.query_sev_attestation_report, {"mnonce": "str"}
        )

    def _machine(self) -> Machine:
        if self.machine is None:
            raise QmpCommandError("No machine specified, and there is no default")
        return self.machine

    async def query_name(self, _args: Args) -> object:
        return {"name": self.name} if self.name is not None else {}

    async def query_status(self, _args: Args) -> object:
        if self.machine is None:
            return {"status": "prelaunch", "running": False}
        return self.machine.query_status()

    async def cont(self, _args: Args) -> object:
        try:
            await self._machine().cont()
        except VmmError as exc:
            raise QmpCommandError(str(exc), exc.error_class) from exc
        return None

    async def stop(self, _args: Args) -> object:
        await self._machine().stop()
        return None

    async def system_powerdown(self, _args: Args) -> object:
        task = asyncio.get_running_loop().create_task(self._machine().system_powerdown())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def quit(self, _args: Args) -> object:
        if self.machine is not None:
            self.machine.quit()
        self.on_quit()
        return None

    async def query_sev(self, _args: Args) -> object:
        if self.machine is None or (self.machine.sev is None and self.machine.snp is None):
            raise QmpCommandError("SEV feature is not available")
        return self.machine.query_sev()

    async def query_sev_capabilities(self, _args: Args) -> object:
        if self.device is None:
            raise QmpCommandError(self.device_error)
        try:
            caps = await self.device.capabilities()
        except (FirmwareError, PlatformError) as exc:
            raise QmpCommandError(f"SEV: Failed to get capabilities: {exc}") from exc
        return {
            "pdh": base64.b64encode(caps.pdh).decode(),
            "cert-chain": base64.b64encode(caps.cert_chain).decode(),
            "cpu0-id": base64.b64encode(caps.cpu0_id).decode(),
            "cbitpos": caps.cbitpos,
            "reduced-phys-bits": caps.reduced_phys_bits,
        }

    async def query_sev_launch_measure(self, _args: Args) -> object:
        try:
            return self._machine().query_sev_launch_measure()
        except VmmError as exc:
            raise QmpCommandError(str(exc), exc.error_class) from exc

    async def sev_inject_launch_secret(self, args: Args) -> object:
        try:
            await self._machine().inject_launch_secret(
                args["packet-header"], args["secret"], args.get("gpa")
            )
        except VmmError as exc:
            raise QmpCommandError(str(exc), exc.error_class) from exc
        return None

    async def query_sev_attestation_report(self, args: Args) -> object:
        try:
            return await self._machine().attestation_report(args["mnonce"])
        except VmmError as exc:
            raise QmpCommandError(str(exc), exc.error_class) from exc
