"""``sevlaunch demo --snp``: SEV-SNP launches attested after boot, on an embedded Milan host.

The guest owner pins the emulated key server's ARK and registers an SNP workload with the
broker: the launch digest ``sevlaunch owner snp digest`` computes for the firmware, kernel,
initrd, command line and vCPUs, the policy, and the disk passphrase as its secret. The VM tool
launches the guest with nothing from the owner; after boot the guest asks the broker for a
nonce, has the AMD-SP sign a report binding it and a fresh key, and unlocks its disk with the
secret sealed to that key. Then a guest on tampered firmware must be refused (its report's
digest is not the workload's), and a guest of a workload that demands a newer TCB than this
platform's VCEK certifies must be refused too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate.demo import (
    CMDLINE,
    DISK_LABEL,
    Artifacts,
    GuestShape,
    domain_xml,
    make_artifacts,
)
from sevlaunch.orchestrate.services import Stack
from sevlaunch.orchestrate.snp_launch import SnpLauncher, SnpLaunchResult
from sevlaunch.protocol.snp import GuestAttestationConfig

WORKLOAD = "demo-snp"
#: A workload whose minimum reported TCB no emulated chip reaches (SNP SVN 255).
NEWER_TCB_WORKLOAD = "demo-snp-newer-tcb"
POLICY = 0x30000  # SMT allowed, reserved bit 17: QEMU's default, no debug, no migration agent
CPU_MODEL = "EPYC-Milan"
VCPUS = 1
PRODUCT = "Milan"


def make_snp_artifacts(directory: Path) -> Artifacts:
    """The demo's artifacts on an SNP-capable OVMF (SEV metadata with the SECRETS, CPUID and
    kernel-hashes pages)."""
    from sevlaunch.vmm.ovmf_image import AMDSEV_2024, make_image

    return make_artifacts(
        directory, make_image(2 << 20, seed=b"sevlaunch snp demo", layout=AMDSEV_2024)
    )


def expected_snp_digest(art: Artifacts) -> bytes:
    """What ``sevlaunch owner snp digest --vcpus 1 --vcpu-type EPYC-Milan`` prints."""
    from sevlaunch.owner.launch_digest import measure_direct_boot
    from sevlaunch.owner.snp.launch_digest import snp_launch_digest
    from sevlaunch.owner.vmsa import vcpu_type

    with art.kernel.open("rb") as kernel, art.initrd.open("rb") as initrd:
        boot = measure_direct_boot(kernel, initrd, CMDLINE)
    return snp_launch_digest(
        art.firmware.read_bytes(),
        vcpus=VCPUS,
        cpu=vcpu_type(name=CPU_MODEL).signature,
        hashes=boot.hashes(),
    )


def snp_domain_xml(name: str, art: Artifacts, firmware: Path) -> str:
    """The SEV demo's domain (direct boot, the sealed disk) as an SNP guest of EPYC-Milan."""
    sev = domain_xml(name, art, firmware, GuestShape(POLICY, VCPUS, CPU_MODEL))
    return (
        sev[: sev.index("  <launchSecurity")]
        + "  <launchSecurity type='sev-snp' kernelHashes='yes'>\n"
        + f"    <policy>0x{POLICY:08x}</policy>\n  </launchSecurity>\n</domain>\n"
    )


def register_snp_workloads(stack: Stack, art: Artifacts) -> str:
    """The guest owner's setup: pin the key server's ARK (its ``cert_chain``), register the
    workload and its secret, and one demanding a newer TCB."""
    import httpx

    from sevlaunch.broker.client import BrokerClient

    chain = httpx.get(f"{stack.kds_url}/vcek/v1/{PRODUCT}/cert_chain", timeout=30)
    chain.raise_for_status()
    digest = expected_snp_digest(art).hex()
    secret = {"luks-key": art.passphrase.read_bytes()}
    with BrokerClient(stack.broker_url, stack.owner_token.read_bytes().strip()) as broker:
        broker.add_snp_root(chain.content, name="emulated")
        body = {"digests": [digest], "policies": [POLICY]}
        broker.add_snp_workload({"name": WORKLOAD, **body}, secret)
        newer = {"name": NEWER_TCB_WORKLOAD, **body, "minTcb": {"snp": 255}}
        broker.add_snp_workload(newer, secret)
    return digest


def run_snp_launch(
    stack: Stack, art: Artifacts, name: str, firmware: Path, workload: str = WORKLOAD
) -> SnpLaunchResult:
    config = GuestAttestationConfig(stack.broker_url, workload)
    with HostClient(stack.host_uri, token=stack.host_token_value()) as host:
        return SnpLauncher(host, config, snp_domain_xml(name, art, firmware)).run()


@dataclass
class SnpDemoOutcome:
    launches: list[SnpLaunchResult] = field(default_factory=list)
    tampered: SnpLaunchResult | None = None
    old_tcb: SnpLaunchResult | None = None

    @property
    def ok(self) -> bool:
        good = bool(self.launches) and all(
            r.ok and f"disk label '{DISK_LABEL}'" in r.console for r in self.launches
        )
        return (
            good
            and _refused(self.tampered, "measurement-mismatch")
            and _refused(self.old_tcb, "tcb-too-old")
        )


def _refused(result: SnpLaunchResult | None, reason: str) -> bool:
    return result is not None and not result.ok and result.reason == reason
