"""Fixtures for the host manager tests: an emulated platform service, guest-owner files made by
``sevlaunch owner``, firmware and disk images, and host manager daemons run as subprocesses.

Every process a test starts is ended by its pid at teardown; guests (hypervisor processes)
are found by their argv, which names the state directory of the manager that started them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from sevlaunch._files import write_atomic
from sevlaunch.cli import cli
from sevlaunch.crypto.disk import DiskContents, seal
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.orchestrate.services import Service, start_service
from sevlaunch.owner.measurement import decode_measurement
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.platform.state import STATE_FILE
from sevlaunch.vmm.ovmf_image import make_image
from tests.platform.templates import template_state

BIN = Path(sys.executable).parent
SEVLAUNCH = str(BIN / "sevlaunch")
VMM = str(BIN / "sevlaunch-vmm")
DISK_PASSPHRASE = b"correct horse battery staple"
DISK_LABEL = "sevlaunch-rootfs"
LUKS_KEY_GUID = "736869e5-84f0-4973-92ec-06879ce3da0b"


def env() -> dict[str, str]:
    """The subprocess environment: our virtualenv's scripts first, no SEVLAUNCH_HOST leak."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("SEVLAUNCH_")}
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    return out


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def pids_naming(text: str) -> list[int]:
    """Live processes whose argv contains ``text`` (our guests: their argv names the run dir)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in argv and status != "Z":
            found.append(int(entry.name))
    return found


def reap(text: str) -> None:
    """End, by pid, every process this test run started whose argv contains ``text``: SIGTERM
    first (a hypervisor then frees its SEV context on the platform), SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_naming(text):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids_naming(text) and time.monotonic() < deadline:
            time.sleep(0.02)


def secret_packet(owner: OwnerFiles, measurement: str, value: bytes) -> dict[str, str]:
    """The body of a launch-security PUT: a luks-key secret for a validated measurement."""
    keys = TransportKeys(owner.tek.read_bytes(), owner.tik.read_bytes())
    packet = build_packet(
        secret_table([("luks-key", value)]), keys, decode_measurement(measurement), rng=os.urandom
    )
    return {"sev-secret-header": packet.header_b64, "sev-secret": packet.payload_b64}


@pytest.fixture(scope="session")
def short_root() -> Iterator[Path]:
    """A short directory: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sevh-", dir="/tmp"))
    yield path
    reap(str(path))
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def short_dir(short_root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=short_root))


@dataclass
class Platform:
    socket: Path
    chain: Path
    ark: Path
    root: Path
    service: Service

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.service.process


@pytest.fixture(scope="session")
def platform(short_root: Path) -> Iterator[Platform]:
    """One emulated platform service (a copy of the generated milan template) for the run."""
    root = short_root / "platform"
    state = root / "state"
    state.mkdir(parents=True, mode=0o700)
    (state / STATE_FILE).write_bytes(template_state())
    (state / STATE_FILE).chmod(0o600)
    sock = root / "plat.sock"
    service = start_service(
        "platform",
        [SEVLAUNCH, "platform", "serve", "--state", str(state), "--listen", str(sock)],
        log=root / "platform.log",
        ready=sock,
        connect=True,
        env=env(),
    )
    chain, ark = root / "chain", root / "ark"
    run_cli("platform", "export", "--platform", str(sock), "--out", str(chain), "--full")
    run_cli("platform", "export-root", "--platform", str(sock), "--out", str(ark))
    yield Platform(sock, chain, ark, root, service)
    service.stop(10)


def run_cli(*args: str) -> str:
    """An in-process ``sevlaunch`` command (owner and platform tools); fails the test on error."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class OwnerFiles:
    godh: Path
    session: Path
    tek: Path
    tik: Path


def owner_session(
    platform: Platform, out: Path, name: str = "vm", policy: str = "0x1"
) -> OwnerFiles:
    """A fresh launch session from ``sevlaunch owner session`` (one per launch attempt)."""
    out.mkdir(parents=True, exist_ok=True)
    run_cli(
        "owner", "session", "--chain", str(platform.chain), "--trust-root", str(platform.ark),
        "--policy", policy, "--name", name, "--out", str(out),
    )  # fmt: skip
    return OwnerFiles(
        out / f"{name}_godh.b64", out / f"{name}_session.b64", out / f"{name}_tek.bin",
        out / f"{name}_tik.bin",
    )  # fmt: skip


@dataclass(frozen=True)
class Media:
    firmware: Path
    small_firmware: Path
    kernel: Path
    initrd: Path
    disk: Path
    luks_key: Path
    cmdline: str = "console=ttyS0 root=/dev/vda"


@pytest.fixture(scope="session")
def media(short_root: Path) -> Media:
    root = short_root / "media"
    root.mkdir()
    firmware, small = root / "OVMF.fd", root / "OVMF-1M.fd"
    firmware.write_bytes(make_image(4 << 20))
    small.write_bytes(make_image(1 << 20, seed=b"small"))
    (root / "vmlinuz").write_bytes(b"\x7fkernel image " * 64)
    (root / "initrd.img").write_bytes(b"initrd " * 64)
    disk = root / "disk.img"
    disk.write_bytes(
        seal(
            DISK_PASSPHRASE,
            DiskContents(DISK_LABEL, b"root filesystem"),
            salt=bytes(range(16)),
            nonce=bytes(range(12)),
            scrypt_log2_n=10,
        )
    )
    (root / "luks.key").write_bytes(DISK_PASSPHRASE)
    return Media(firmware, small, root / "vmlinuz", root / "initrd.img", disk, root / "luks.key")


def sev_domain_xml(
    name: str,
    media: Media,
    owner: OwnerFiles | None,
    *,
    kernel: bool = True,
    disk: bool = True,
    small: bool = False,
    virt: str = "kvm",
    secrets: tuple[str, str] | None = None,
    geometry: bool = True,
) -> str:
    """libvirt domain XML for an SEV guest; ``owner=None`` makes a domain without SEV and
    ``secrets`` names stored secrets (dhCert, session) instead of inline blobs."""
    firmware = media.small_firmware if small else media.firmware
    boot = (
        f"<kernel>{media.kernel}</kernel><initrd>{media.initrd}</initrd>"
        f"<cmdline>{media.cmdline}</cmdline>"
        if kernel
        else ""
    )
    disks = (
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{media.disk}'/><target dev='vda' bus='virtio'/></disk>"
        if disk
        else ""
    )
    metadata = ""
    blobs = ""
    if secrets is not None:
        metadata = (
            "<metadata><sevlaunch:launchSecurity "
            "xmlns:sevlaunch='https://sevlaunch.dev/xmlns/domain/1'>"
            f"<sevlaunch:dhCertSecret uuid='{secrets[0]}'/>"
            f"<sevlaunch:sessionSecret uuid='{secrets[1]}'/>"
            "</sevlaunch:launchSecurity></metadata>"
        )
    elif owner is not None:
        blobs = (
            f"<dhCert>{owner.godh.read_text().strip()}</dhCert>"
            f"<session>{owner.session.read_text().strip()}</session>"
        )
    sev = ""
    if owner is not None or secrets is not None:
        where = "<cbitpos>51</cbitpos><reducedPhysBits>1</reducedPhysBits>" if geometry else ""
        sev = (
            f"<launchSecurity type='sev' kernelHashes='{'yes' if kernel else 'no'}'>"
            f"{where}<policy>0x0001</policy>{blobs}</launchSecurity>"
        )
    return (
        f"<domain type='{virt}'><name>{name}</name>{metadata}"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='q35'>hvm</type>"
        f"<loader readonly='yes' type='rom'>{firmware}</loader>{boot}</os>"
        f"<devices>{disks}</devices>{sev}</domain>"
    )


@dataclass
class Daemon:
    """A ``sevlaunch host serve`` subprocess."""

    state: Path
    uri: str
    argv: list[str]
    token: str | None = None
    log: Path = field(init=False)
    service: Service | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.log = self.state.parent / f"{self.state.name}.log"

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self.service is None:
            raise AssertionError("the host daemon was not started")
        return self.service.process

    def client(self, timeout: float = 60.0) -> httpx.Client:
        if self.uri.startswith("unix:"):
            transport = httpx.HTTPTransport(uds=self.uri[5:])
            return httpx.Client(base_url="http://host", transport=transport, timeout=timeout)
        host, _, port = self.uri[4:].rpartition(":")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=f"http://{host}:{port}", headers=headers, timeout=timeout)

    def host(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``sevlaunch host ARGS --connect URI`` as a subprocess."""
        command = [SEVLAUNCH, "host", args[0], "--connect", self.uri, *args[1:]]
        result = subprocess.run(
            command, capture_output=True, text=True, env=env(), timeout=120, check=False
        )
        if check:
            assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result

    def start(self) -> Daemon:
        """Start ``host serve`` through the one harness, ready once its API answers."""
        self.service = start_service(
            "host", self.argv, log=self.log, until=lambda _s: self._answers(), env=env()
        )
        return self

    def _answers(self) -> bool:
        try:
            with self.client(5) as c:
                return c.get("/v1/domains").status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        if self.service is not None:
            self.service.stop(10, kill=True)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(15)

    def restart(self) -> None:
        self.stop()
        self.start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _daemons(short_root: Path) -> Iterator[Callable[..., Daemon]]:
    """Start host daemons; on leaving, guests are destroyed and every daemon stopped."""
    daemons: list[Daemon] = []

    def start(
        *, platform: Platform | None = None, qemu: str = VMM, tcp: bool = False, name: str = "host"
    ) -> Daemon:
        state = Path(tempfile.mkdtemp(prefix=name + "-", dir=short_root))
        argv = [SEVLAUNCH, "host", "serve", "--state", str(state), "--qemu", qemu]
        if platform is not None:
            argv += ["--platform", str(platform.socket)]
        token = None
        if tcp:
            token = "s3cret-token"
            token_file = write_atomic(state.parent / f"{state.name}.token", token.encode())
            uri = f"tcp:127.0.0.1:{free_port()}"
            argv += ["--listen", uri, "--host-token-file", str(token_file)]
        else:
            uri = f"unix:{state / 'host.sock'}"
            argv += ["--listen", uri]
        daemon = Daemon(state, uri, argv, token)
        daemons.append(daemon)
        return daemon.start()

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.stop()
            reap(str(daemon.state))


@pytest.fixture
def start_daemon(short_root: Path) -> Iterator[Callable[..., Daemon]]:
    """Start host daemons for one test."""
    with _daemons(short_root) as start:
        yield start


@pytest.fixture(scope="module")
def module_daemon(short_root: Path, platform: Platform) -> Iterator[Daemon]:
    """One host daemon on the shared platform for a module's tests that only define domains
    (starting one costs seconds); each test leaves it without domains."""
    with _daemons(short_root) as start:
        yield start(platform=platform)
