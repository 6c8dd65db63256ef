"""KVM's SEV-SNP glue on the emulated platform service: :class:`SnpPlatform` over
:class:`~sevlaunch.platform.client.AsyncPlatformClient`.

KVM backs guest memory with host pages of its own choosing; here each guest gets a window of
the emulated system physical address space (``slot << 36``, 64 GiB; GPA ``g`` lives at
``window + g``), its guest-context page and VMSA pages above the RAM. A window is claimed by
SNP_GCTX_CREATE of its context page: the RMP refuses a page another guest's context holds, and
the next slot is tried, so VMM processes sharing one platform never overlap. Each page is
made private with RMPUPDATE (``rmp_make_private``) before SNP_LAUNCH_UPDATE, one firmware call
per 4 KiB page, as KVM issues them; SNP guests take SEV-ES ASIDs.
"""

from __future__ import annotations

import contextlib
import secrets

from sevlaunch.errors import FirmwareError
from sevlaunch.formats.status import Status
from sevlaunch.formats.vmsa import GENERATION_MODELS
from sevlaunch.platform import snp_calls, snp_host
from sevlaunch.platform.client import AsyncPlatformClient
from sevlaunch.vmm.platform_port import bind_free_asid
from sevlaunch.vmm.snp_port import FinishConfig, PageResult, SnpPlatformInfo

WINDOW_SHIFT = 36
SLOTS = 511  # windows below the platform client's bounce buffers at 1 << 45
CONTEXT_OFFSET = 0xF_0000_0000  # past 60 GiB of guest RAM: the context, then the VMSAs
INITIAL_VMSA_GPA = 0xFFFF_FFFF_F000
PAGE = 4096
VMSA_PAGE_TYPE = 2


class EmulatedSnpPlatform:
    """The SNP half of one hypervisor's ``/dev/sev`` (it shares the SEV half's connection)."""

    def __init__(self, client: AsyncPlatformClient) -> None:
        self.client = client
        self._windows: dict[int, int] = {}  # gctx -> window base
        self._asids: dict[int, int] = {}  # gctx -> the ASID it was activated on

    async def snp_info(self) -> SnpPlatformInfo:
        status = await self.client.run(snp_calls.ensure_snp_init())
        profile = await self.client.profile()
        return SnpPlatformInfo(
            api_major=status.api_major,
            api_minor=status.api_minor,
            build_id=status.build_id,
            cbitpos=profile.cbitpos,
            reduced_phys_bits=profile.reduced_phys_bits,
            host_cpu_model=GENERATION_MODELS.get(profile.name),
        )

    async def _claim_window(self) -> int:
        start = secrets.randbelow(SLOTS)
        for step in range(SLOTS):
            window = (1 + (start + step) % SLOTS) << WINDOW_SHIFT
            try:
                await self.client.run(snp_calls.gctx_create(window + CONTEXT_OFFSET))
            except FirmwareError as exc:
                if exc.status in (Status.INVALID_PAGE_STATE, Status.INVALID_GUEST):
                    continue
                raise
            self._windows[window + CONTEXT_OFFSET] = window
            return window + CONTEXT_OFFSET
        raise FirmwareError("SNP_GCTX_CREATE", Status.RESOURCE_LIMIT, "no free guest window")

    async def snp_launch_start(self, policy: int, gosvw: bytes) -> int:
        gctx = await self._claim_window()
        try:
            await self.client.run(snp_calls.launch_start(gctx, policy, gosvw))
            profile = await self.client.profile()
            self._asids[gctx] = await bind_free_asid(
                1,
                profile.max_es_guests,
                gctx >> WINDOW_SHIFT,
                lambda asid: self.client.run(snp_calls.activate(gctx, asid)),
                lambda: self.client.run(snp_calls.snp_df_flush()),
                "SEV-ES/SNP",
            )
        except FirmwareError:
            with contextlib.suppress(FirmwareError):
                await self.client.run(snp_calls.decommission(gctx))
            raise
        return gctx

    def _spa(self, gctx: int, gpa: int) -> int:
        return self._windows[gctx] + gpa

    async def _update(
        self, gctx: int, spa: int, gpa: int, page_type: int, data: bytes
    ) -> PageResult:
        """One RMPUPDATE for the range (``rmp_make_private``), then a firmware call a page."""
        pages = len(data) // PAGE
        result = await self.client.run(
            snp_host.rmp_update(spa, pages, private=True, asid=self._asids[gctx], gpa=gpa)
        )
        if not result.ok:
            failed = gpa + result.done * PAGE
            return PageResult(int(Status.INVALID_PAGE_STATE), data, result.detail, failed)
        out = bytearray(data)
        for index in range(pages):
            page = data[index * PAGE : (index + 1) * PAGE]
            at = spa + index * PAGE
            reply = await self.client.run(snp_calls.launch_update(gctx, at, page_type, page))
            out[index * PAGE : (index + 1) * PAGE] = snp_calls.page_after(reply, at, page)
            if reply.status:
                return PageResult(reply.status, bytes(out), reply.detail, gpa + index * PAGE)
        return PageResult(0, bytes(out))

    async def snp_launch_update(
        self, handle: int, gpa: int, page_type: int, data: bytes
    ) -> PageResult:
        return await self._update(handle, self._spa(handle, gpa), gpa, page_type, data)

    async def snp_launch_vmsa(self, handle: int, index: int, vmsa: bytes) -> PageResult:
        spa = handle + PAGE * (1 + index)
        return await self._update(handle, spa, INITIAL_VMSA_GPA, VMSA_PAGE_TYPE, vmsa)

    async def snp_launch_finish(self, handle: int, config: FinishConfig) -> None:
        await self.client.run(
            snp_calls.launch_finish(
                handle,
                id_block=config.id_block,
                id_auth=config.id_auth,
                author_key=config.author_key,
                vcek_disabled=config.vcek_disabled,
                host_data=config.host_data,
            )
        )

    async def snp_guest_request(self, handle: int, request: bytes) -> bytes:
        return await self.client.run(snp_calls.guest_request(handle, request))

    async def snp_guest_read(self, handle: int, gpa: int, ciphertext: bytes) -> bytes:
        return await self.client.run(
            snp_host.guest_read(handle, self._spa(handle, gpa), ciphertext)
        )

    async def snp_teardown(self, handle: int) -> None:
        with contextlib.suppress(FirmwareError):
            await self.client.run(snp_calls.decommission(handle))
        self._windows.pop(handle, None)
        self._asids.pop(handle, None)
