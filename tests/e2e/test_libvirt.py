"""Debian's libvirt drives sevlaunch-vmm on the emulated platform: domain capabilities, an
attested launch with virsh and the owner tools alone, and libvirt's own validator online.

Each test uses only what a person would: ``virsh``, ``sevlaunch owner ...`` and
``virt-qemu-sev-validate``, against the tests' libvirtd (:mod:`tests.libvirtd`).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.firmware import PROFILES
from sevlaunch.orchestrate.demo import CMDLINE, DISK_LABEL, Artifacts, make_artifacts
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.libvirt_setup import Layout, cache_entries
from tests.libvirtd import PROFILE, SEVLAUNCH, VMM, WAIT, Libvirtd, running_libvirtd

VALIDATOR = Path("/usr/bin/virt-qemu-sev-validate")  # Debian: libvirt-clients-qemu


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[Libvirtd]:
    with running_libvirtd() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def art(libvirtd: Libvirtd) -> Artifacts:
    return make_artifacts(libvirtd.root / "media")


@dataclass(frozen=True)
class OwnerFiles:
    """What the guest owner keeps and hands over for one launch (sevlaunch owner session)."""

    godh: Path
    session: Path
    tik: Path
    tek: Path


def domain_xml(libvirtd: Libvirtd, name: str, art: Artifacts, owner: OwnerFiles | None) -> str:
    """A q35 SEV guest with measured direct boot, a virtio disk and a serial file, as a person
    would write it for libvirt; the VMM is the ``<emulator>``."""
    virt = domain_type(libvirtd)
    blobs = (
        f"<dhCert>{owner.godh.read_text().strip()}</dhCert>"
        f"<session>{owner.session.read_text().strip()}</session>"
        if owner
        else ""
    )
    return f"""<domain type='{virt}'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='rom'>{art.firmware}</loader>
    <kernel>{art.kernel}</kernel>
    <initrd>{art.initrd}</initrd>
    <cmdline>{CMDLINE}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>{VMM}</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{art.disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='{console_path(libvirtd, name)}'/></serial>
  </devices>
  <launchSecurity type='sev' kernelHashes='yes'>
    <policy>0x0001</policy>{blobs}
  </launchSecurity>
</domain>
"""


def console_path(libvirtd: Libvirtd, name: str) -> Path:
    return libvirtd.root / f"{name}.console"


def domain_type(libvirtd: Libvirtd) -> str:
    """kvm when the VMM's query-kvm says KVM works for libvirt's qemu user, else qemu."""
    caps = etree.fromstring(libvirtd.virsh("domcapabilities", "--emulatorbin", str(VMM)).stdout)
    return str(caps.findtext("domain"))


def node_chain(libvirtd: Libvirtd, out: Path) -> Path:
    """``virsh nodesevinfo``'s PDH and cert-chain as a chain file (PDH ‖ PEK ‖ OCA ‖ CEK)."""
    fields = _fields(libvirtd.virsh("nodesevinfo").stdout)
    chain = out / "chain"
    chain.write_bytes(base64.b64decode(fields["pdh"]) + base64.b64decode(fields["cert-chain"]))
    return chain


def owner_session(libvirtd: Libvirtd, out: Path, name: str) -> OwnerFiles:
    """The owner verifies the host's chain (with AMD's signed CEK and CA, from the platform's
    key-server counterpart) and makes a session, with sevlaunch's CLI."""
    chain = node_chain(libvirtd, out)
    with PlatformClient(libvirtd.platform_socket) as platform:
        (out / "cek").write_bytes(platform.signed_cek())
        (out / "ca").write_bytes(platform.ca_chain())
        (out / "ark").write_bytes(platform.ark())
    sevlaunch(
        "owner", "session", "--chain", str(chain), "--cek", str(out / "cek"), "--ca",
        str(out / "ca"), "--trust-root", str(out / "ark"), "--policy", "0x1", "--name", name,
        "--out", str(out),
    )  # fmt: skip
    return OwnerFiles(
        out / f"{name}_godh.b64", out / f"{name}_session.b64", out / f"{name}_tik.bin",
        out / f"{name}_tek.bin",
    )  # fmt: skip


def sevlaunch(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [SEVLAUNCH, *args], capture_output=True, text=True, timeout=WAIT, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"sevlaunch {' '.join(args)}: {done.stdout}{done.stderr}")
    return done


def _fields(out: str) -> dict[str, str]:
    """virsh's ``%-15s: %s`` lines (nodesevinfo, domlaunchsecinfo) as a dict."""
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def launch_security(libvirtd: Libvirtd, name: str) -> dict[str, str]:
    return _fields(libvirtd.virsh("domlaunchsecinfo", name).stdout)


def wait_console(libvirtd: Libvirtd, name: str, text: str) -> str:
    path = console_path(libvirtd, name)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        seen = path.read_text() if path.exists() else ""
        if text in seen or "halting" in seen:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{name}'s console never showed {text!r}: {path.read_text()!r}")


def define_and_start_paused(libvirtd: Libvirtd, name: str, xml: str) -> None:
    path = libvirtd.root / f"{name}.xml"
    path.write_text(xml)
    libvirtd.virsh("define", str(path))
    libvirtd.virsh("start", "--paused", name)
    assert libvirtd.virsh("domstate", name).stdout.strip() == "paused"


# ---- the tests ------------------------------------------------------------------------------


def test_domcapabilities_show_sev_with_the_emulated_cbitpos(libvirtd: Libvirtd) -> None:
    caps = etree.fromstring(libvirtd.virsh("domcapabilities", "--emulatorbin", str(VMM)).stdout)
    sev = caps.find("features/sev")
    assert sev is not None
    assert sev.get("supported") == "yes"
    assert int(str(sev.findtext("cbitpos"))) == PROFILES[PROFILE].cbitpos
    assert sev.findtext("reducedPhysBits") == "1"
    # nodesevinfo asks the default emulator: the tests' libvirtd finds the VMM first on PATH
    info = libvirtd.virsh("nodesevinfo").stdout
    assert re.search(rf"cbitpos\s*: {PROFILES[PROFILE].cbitpos}\b", info), info
    assert re.search(r"cpu0-id\s*: \S+", info)


def test_an_attested_launch_with_virsh_and_the_owner_tools(
    libvirtd: Libvirtd, art: Artifacts, tmp_path: Path
) -> None:
    """The kbase workflow: nodesevinfo, owner session, define with the blobs, start paused,
    domlaunchsecinfo, owner validate, owner secret, domsetlaunchsecstate, resume."""
    name = "sevlv-virsh"
    owner = owner_session(libvirtd, tmp_path, name)
    define_and_start_paused(libvirtd, name, domain_xml(libvirtd, name, art, owner))
    info = launch_security(libvirtd, name)
    assert info["sev-policy"] == "1"
    sevlaunch(
        "owner", "validate", "--measurement", info["sev-measurement"], "--api-major",
        info["sev-api-major"], "--api-minor", info["sev-api-minor"], "--build-id",
        info["sev-build-id"], "--policy", info["sev-policy"], "--tik", str(owner.tik),
        "--tek", str(owner.tek), "-f", str(art.firmware), "-k", str(art.kernel), "-r",
        str(art.initrd), "-e", CMDLINE,
    )  # fmt: skip
    header, payload = tmp_path / "secret.header", tmp_path / "secret.payload"
    sevlaunch(
        "owner", "secret", "--tek", str(owner.tek), "--tik", str(owner.tik), "--measurement",
        info["sev-measurement"], "--secret", f"luks-key:{art.passphrase}", "--header-out",
        str(header), "--payload-out", str(payload),
    )  # fmt: skip
    libvirtd.virsh(
        "domsetlaunchsecstate", name, "--secrethdr", str(header), "--secret", str(payload)
    )
    libvirtd.virsh("resume", name)
    console = wait_console(libvirtd, name, f"disk label '{DISK_LABEL}'")
    assert "BlobVerifierSevHashes: kernel hash ok" in console
    libvirtd.virsh("destroy", name)


@pytest.mark.skipif(
    not VALIDATOR.exists() or shutil.which("python3", path="/usr/bin") is None,
    reason="virt-qemu-sev-validate is in Debian's libvirt-clients-qemu (with python3-libvirt, "
    "python3-lxml, python3-cryptography); not installed",
)
def test_libvirts_validator_online_accepts_the_right_firmware_only(
    libvirtd: Libvirtd, art: Artifacts, tmp_path: Path
) -> None:
    """virt-qemu-sev-validate reads the measurement through libvirt, refuses the tampered
    firmware (exit 1, the domain stays paused) and, for the right one, injects the secret and
    resumes the domain itself."""
    name = "sevlv-validate"
    owner = owner_session(libvirtd, tmp_path, name)
    define_and_start_paused(libvirtd, name, domain_xml(libvirtd, name, art, owner))

    def validate(firmware: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        # its #! is /usr/bin/env python3: run Debian's Python, which has python3-libvirt
        return subprocess.run(
            [
                "/usr/bin/python3", str(VALIDATOR), "--connect", libvirtd.uri, "--domain", name,
                "--insecure", "--firmware", str(firmware), "--kernel", str(art.kernel),
                "--initrd", str(art.initrd), "--cmdline", CMDLINE, "--tik", str(owner.tik),
                "--tek", str(owner.tek), *extra,
            ],
            capture_output=True, text=True, timeout=WAIT, check=False,
        )  # fmt: skip

    wrong = validate(art.tampered)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "Measurement does not match" in wrong.stdout + wrong.stderr
    assert libvirtd.virsh("domstate", name).stdout.strip() == "paused"
    right = validate(art.firmware, "--inject-secret", f"luks-key:{art.passphrase}")
    assert right.returncode == 0, right.stdout + right.stderr
    assert "OK: Looks good to me" in right.stdout + right.stderr
    assert f"disk label '{DISK_LABEL}'" in wait_console(libvirtd, name, DISK_LABEL)
    assert libvirtd.virsh("domstate", name).stdout.strip() == "running"
    libvirtd.virsh("destroy", name)


def test_a_paused_domain_survives_a_libvirtd_restart(libvirtd: Libvirtd, art: Artifacts) -> None:
    """libvirtd reconnects to the running VMM (qemuProcessReconnect's QMP) and still reads
    the measurement; the domain is neither killed nor forgotten."""
    name = "sevlv-restart"
    define_and_start_paused(libvirtd, name, domain_xml(libvirtd, name, art, None))
    before = launch_security(libvirtd, name)["sev-measurement"]
    assert "cpu0-id" in _fields(libvirtd.virsh("nodesevinfo").stdout)
    libvirtd.restart()
    assert libvirtd.virsh("domstate", name).stdout.strip() == "paused"
    assert launch_security(libvirtd, name)["sev-measurement"] == before
    # where libvirt differs from sevlaunch's host (whose node info keeps cpu0-id): 9.0 writes
    # <cpu0Id> to its capability cache and never reads it back (virQEMUCapsParseSEVInfo), so
    # a restart that reloads the cache instead of probing again loses it; a probe restores it
    default = libvirtd.bindir / "qemu-system-x86_64"  # what nodesevinfo asks
    (cache,) = cache_entries(Layout(), [default])
    assert "<cpu0Id>" in cache.read_text()  # written, never read back
    if "cpu0-id" not in _fields(libvirtd.virsh("nodesevinfo").stdout):
        libvirtd.reprobe()
    assert "cpu0-id" in _fields(libvirtd.virsh("nodesevinfo").stdout)
    libvirtd.virsh("resume", name)
    wait_console(libvirtd, name, "Linux: boot complete")
    libvirtd.virsh("destroy", name)
