"""Node SEV info's probe and cache: the hypervisor's answer or its refusal (with QEMU's error
class and the command kept as the cause), cached as libvirt caches capabilities."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from sevlaunch.errors import HostError, QemuCommandError
from sevlaunch.host.probe import SevInfoCache, device_stamp, host_sev_defaults, probe_sev
from sevlaunch.protocol import NodeSevInfo
from tests.host.conftest import VMM, Platform


def test_the_emulated_platform_answers_with_its_asids(short_dir: Path, platform: Platform) -> None:
    env = {"SEVLAUNCH_SEV_DEVICE": str(platform.socket)}
    info = asyncio.run(probe_sev(VMM, short_dir, env, str(platform.socket)))
    assert info.cbitpos == 51
    assert (info.max_guests, info.max_es_guests) != (None, None)
    defaults = host_sev_defaults(info)
    assert defaults is not None
    assert (defaults.cbitpos, defaults.reduced_phys_bits) == (info.cbitpos, info.reduced_phys_bits)
    assert list(short_dir.iterdir()) == []  # the probe's run directory is gone


def test_no_sev_device_is_qemus_refusal_kept_as_the_cause(short_dir: Path) -> None:
    env = {"SEVLAUNCH_SEV_DEVICE": str(short_dir / "no-such-socket")}
    with pytest.raises(HostError) as caught:
        asyncio.run(probe_sev(VMM, short_dir, env, None))
    assert caught.value.kind == "Operation not supported"
    assert caught.value.detail.startswith("QEMU does not support SEV guest")
    cause = caught.value.__cause__
    assert isinstance(cause, QemuCommandError)
    assert (cause.command, cause.error_class) == ("query-sev-capabilities", "GenericError")
    assert (caught.value.field, caught.value.value) == ("query-sev-capabilities", "GenericError")


def test_the_cache_keeps_an_answer_or_an_error_until_a_refresh() -> None:
    answers: list[NodeSevInfo | HostError] = [HostError("Operation not supported", "no SEV")]

    async def probe() -> NodeSevInfo:
        answer = answers[0]
        if isinstance(answer, HostError):
            raise answer
        return answer

    async def body() -> None:
        cache = SevInfoCache(probe)
        for _ in range(2):
            with pytest.raises(HostError, match="no SEV") as caught:
                await cache.get()
            assert caught.value.__cause__ is answers[0]
        info = NodeSevInfo.from_wire(
            {"pdh": "AA==", "cert-chain": "AA==", "cbitpos": 47, "reduced-phys-bits": 1}
        )
        answers[0] = info
        with pytest.raises(HostError):
            await cache.get()  # still the cached refusal
        assert await cache.get(refresh=True) is info
        assert cache.info is info

    asyncio.run(body())
    assert host_sev_defaults(None) is None


def test_the_cache_probes_again_once_the_platform_socket_is_another(short_dir: Path) -> None:
    """A refusal cached while the platform service was down (connection refused) goes once the
    service is back on a new socket; while the socket stays the same, the cache holds."""
    sock = short_dir / "platform.sock"
    calls: list[object] = []
    info = NodeSevInfo.from_wire(
        {"pdh": "AA==", "cert-chain": "AA==", "cbitpos": 47, "reduced-phys-bits": 1}
    )

    async def probe() -> NodeSevInfo:
        calls.append(device_stamp(str(sock)))
        if not sock.exists():
            raise HostError("Operation not supported", "no platform service")
        return info

    def bind() -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(sock))
        return server

    async def body() -> None:
        cache = SevInfoCache(probe, lambda: device_stamp(str(sock)))
        with pytest.raises(HostError, match="no platform service"):
            await cache.get()
        with pytest.raises(HostError, match="no platform service"):
            await cache.get()  # same (absent) device: the refusal is kept
        assert len(calls) == 1
        with bind():
            assert await cache.get() is info
            assert await cache.get() is info
            assert len(calls) == 2
        sock.unlink()
        with bind():  # a restarted service: the same path, another socket
            assert await cache.get() is info
            assert len(calls) == 3
            assert calls[1] != calls[2]

    asyncio.run(body())
    assert device_stamp(None) is None
