"""The machine in process, on the real platform service: what the host can see of guest RAM,
run states and events, and the QMP-visible operations' refusals."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import VmmError
from sevlaunch.formats.hashes import KernelHashes
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.vmm.machine import (
    GUEST_BOOTED_EVENT,
    MEASUREMENT_EVENT,
    Machine,
    MachineSpec,
    RunState,
)
from sevlaunch.vmm.ovmf_image import OvmfLayout, make_image
from sevlaunch.vmm.platform_port import EmulatedSevPlatform
from sevlaunch.vmm.sev import SevGuestConfig
from tests.vmm.conftest import (
    CBITPOS,
    CMDLINE,
    LABEL,
    PASSPHRASE,
    LaunchFiles,
    Media,
    Owner,
    PlatformProcess,
    run_async,
)

Events = list[tuple[str, dict[str, Any] | None]]


class Harness:
    """Builds machines on the shared platform; records their events and console lines."""

    def __init__(self, platform: PlatformProcess, owner: Owner, media: Media, work: Path):
        self.platform = platform
        self.owner = owner
        self.media = media
        self.work = work
        self.events: Events = []
        self.console: list[str] = []
        self.launch: LaunchFiles | None = None

    def spec(self, **changes: Any) -> MachineSpec:
        self.launch = self.owner.session(self.work)
        sev = SevGuestConfig(
            cbitpos=CBITPOS,
            reduced_phys_bits=1,
            policy=self.launch.policy,
            dh_cert_b64=self.launch.godh.read_bytes(),
            session_b64=self.launch.session.read_bytes(),
            kernel_hashes=True,
        )
        spec = MachineSpec(
            name="t1",
            memory=256 << 20,
            firmware=self.media.firmware,
            sev=sev,
            kernel=self.media.kernel,
            initrd=self.media.initrd,
            append=CMDLINE,
            disks=(self.media.disk,),
        )
        return replace(spec, **changes)

    def machine(self, spec: MachineSpec) -> Machine:
        device = EmulatedSevPlatform(str(self.platform.sock)) if spec.sev else None
        return Machine(spec, device, lambda n, d: self.events.append((n, d)), self.console.append)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def secret(self, measurement_b64: str, value: bytes = PASSPHRASE) -> tuple[str, str]:
        assert self.launch is not None
        packet = build_packet(
            secret_table([("luks-key", value)]),
            self.launch.keys,
            base64.b64decode(measurement_b64),
            rng=os.urandom,
        )
        return packet.header_b64, packet.payload_b64


@pytest.fixture
def harness(platform: PlatformProcess, owner: Owner, media: Media, work: Path) -> Harness:
    return Harness(platform, owner, media, work)


def run_machine(
    harness: Harness, spec: MachineSpec, body: Callable[[Machine], Awaitable[None]]
) -> None:
    """Init ``spec``'s machine, run ``body`` on it, and always tear it down."""

    async def go() -> None:
        machine = harness.machine(spec)
        try:
            await machine.init()
            await body(machine)
        finally:
            await machine.teardown()

    run_async(go)


def _chunks(data: bytes, size: int = 64) -> list[bytes]:
    """Probes from across ``data``: its start, middle and end."""
    return [data[:size], data[len(data) // 2 : len(data) // 2 + size], data[-size:]]


def test_host_visible_ram_never_holds_the_plaintext(harness: Harness, media: Media) -> None:
    spec = harness.spec()
    table = KernelHashes(
        cmdline=hashlib.sha256(CMDLINE.encode() + b"\0").digest(),
        initrd=hashlib.sha256(media.initrd.read_bytes()).digest(),
        kernel=hashlib.sha256(media.kernel.read_bytes()).digest(),
    ).to_bytes()

    async def body(machine: Machine) -> None:
        memory = machine.memory
        flash = memory.read(memory.flash_base, len(media.firmware_bytes))
        assert len(flash) == len(media.firmware_bytes)
        for probe in [*_chunks(media.firmware_bytes), table[:48]]:
            assert not memory.contains(probe)
        header, payload = harness.secret(machine.query_sev_launch_measure()["data"])
        await machine.inject_launch_secret(header, payload, None)
        plain_table = secret_table([("luks-key", PASSPHRASE)]).to_bytes()
        for probe in (PASSPHRASE, plain_table[:32], plain_table[-32:]):
            assert not memory.contains(probe)
        await machine.cont()
        assert machine._boot is not None
        result = await machine._boot
        assert result.disk_label == LABEL  # the guest, through its key, did read the secret
        assert not memory.contains(PASSPHRASE)
        assert not memory.contains(media.firmware_bytes[:64])

    run_machine(harness, spec, body)


def test_without_sev_the_firmware_lies_in_ram_as_is(harness: Harness, media: Media) -> None:
    """The control for the test above: the probe finds plaintext when there is some."""
    spec = harness.spec(sev=None, kernel=None, initrd=None)

    async def body(machine: Machine) -> None:
        assert all(machine.memory.contains(probe) for probe in _chunks(media.firmware_bytes))
        assert machine.query_sev()["enabled"] is False
        with pytest.raises(VmmError, match="SEV launch measurement is not available"):
            machine.query_sev_launch_measure()
        with pytest.raises(VmmError, match=r"^SEV is not enabled$"):
            await machine.attestation_report(base64.b64encode(bytes(16)).decode())
        with pytest.raises(VmmError, match=r"^SEV not enabled for guest$"):
            await machine.inject_launch_secret("AA==", "AA==", None)

    run_machine(harness, spec, body)


def test_run_states_and_events(harness: Harness) -> None:
    async def body(machine: Machine) -> None:
        measurement = machine.query_sev_launch_measure()["data"]
        assert harness.events == [(MEASUREMENT_EVENT, {"data": measurement})]
        assert machine.query_status() == {"status": "prelaunch", "running": False}
        await machine.stop()  # not running: nothing happens, as in QEMU
        assert machine.state is RunState.PRELAUNCH
        await machine.cont()
        await machine.cont()  # already running: no second RESUME
        await machine.stop()
        assert machine.query_status() == {"status": "paused", "running": False}
        await machine.cont()
        assert machine.query_sev()["state"] == "running"
        await machine.system_powerdown()
        assert machine.shutdown_requested.is_set()
        with pytest.raises(VmmError, match="Resetting the Virtual Machine is required"):
            await machine.cont()

    run_machine(harness, harness.spec(), body)
    assert harness.names() == [
        MEASUREMENT_EVENT, "RESUME", "STOP", "RESUME", GUEST_BOOTED_EVENT, "SHUTDOWN",
    ]  # fmt: skip
    assert harness.events[-1] == ("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
    assert "Linux: power button pressed, shutting down" in harness.console


def test_no_shutdown_stops_the_vm_at_the_guests_power_off(harness: Harness) -> None:
    """-no-shutdown: SHUTDOWN then STOP, status "shutdown", and the process is left to the
    manager (libvirt kills it); a host quit still ends it."""

    async def body(machine: Machine) -> None:
        await machine.cont()
        await machine.system_powerdown()
        assert machine.query_status() == {"status": "shutdown", "running": False}
        assert not machine.shutdown_requested.is_set()
        machine.quit()
        assert machine.shutdown_requested.is_set()

    run_machine(harness, harness.spec(no_shutdown=True, kernel=None, initrd=None), body)
    assert harness.names()[-3:] == [GUEST_BOOTED_EVENT, "SHUTDOWN", "STOP"]


def test_started_running_boots_without_secrets(harness: Harness) -> None:
    """Without -S, LAUNCH_FINISH follows at once; the guest finds no secret, the disk stays locked."""

    async def body(machine: Machine) -> None:
        assert machine.state is RunState.RUNNING
        assert machine._boot is not None
        result = await machine._boot
        assert (result.halted, result.secrets, result.disk_label) == (False, (), None)
        with pytest.raises(VmmError, match=r"SEV: Not in correct state\. \(LSECRET\) 3"):
            await machine.inject_launch_secret("AA==", "AA==", None)

    run_machine(harness, harness.spec(start_paused=False), body)
    assert any("no secret table" in line for line in harness.console)


def test_default_gpa_needs_a_secret_area(harness: Harness, work: Path) -> None:
    firmware = work / "no-secret.fd"
    firmware.write_bytes(make_image(64 * 1024, layout=OvmfLayout(secret_area=None)))

    async def body(machine: Machine) -> None:
        header, payload = harness.secret(machine.query_sev_launch_measure()["data"])
        with pytest.raises(VmmError, match="no secret area found in OVMF, gpa must be specified"):
            await machine.inject_launch_secret(header, payload, None)
        await machine.inject_launch_secret(header, payload, 0x80C000)  # an explicit gpa works

    run_machine(harness, harness.spec(firmware=firmware), body)


def test_kernel_hashes_need_a_hashes_area(harness: Harness, work: Path) -> None:
    firmware = work / "no-hashes.fd"
    firmware.write_bytes(make_image(64 * 1024, layout=OvmfLayout(hashes_area=None)))
    with pytest.raises(VmmError, match="kernel specified but guest firmware has no hashes table"):
        run_machine(harness, harness.spec(firmware=firmware), lambda _m: _nothing())


async def _nothing() -> None:
    return None


def test_unreadable_boot_files_name_the_option(harness: Harness, work: Path) -> None:
    with pytest.raises(VmmError, match=r"-bios: could not open '.*absent.fd'"):
        run_machine(harness, harness.spec(firmware=work / "absent.fd"), lambda _m: _nothing())


def test_attestation_report(harness: Harness) -> None:
    async def body(machine: Machine) -> None:
        report = await machine.attestation_report(base64.b64encode(bytes(16)).decode())
        assert len(base64.b64decode(report["data"])) == 0xD0
        with pytest.raises(VmmError, match=r"mnonce must be 16 bytes \(got 3\)"):
            await machine.attestation_report(base64.b64encode(b"abc").decode())
        with pytest.raises(VmmError, match="failed to decode mnonce"):
            await machine.attestation_report("not base64!")

    run_machine(harness, harness.spec(), body)


def test_teardown_returns_the_guest_to_the_platform(
    harness: Harness, platform: PlatformProcess
) -> None:
    counts: list[int] = []

    def guests() -> int:
        with platform.client() as client:
            return client.platform_status().guest_count

    async def body(machine: Machine) -> None:
        counts.append(guests())

    run_machine(harness, harness.spec(), body)
    assert guests() == counts[0] - 1
