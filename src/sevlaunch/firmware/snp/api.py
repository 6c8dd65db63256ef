"""Typed conveniences for the SNP commands, as :class:`~sevlaunch.firmware.Firmware` has for
SEV's: each builds the buffer, stages inputs and outputs in a private scratch window (never in
the caller's memory) and raises FirmwareError on a non-zero status. ``Firmware.snp`` returns
one; the platform service and the hypervisor use raw mailbox calls instead."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sevlaunch.errors import AddressError, FirmwareError
from sevlaunch.firmware._core import Core
from sevlaunch.firmware.memory import Memory, Overlay
from sevlaunch.firmware.snp import host_ops
from sevlaunch.formats.commands import CommandBuffer
from sevlaunch.formats.snp.commands import (
    STATUS_SIZE,
    SnpActivateBuffer,
    SnpAddrBuffer,
    SnpCommand,
    SnpCommitBuffer,
    SnpConfigBuffer,
    SnpGuestRequestBuffer,
    SnpLaunchFinishBuffer,
    SnpLaunchStartBuffer,
    SnpLaunchUpdateBuffer,
    SnpPlatformStatus,
    SnpVlekLoadBuffer,
)
from sevlaunch.formats.snp.idblock import ID_AUTH_SIZE
from sevlaunch.formats.status import Status

SCRATCH_BASE = 0x7100_0000_0000
SCRATCH_SIZE = 1 << 20
Checked = Callable[[Any, bytes, Memory], bytes]


class _NoMemory:
    def read(self, paddr: int, length: int) -> bytes:
        raise AddressError(paddr, length, "this command was given no guest memory")

    def write(self, paddr: int, data: bytes) -> None:
        self.read(paddr, len(data))


class SnpApi:
    def __init__(self, core: Core, checked: Checked) -> None:
        self._core, self._checked = core, checked

    def _run(
        self, command: SnpCommand, buf: CommandBuffer | None, memory: Memory | None = None
    ) -> Overlay:
        mem = Overlay(memory if memory is not None else _NoMemory(), SCRATCH_BASE, SCRATCH_SIZE)
        self._checked(command, b"" if buf is None else buf.to_bytes(), mem)
        return mem

    # -- platform ----------------------------------------------------------------------------

    def init(self) -> None:
        self._run(SnpCommand.SNP_INIT, None)

    def shutdown(self) -> None:
        self._run(SnpCommand.SNP_SHUTDOWN, None)

    def df_flush(self) -> None:
        self._run(SnpCommand.SNP_DF_FLUSH, None)

    def platform_status(self) -> SnpPlatformStatus:
        mem = self._run(SnpCommand.SNP_PLATFORM_STATUS, SnpAddrBuffer(SCRATCH_BASE))
        return SnpPlatformStatus.from_bytes(mem.read(SCRATCH_BASE, STATUS_SIZE))

    def config(
        self, reported_tcb: int, *, mask_chip_id: bool = False, mask_chip_key: bool = False
    ) -> None:
        flags = (SnpConfigBuffer.MASK_CHIP_ID if mask_chip_id else 0) | (
            SnpConfigBuffer.MASK_CHIP_KEY if mask_chip_key else 0
        )
        self._run(SnpCommand.SNP_CONFIG, SnpConfigBuffer(reported_tcb, flags))

    def commit(self) -> None:
        self._run(SnpCommand.SNP_COMMIT, SnpCommitBuffer())

    def vlek_load(self, hashstick: bytes) -> None:
        mem = Overlay(_NoMemory(), SCRATCH_BASE, SCRATCH_SIZE)
        mem.write(SCRATCH_BASE, hashstick)
        buf = SnpVlekLoadBuffer(address=SCRATCH_BASE)
        self._checked(SnpCommand.SNP_VLEK_LOAD, buf.to_bytes(), mem)

    # -- guests ------------------------------------------------------------------------------

    def gctx_create(self, gctx: int) -> None:
        self._run(SnpCommand.SNP_GCTX_CREATE, SnpAddrBuffer(gctx))

    def launch_start(self, gctx: int, policy: int = 0x30000, gosvw: bytes = bytes(16)) -> None:
        self._run(SnpCommand.SNP_LAUNCH_START, SnpLaunchStartBuffer(gctx, policy, gosvw=gosvw))

    def activate(self, gctx: int, asid: int) -> None:
        self._run(SnpCommand.SNP_ACTIVATE, SnpActivateBuffer(gctx, asid))

    def launch_update(self, gctx: int, memory: Memory, spa: int, page_type: int) -> None:
        """One 4 KiB page at ``spa`` of ``memory``, encrypted there in place."""
        buf = SnpLaunchUpdateBuffer.page(gctx, spa, page_type)
        self._checked(SnpCommand.SNP_LAUNCH_UPDATE, buf.to_bytes(), memory)

    def launch_finish(
        self,
        gctx: int,
        *,
        id_block: bytes | None = None,
        id_auth: bytes | None = None,
        author_key: bool = False,
        vcek_disabled: bool = False,
        host_data: bytes = bytes(32),
    ) -> None:
        mem = Overlay(_NoMemory(), SCRATCH_BASE, SCRATCH_SIZE)
        flags = SnpLaunchFinishBuffer.VCEK_DISABLED if vcek_disabled else 0
        block_at = auth_at = 0
        if id_block is not None:
            block_at, auth_at = SCRATCH_BASE, SCRATCH_BASE + 0x1000
            mem.write(block_at, id_block)
            mem.write(auth_at, (id_auth or b"").ljust(ID_AUTH_SIZE, b"\0"))
            flags |= SnpLaunchFinishBuffer.ID_BLOCK_EN
            flags |= SnpLaunchFinishBuffer.AUTH_KEY_EN if author_key else 0
        buf = SnpLaunchFinishBuffer(gctx, block_at, auth_at, flags, host_data)
        self._checked(SnpCommand.SNP_LAUNCH_FINISH, buf.to_bytes(), mem)

    def guest_request(self, gctx: int, memory: Memory, req: int, res: int) -> None:
        buf = SnpGuestRequestBuffer(gctx, req, res)
        self._checked(SnpCommand.SNP_GUEST_REQUEST, buf.to_bytes(), memory)

    def decommission(self, gctx: int) -> None:
        self._run(SnpCommand.SNP_DECOMMISSION, SnpAddrBuffer(gctx))

    # -- host operations ---------------------------------------------------------------------

    def host(self, op: str, memory: Memory | None = None, **args: Any) -> bytes:
        request = json.dumps({"op": op, **args}).encode()
        return host_ops.run(self._core, request, memory if memory is not None else _NoMemory())

    def rmp_assign(self, spa: int, asid: int, gpa: int, pages: int = 1) -> None:
        result = json.loads(
            self.host("rmp_update", spa=spa, pages=pages, asid=asid, gpa=gpa, private=True)
        )
        if not result["ok"]:
            raise FirmwareError(
                "RMPUPDATE", Status.INVALID_PAGE_STATE, f"{result['code']}: {result['detail']}"
            )

    def info(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.host("info"))
        return found
