"""KVM's SEV glue on the emulated platform service: :class:`SevPlatform` over
:class:`~sevlaunch.platform.client.AsyncPlatformClient`.

KVM, not QEMU, picks the ASID: after LAUNCH_START it ACTIVATEs the guest on a free ASID (SEV-ES
guests from the low range), and on teardown DEACTIVATEs and DECOMMISSIONs it. Several VMM
processes share one platform, so a free ASID is found by trying: ACTIVATE is atomic in the
service and answers ASID_OWNED for one in use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sevlaunch.errors import FirmwareError
from sevlaunch.formats.generations import GENERATION_MODELS
from sevlaunch.formats.policy import PolicyFlags
from sevlaunch.formats.status import Status
from sevlaunch.platform.client import AsyncPlatformClient
from sevlaunch.vmm.port import Capabilities, PlatformInfo

if TYPE_CHECKING:
    from sevlaunch.vmm.snp_platform_port import EmulatedSnpPlatform


@dataclass
class _Window:
    """The few bytes one call touches, as a firmware Memory (read/write by address)."""

    base: int
    data: bytearray

    def read(self, paddr: int, length: int) -> bytes:
        off = paddr - self.base
        return bytes(self.data[off : off + length])

    def write(self, paddr: int, data: bytes) -> None:
        off = paddr - self.base
        self.data[off : off + len(data)] = data


class EmulatedSevPlatform:
    """The SEV device of one hypervisor process (``sev-device=`` names the service socket)."""

    def __init__(self, socket_path: str) -> None:
        self.client = AsyncPlatformClient(socket_path)
        self._es: dict[int, bool] = {}

    def snp(self) -> EmulatedSnpPlatform:
        """The SNP half of the device, on this connection."""
        from sevlaunch.vmm.snp_platform_port import EmulatedSnpPlatform

        return EmulatedSnpPlatform(self.client)

    async def info(self) -> PlatformInfo:
        status = await self.client.ensure_init()
        profile = await self.client.profile()
        return PlatformInfo(
            api_major=status.api_major,
            api_minor=status.api_minor,
            build_id=status.build_id,
            es_initialised=status.es_initialized,
            cbitpos=profile.cbitpos,
            reduced_phys_bits=profile.reduced_phys_bits,
            host_cpu_model=GENERATION_MODELS.get(profile.name),
        )

    async def capabilities(self) -> Capabilities:
        await self.client.ensure_init()
        chain = await self.client.pdh_cert_export()
        profile = await self.client.profile()
        chip_id = await self.client.get_id()
        return Capabilities(
            pdh=chain.pdh.to_bytes(),
            cert_chain=chain.export().to_bytes(),
            cpu0_id=chip_id[:64],
            cbitpos=profile.cbitpos,
            reduced_phys_bits=profile.reduced_phys_bits,
        )

    async def launch_start(self, policy: int, godh: bytes | None, session: bytes | None) -> int:
        handle = await self.client.launch_start(policy, godh or b"", session or b"")
        try:
            await self._activate(handle, es=bool(policy & PolicyFlags.ES))
        except FirmwareError:
            with contextlib.suppress(FirmwareError):
                await self.client.decommission(handle)
            raise
        return handle

    async def _activate(self, handle: int, *, es: bool) -> None:
        """ACTIVATE on a free ASID of the guest's range (see :func:`bind_free_asid`)."""
        profile = await self.client.profile()
        first, count = (
            (1, profile.max_es_guests) if es else (profile.max_es_guests + 1, profile.max_guests)
        )
        await bind_free_asid(
            first,
            count,
            handle,
            lambda asid: self.client.activate(handle, asid),
            self.client.df_flush,
            "SEV-ES" if es else "SEV",
        )

    async def launch_update_data(self, handle: int, paddr: int, plaintext: bytes) -> bytes:
        window = _Window(paddr, bytearray(plaintext))
        await self.client.launch_update_data(handle, paddr, len(plaintext), window)
        return bytes(window.data)

    async def launch_update_vmsa(self, handle: int, paddr: int, vmsa: bytes) -> bytes:
        window = _Window(paddr, bytearray(vmsa))
        await self.client.launch_update_vmsa(handle, paddr, len(vmsa), window)
        return bytes(window.data)

    async def launch_measure(self, handle: int) -> bytes:
        return (await self.client.launch_measure(handle)).to_bytes()

    async def launch_secret(
        self, handle: int, header: bytes, paddr: int, trans: bytes, guest_len: int
    ) -> bytes:
        window = _Window(paddr, bytearray(guest_len))
        await self.client.launch_secret(handle, header, trans, paddr, window)
        return bytes(window.data)

    async def launch_finish(self, handle: int) -> None:
        await self.client.launch_finish(handle)

    async def attestation(self, handle: int, mnonce: bytes) -> bytes:
        return await self.client.attestation(handle, mnonce)

    async def guest_read(self, handle: int, paddr: int, ciphertext: bytes) -> bytes:
        start = paddr & ~0xF
        end = (paddr + len(ciphertext) + 0xF) & ~0xF
        window = _Window(paddr, bytearray(ciphertext))
        if start != paddr or end != paddr + len(ciphertext):
            raise FirmwareError(
                "guest read", Status.INVALID_ADDRESS, "guest accesses are 16-byte aligned here"
            )
        return await self.client.guest_read(handle, paddr, len(ciphertext), window)

    async def guest_write(self, handle: int, paddr: int, plaintext: bytes) -> bytes:
        window = _Window(paddr, bytearray(len(plaintext)))
        await self.client.guest_write(handle, paddr, plaintext, window)
        return bytes(window.data)

    async def teardown(self, handle: int) -> None:
        with contextlib.suppress(FirmwareError):
            await self.client.deactivate(handle)
        with contextlib.suppress(FirmwareError):
            await self.client.decommission(handle)
        await self.client.close()


async def bind_free_asid(
    first: int,
    count: int,
    seed: int,
    activate: Callable[[int], Awaitable[None]],
    df_flush: Callable[[], Awaitable[None]],
    kind: str,
) -> int:
    """Try the ASIDs of ``[first, first + count)`` until one binds. The search starts at a slot
    derived from ``seed`` (an ever-increasing handle) and wraps around, so concurrent launches
    rarely try the same ASID and recently freed ones, which need a DF_FLUSH, are reused last,
    as KVM's allocator does. Several VMM processes share one platform, so a free ASID is found
    by trying: ACTIVATE is atomic in the service and answers ASID_OWNED for one in use."""
    flushed = False
    for step in range(count):
        asid = first + (seed - 1 + step) % count
        try:
            await activate(asid)
        except FirmwareError as exc:
            if exc.status == Status.DF_FLUSH_REQUIRED and not flushed:
                await df_flush()
                flushed = True
                try:
                    await activate(asid)
                except FirmwareError as again:
                    if again.status not in (Status.ASID_OWNED, Status.DF_FLUSH_REQUIRED):
                        raise
                    continue
                return asid
            if exc.status in (Status.ASID_OWNED, Status.DF_FLUSH_REQUIRED):
                continue
            raise
        return asid
    raise FirmwareError("ACTIVATE", Status.RESOURCE_LIMIT, f"all {kind} ASIDs are in use")
