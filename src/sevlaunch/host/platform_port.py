"""The host manager's one door to the emulated platform service (``--platform SOCKET``).

A real host has no such socket: libvirt reads the ASID split from CPUID and KVM frees a dead
guest's SEV context itself. The emulated platform plays both, so the host asks it here, and
only here, through the platform client (which never loads the firmware emulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sevlaunch.errors import SevlaunchError
from sevlaunch.formats.snp.commands import SnpPlatformStatus

log = logging.getLogger("sevlaunch.host")

#: Seconds a dashboard waits for the platform's answer.
FACTS_TIMEOUT = 2.0


@dataclass(frozen=True)
class PlatformFacts:
    """What an emulated platform's socket adds: its profile (generation) and owner flag."""

    profile: str | None = None
    externally_owned: bool | None = None


def asid_counts(socket: str | None) -> tuple[int, int] | None:
    """``(max-guests, max-es-guests)``: the platform's ASID split; None when unknown."""
    if socket is None:
        return None
    from sevlaunch.platform.client import PlatformClient

    try:
        with PlatformClient(socket) as client:
            profile = client.profile()
    except (SevlaunchError, OSError) as exc:  # node SEV info goes on without the split
        log.warning("platform %s gave no ASID split: %s", socket, exc)
        return None
    return profile.max_guests, profile.max_es_guests


def platform_facts(socket: str | None) -> PlatformFacts:
    """Ask an emulated platform who it is; a real host (no socket) has no such facts."""
    if socket is None:
        return PlatformFacts()
    from sevlaunch.platform.client import PlatformClient

    try:
        with PlatformClient(socket, timeout=FACTS_TIMEOUT) as client:
            profile = client.profile().name
            owned = client.platform_status().externally_owned
    except (SevlaunchError, OSError) as exc:  # the page shows "not reported"
        log.info("platform %s gave no facts: %s", socket, exc)
        return PlatformFacts()
    return PlatformFacts(profile, owned)


async def free_sev_context(socket: str, handle: int) -> None:
    """DEACTIVATE and DECOMMISSION a dead guest's SEV handle, as KVM does when QEMU dies;
    best effort, 10 s each (a handle the platform already forgot is fine)."""
    from sevlaunch.platform.client import AsyncPlatformClient

    client = AsyncPlatformClient(socket)
    try:
        for command in (client.deactivate, client.decommission):
            try:
                await asyncio.wait_for(command(handle), 10.0)
            except (SevlaunchError, OSError, TimeoutError) as exc:
                log.info("freeing SEV handle %d on %s: %s", handle, socket, exc)
    finally:
        with contextlib.suppress(SevlaunchError, OSError):  # the connection may be gone
            await client.close()


def snp_status(socket: str | None) -> SnpPlatformStatus | None:
    """SNP_PLATFORM_STATUS of an emulated platform (a real host reads it with ``snphost``);
    None without a socket or an answer."""
    if socket is None:
        return None
    from sevlaunch.platform.client import PlatformClient

    try:
        with PlatformClient(socket, timeout=FACTS_TIMEOUT) as client:
            return client.snp_platform_status()
    except (SevlaunchError, OSError) as exc:  # node SNP info goes on without the status
        log.info("platform %s gave no SNP status: %s", socket, exc)
        return None
