"""SEV-ES in the emulated hypervisor: ``-cpu``, ``-smp`` and ``legacy-vm-type`` give exactly the
VMSAs the owner tools build, LAUNCH_UPDATE_VMSA runs per vCPU before LAUNCH_MEASURE, and the
refusals QEMU makes. The machine runs in process on the pure firmware (no service)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.errors import VmmError
from sevlaunch.firmware import PROFILES, Firmware
from sevlaunch.formats.vmsa import QEMU_CPU_MODELS
from sevlaunch.owner.launch_digest import measure_firmware
from sevlaunch.owner.measurement import launch_info, validate
from sevlaunch.owner.session import make_session
from sevlaunch.owner.verify import trust_store, verify_pdh_and_chain
from sevlaunch.owner.vmsa import EsVmsas, VcpuType, es_pages, vcpu_type
from sevlaunch.vmm.cmdline import parse_cmdline
from sevlaunch.vmm.machine import Machine, MachineSpec
from sevlaunch.vmm.main import machine_spec
from sevlaunch.vmm.ovmf_image import OvmfLayout, make_image
from sevlaunch.vmm.port import PlatformInfo
from sevlaunch.vmm.sev import SevGuestConfig
from tests.vmm.conftest import PROFILE, run_async
from tests.vmm.test_sev import InMemoryPlatform

FIRMWARE = make_image(64 * 1024, seed=b"test_es")
ROME = PROFILES[PROFILE]


class HostAwarePlatform(InMemoryPlatform):
    """The in-memory platform, also naming the host's CPU model (for ``-cpu host``)."""

    async def info(self) -> PlatformInfo:
        return replace(await super().info(), host_cpu_model="EPYC-Rome")


@dataclass
class EsRig:
    """A fresh rome platform (SEV-ES initialised or not) and an owner session for it."""

    identity: bytes
    tmp: Path
    es_platform: bool = True
    policy: int = 0x5
    events: list[tuple[str, Any]] = field(default_factory=list)
    keys: TransportKeys | None = None

    def machine(self, firmware: bytes = FIRMWARE, **spec: Any) -> Machine:
        fw = Firmware(ROME, state=self.identity)
        fw.init(es=self.es_platform)
        pdh, chain = fw.pdh_cert_export()
        verified = verify_pdh_and_chain(
            pdh, chain, trust_store([fw.ark()]), ca=fw.ca_chain(), cek=fw.signed_cek()
        )
        launch = make_session(verified, self.policy, rng=os.urandom)
        self.keys = launch.keys
        path = self.tmp / "OVMF.fd"
        path.write_bytes(firmware)
        sev = SevGuestConfig(
            cbitpos=ROME.cbitpos,
            reduced_phys_bits=1,
            policy=self.policy,
            dh_cert_b64=launch.godh_b64.encode(),
            session_b64=launch.session_b64.encode(),
            legacy_vm_type=spec.pop("legacy_vm_type", "auto"),
        )
        machine_spec = MachineSpec(name="es", memory=64 << 20, firmware=path, sev=sev, **spec)
        platform = HostAwarePlatform(fw, es=self.es_platform)
        return Machine(machine_spec, platform, lambda n, d: self.events.append((n, d)), print)

    def check(self, machine: Machine, es: EsVmsas) -> None:
        """The measurement validates against the owner's digest for ``es``."""
        assert machine.sev is not None
        assert self.keys is not None
        firmware = measure_firmware(FIRMWARE)
        digest = firmware.digest(vmsas=es_pages(firmware, es))
        info = launch_info(
            machine.sev.launch_measure(),
            api_major=ROME.api_major,
            api_minor=ROME.api_minor,
            build_id=ROME.build_id,
            policy=self.policy,
        )
        validate(info, digest, self.keys.tik)


@pytest.fixture
def rig(rome_identity: bytes, tmp_path: Path) -> EsRig:
    return EsRig(rome_identity, tmp_path)


def run(body: Callable[[], Awaitable[None]]) -> None:
    run_async(body)


@pytest.mark.parametrize(
    ("cpu_model", "vcpus", "legacy_vm_type", "owner"),
    [
        ("EPYC-Milan", 4, "auto", EsVmsas(4, cpu=vcpu_type(name="EPYC-Milan"))),
        ("EPYC-Rome-v2,+ibpb", 2, "on", EsVmsas(2, cpu=vcpu_type(name="EPYC-Rome"))),
        ("EPYC-Genoa", 3, "off", EsVmsas(3, cpu=vcpu_type(name="EPYC-Genoa"), legacy=False)),
        ("EPYC,family=25,model=1,stepping=1", 1, "on", EsVmsas(1, cpu=vcpu_type(sig=0xA00F11))),
        ("host", 2, "auto", EsVmsas(2, cpu=vcpu_type(name="EPYC-Rome"))),
        ("qemu64", 2, "auto", EsVmsas(2, cpu=VcpuType(QEMU_CPU_MODELS["qemu64"], "qemu64"))),
    ],
    ids=["milan-4", "rome-2-features", "genoa-init2", "properties", "host", "default-cpu"],
)
def test_the_vmm_measures_the_vmsas_the_owner_builds(
    rig: EsRig, cpu_model: str, vcpus: int, legacy_vm_type: str, owner: EsVmsas
) -> None:
    async def body() -> None:
        machine = rig.machine(cpu_model=cpu_model, vcpus=vcpus, legacy_vm_type=legacy_vm_type)
        await machine.init()
        assert machine.sev is not None
        rig.check(machine, owner)  # raises on a mismatch
        assert len(machine.sev.vmsas) == vcpus
        built = es_pages(measure_firmware(FIRMWARE), owner)
        assert all(c != p for c, p in zip(machine.sev.vmsas, built, strict=True))  # encrypted

    run(body)


def test_vmsas_change_the_measurement(rig: EsRig) -> None:
    async def body() -> None:
        machine = rig.machine(cpu_model="EPYC-Milan", vcpus=2)
        await machine.init()
        with pytest.raises(Exception, match="does not match"):
            rig.check(machine, EsVmsas(2, cpu=vcpu_type(name="EPYC-Milan"), legacy=False))

    run(body)


def test_query_sev_reports_sev_type_sev_with_the_es_bit(rig: EsRig) -> None:
    async def body() -> None:
        machine = rig.machine(cpu_model="EPYC-Rome", vcpus=2)
        await machine.init()
        info = machine.query_sev()
        assert (info["sev-type"], info["policy"], info["state"]) == ("sev", 0x5, "launch-secret")
        assert info["policy"] & 0x4

    run(body)


def test_an_es_policy_on_a_platform_without_es_fails_as_qemu_does(
    rome_identity: bytes, tmp_path: Path
) -> None:
    rig = EsRig(rome_identity, tmp_path, es_platform=False)

    async def body() -> None:
        machine = rig.machine(cpu_model="EPYC-Rome", vcpus=2)
        with pytest.raises(VmmError) as err:
            await machine.init()
        assert str(err.value) == (
            "sev_common_kvm_init: guest policy requires SEV-ES, but host SEV-ES support unavailable"
        )

    run(body)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (None, "SEV information block/Firmware GUID Table block not found in pflash rom"),
        (0, "SEV-ES reset address is zero"),
    ],
)
def test_an_es_guest_needs_the_firmwares_reset_block(
    rig: EsRig, address: int | None, message: str
) -> None:
    image = make_image(64 * 1024, layout=OvmfLayout(sev_es_reset_address=address))

    async def body() -> None:
        machine = rig.machine(firmware=image, cpu_model="EPYC-Rome", vcpus=1)
        with pytest.raises(VmmError, match=message):
            await machine.init()

    run(body)


def test_an_unknown_cpu_model_cannot_make_vmsas(rig: EsRig) -> None:
    async def body() -> None:
        machine = rig.machine(cpu_model="Skylake-Server", vcpus=1)
        with pytest.raises(VmmError, match="unknown QEMU CPU model 'Skylake-Server'"):
            await machine.init()

    run(body)


def test_a_plain_sev_guest_gets_no_vmsas(rig: EsRig) -> None:
    rig.policy = 0x1

    async def body() -> None:
        machine = rig.machine(cpu_model="Skylake-Server", vcpus=4)
        await machine.init()
        assert machine.sev is not None
        assert machine.sev.vmsas == []

    run(body)


def test_command_line_reaches_the_machine_spec(tmp_path: Path) -> None:
    obj = {
        "qom-type": "sev-guest", "id": "lsec0", "cbitpos": 47, "reduced-phys-bits": 1,
        "policy": 5, "legacy-vm-type": "off",
    }  # fmt: skip
    config = parse_cmdline(
        [
            "-machine", "q35,confidential-guest-support=lsec0", "-object", json.dumps(obj),
            "-bios", str(tmp_path / "OVMF.fd"), "-smp", "4,sockets=4,cores=1,threads=1",
            "-cpu", "EPYC-Milan",
        ]
    )  # fmt: skip
    spec = machine_spec(config)
    assert (spec.vcpus, spec.cpu_model) == (4, "EPYC-Milan")
    assert spec.sev is not None
    assert spec.sev.es
    assert not spec.sev.legacy
    no_cpu = machine_spec(replace(config, cpu_model=None))
    assert no_cpu.cpu_model == "qemu64"
