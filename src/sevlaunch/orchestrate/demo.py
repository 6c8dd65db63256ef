"""``sevlaunch demo``: a whole attested launch on an embedded emulated host, then a tampered
one that must be refused.

The guest owner registers a workload with the broker (the expected launch digest of a
firmware, kernel, initrd and command line, and a disk passphrase as its secret); the VM tool
launches guests on the host manager; each guest unlocks its encrypted disk with the secret
only the attested launch received. Then the firmware is tampered with and the launch must
fail at the measurement check, with the domain destroyed.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sevlaunch._files import write_atomic
from sevlaunch.crypto.disk import DiskContents, seal
from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate.host_port import RECONNECT
from sevlaunch.orchestrate.launch import (
    LAUNCHERS,
    PARALLEL_STARTS,
    Launcher,
    LaunchResult,
    Observer,
)
from sevlaunch.orchestrate.owner_port import BrokerOwner
from sevlaunch.orchestrate.services import Stack, firmware_image

DISK_LABEL = "sevlaunch-demo-root"
CMDLINE = "console=ttyS0 root=/dev/vda ro"
WORKLOAD = "demo"
POLICY = 0x1  # NODBG


@dataclass(frozen=True)
class Artifacts:
    firmware: Path
    tampered: Path
    kernel: Path
    initrd: Path
    disk: Path
    passphrase: Path


def make_artifacts(directory: Path, image: bytes | None = None) -> Artifacts:
    """A firmware (``image``, by default a 4 MiB AmdSev-like one) and its copy with one bit
    flipped, a kernel and initrd, and a disk sealed under a passphrase."""
    directory.mkdir(parents=True, exist_ok=True)
    image = image if image is not None else firmware_image(4 << 20, seed=b"sevlaunch demo")
    firmware = directory / "OVMF.amdsev.fd"
    firmware.write_bytes(image)
    tampered = directory / "OVMF.tampered.fd"
    evil = bytearray(image)
    evil[0x1000] ^= 0x01  # one bit in the firmware volume
    tampered.write_bytes(bytes(evil))
    kernel = directory / "vmlinuz"
    kernel.write_bytes(b"MZ" + secrets.token_bytes(64 << 10))
    initrd = directory / "initrd.img"
    initrd.write_bytes(secrets.token_bytes(32 << 10))
    passphrase = directory / "disk.passphrase"
    write_atomic(passphrase, secrets.token_urlsafe(24).encode())
    disk = directory / "root.img"
    disk.write_bytes(
        seal(
            passphrase.read_bytes(),
            DiskContents(DISK_LABEL, b"the guest's data"),
            salt=secrets.token_bytes(16),
            nonce=secrets.token_bytes(12),
        )
    )
    return Artifacts(firmware, tampered, kernel, initrd, disk, passphrase)


@dataclass(frozen=True)
class GuestShape:
    """Policy and vCPUs of the demo's guests; SEV-ES guests measure a VMSA per vCPU."""

    policy: int = POLICY
    vcpus: int = 1
    cpu_model: str | None = None

    @classmethod
    def es(cls, vcpus: int = 2, cpu_model: str = "EPYC-Rome") -> GuestShape:
        return cls(POLICY | 0x4, vcpus, cpu_model)

    @property
    def is_es(self) -> bool:
        return bool(self.policy & 0x4)


def expected_digest(art: Artifacts, shape: GuestShape) -> bytes:
    """The launch digest the owner expects: firmware, kernel hashes and, for SEV-ES, VMSAs."""
    from sevlaunch.owner.launch_digest import measure_direct_boot, measure_firmware

    with art.firmware.open("rb") as fw:
        measured = measure_firmware(fw)
    with art.kernel.open("rb") as kernel, art.initrd.open("rb") as initrd:
        boot = measure_direct_boot(kernel, initrd, CMDLINE)
    pages: tuple[bytes, ...] = ()
    if shape.is_es:
        from sevlaunch.owner.vmsa import EsVmsas, es_pages, vcpu_type

        cpu = vcpu_type(name=shape.cpu_model or "qemu64")
        pages = es_pages(measured, EsVmsas(shape.vcpus, cpu=cpu))
    return measured.digest(boot.hashes(), pages)


def domain_xml(name: str, art: Artifacts, firmware: Path, shape: GuestShape | None = None) -> str:
    shape = shape or GuestShape()
    cpu = (
        f"\n  <cpu mode='custom'><model>{shape.cpu_model}</model></cpu>" if shape.cpu_model else ""
    )
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>{shape.vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='rom'>{firmware}</loader>
    <kernel>{art.kernel}</kernel>
    <initrd>{art.initrd}</initrd>
    <cmdline>{CMDLINE}</cmdline>
  </os>{cpu}
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{art.disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
  <launchSecurity type='sev' kernelHashes='yes'>
    <policy>0x{shape.policy:04x}</policy>
  </launchSecurity>
</domain>
"""


def register_workload(stack: Stack, art: Artifacts, shape: GuestShape | None = None) -> str:
    """The guest owner's setup: trust the emulated root, register the workload and its secret."""
    from sevlaunch.broker.client import BrokerClient

    shape = shape or GuestShape()
    ca = stack.ca_chain()
    digest = expected_digest(art, shape)
    with BrokerClient(stack.broker_url, stack.owner_token.read_bytes().strip()) as broker:
        broker.add_root(ca, name="emulated")
        secrets_ = {"luks-key": art.passphrase.read_bytes()}
        broker.add_workload(WORKLOAD, [shape.policy], [digest], secrets=secrets_)
    return digest.hex()


@dataclass
class DemoOutcome:
    launches: list[LaunchResult] = field(default_factory=list)
    tampered: LaunchResult | None = None

    @property
    def ok(self) -> bool:
        good = bool(self.launches) and all(
            r.ok and f"disk label '{DISK_LABEL}'" in r.console for r in self.launches
        )
        refused = (
            self.tampered is not None and not self.tampered.ok and self.tampered.failed_step == 11
        )
        return good and refused


def run_launches(
    stack: Stack,
    art: Artifacts,
    names: list[str],
    firmware: Path,
    observer: Observer,
    shape: GuestShape | None = None,
) -> list[LaunchResult]:
    token = stack.launcher_token.read_bytes().strip()
    gate = threading.Semaphore(PARALLEL_STARTS)

    def one(name: str) -> LaunchResult:
        owner = BrokerOwner(stack.broker_url, token, WORKLOAD)
        with HostClient(
            stack.host_uri, token=stack.host_token_value(), reconnect=RECONNECT
        ) as host:
            return Launcher(
                host,
                owner,
                domain_xml(name, art, firmware, shape),
                observer=observer,
                kds_url=stack.kds_url,
                start_gate=gate,
            ).run()

    with ThreadPoolExecutor(max_workers=min(len(names), LAUNCHERS)) as pool:
        return list(pool.map(one, names))


def destroy_all(stack: Stack) -> None:
    with HostClient(stack.host_uri, token=stack.host_token_value()) as host:
        for domain in host.list_domains():
            host.destroy(domain.name)


def dashboards(stack: Stack) -> list[str]:
    """Where a browser opens each dashboard and where its token is, for ``demo --keep``."""
    if stack.host_dashboard is None or stack.broker_dashboard is None:
        return []
    return [
        f"host manager dashboard: {stack.host_dashboard} (token: the file {stack.host_token})",
        f"broker dashboard: {stack.broker_dashboard} (owner token: the file {stack.owner_token})",
        f"export SEVLAUNCH_HOST_TOKEN_FILE={stack.host_token}",
    ]


Reporter = Callable[[str], None]
