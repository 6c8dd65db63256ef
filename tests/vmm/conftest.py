"""Fixtures for the hypervisor tests: one emulated platform, an owner, boot media, VMM processes.

A fresh platform costs two RSA-4096 key generations, so the rome platform state is generated
once per session and every platform service starts from a copy of it. Sockets live under
short ``/tmp`` paths (Unix socket paths are limited to 107 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sevlaunch.crypto.chain import VerifiedPlatform
from sevlaunch.crypto.disk import DiskContents, seal
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.firmware import PROFILES, Firmware
from sevlaunch.orchestrate.services import Service, cli, start_service
from sevlaunch.owner.session import make_session
from sevlaunch.owner.verify import trust_store, verify_chain_file
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.state import STATE_FILE, StoredState
from sevlaunch.vmm.ovmf_image import make_image

BIN = Path(sys.executable).parent
SEVLAUNCH = BIN / "sevlaunch"
VMM = BIN / "sevlaunch-vmm"
PROFILE = "rome"
CBITPOS = PROFILES[PROFILE].cbitpos
WAIT_LIMIT = 30.0  # a bound on waiting for a process, not an assertion about speed
LABEL = "rootfs-of-t1"
PASSPHRASE = b"correct horse battery staple"
CMDLINE = "console=ttyS0"

T = TypeVar("T")


def run_async(make: Callable[[], Awaitable[T]], timeout: float = WAIT_LIMIT) -> T:
    """Run one coroutine to completion, bounded so that a hang fails instead of blocking."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(bounded())


def short_tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# ---- the platform ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def rome_identity() -> bytes:
    """A factory-fresh rome chip's persistent firmware state, generated once per session."""
    return Firmware(PROFILES[PROFILE]).persistent_state()


@pytest.fixture(scope="session")
def rome_state(rome_identity: bytes) -> bytes:
    """That chip as a platform service's state file."""
    return StoredState(PROFILE, rome_identity).to_bytes()


@dataclass
class PlatformProcess:
    """``sevlaunch platform serve`` on a copy of the session's platform state."""

    root: Path
    service: Service | None = None

    @property
    def sock(self) -> Path:
        return self.root / "sev.sock"

    def start(self, state: bytes) -> PlatformProcess:
        state_dir = self.root / "state"
        state_dir.mkdir(mode=0o700)
        (state_dir / STATE_FILE).write_bytes(state)
        (state_dir / STATE_FILE).chmod(0o600)
        argv = cli("platform", "serve", "--state", str(state_dir), "--listen", str(self.sock))
        self.service = start_service(
            "platform", argv, log=self.root / "serve.log", ready=self.sock, connect=True,
            timeout=WAIT_LIMIT,
        )  # fmt: skip
        return self

    def client(self) -> PlatformClient:
        return PlatformClient(self.sock)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(WAIT_LIMIT, kill=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(rome_state: bytes) -> Iterator[PlatformProcess]:
    """One platform service subprocess shared by the session's VMMs (each has its own guest)."""
    running = PlatformProcess(short_tempdir("sevvmm-p-")).start(rome_state)
    yield running
    running.stop()


# ---- the guest owner -------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchFiles:
    """What ``sevlaunch owner session`` writes: the two base64 files and the kept keys."""

    godh: Path
    session: Path
    keys: TransportKeys
    policy: int


@dataclass(frozen=True)
class Owner:
    chain: Path
    ark: Path
    verified: VerifiedPlatform

    def session(self, out: Path, policy: int = 0x1, name: str = "vm") -> LaunchFiles:
        launch = make_session(self.verified, policy, rng=os.urandom)
        godh, sess = out / f"{name}_godh.b64", out / f"{name}_session.b64"
        godh.write_text(launch.godh_b64)
        sess.write_text(launch.session_b64)
        return LaunchFiles(godh, sess, launch.keys, policy)


@pytest.fixture(scope="session")
def owner(platform: PlatformProcess, tmp_path_factory: pytest.TempPathFactory) -> Owner:
    """The platform's full chain and emulated ARK, exported as the CLI does, and verified."""
    out = tmp_path_factory.mktemp("owner")
    chain, ark = out / "chain", out / "ark"
    subprocess.run(
        [SEVLAUNCH, "platform", "export", "--platform", platform.sock, "--out", chain, "--full"],
        check=True,
    )
    subprocess.run(
        [SEVLAUNCH, "platform", "export-root", "--platform", platform.sock, "--out", ark],
        check=True,
    )
    verified = verify_chain_file(chain.read_bytes(), trust_store([ark.read_bytes()]))
    return Owner(chain, ark, verified)


# ---- boot media ------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    firmware: Path
    kernel: Path
    initrd: Path
    disk: Path
    passphrase: Path
    firmware_bytes: bytes = field(repr=False)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """A 4 MiB synthetic OVMF, a kernel and initrd, and a disk sealed with PASSPHRASE."""
    out = tmp_path_factory.mktemp("media")
    image = make_image(4 << 20, seed=b"tests/vmm")
    paths = Media(
        out / "OVMF.fd",
        out / "vmlinuz",
        out / "initrd.img",
        out / "disk.img",
        out / "passphrase.txt",
        image,
    )
    paths.firmware.write_bytes(image)
    paths.kernel.write_bytes(b"\x7fELF pretend kernel " * 512)
    paths.initrd.write_bytes(b"070701 pretend initrd " * 256)
    paths.passphrase.write_bytes(PASSPHRASE)
    sealed = seal(
        PASSPHRASE,
        DiskContents(LABEL, b"filesystem " * 64),
        salt=bytes(range(16)),
        nonce=bytes(12),
        scrypt_log2_n=10,
    )
    paths.disk.write_bytes(sealed)
    return paths


# ---- VMM processes ---------------------------------------------------------------------


def sev_object(
    launch: LaunchFiles | None,
    *,
    policy: int | None = None,
    kernel_hashes: bool = True,
    cbitpos: int = CBITPOS,
) -> str:
    """The ``-object`` JSON that libvirt writes for an SEV guest."""
    import json

    obj: dict[str, Any] = {
        "qom-type": "sev-guest",
        "id": "lsec0",
        "cbitpos": cbitpos,
        "reduced-phys-bits": 1,
        "policy": policy if policy is not None else (launch.policy if launch else 1),
        "kernel-hashes": kernel_hashes,
    }
    if launch is not None:
        obj["dh-cert-file"] = str(launch.godh)
        obj["session-file"] = str(launch.session)
    return json.dumps(obj)


def vmm_argv(
    work: Path,
    media: Media,
    launch: LaunchFiles | None,
    *,
    kernel: Path | None = None,
    append: str = CMDLINE,
    extra: Sequence[str] = (),
    **object_args: Any,
) -> list[str]:
    """libvirt's command line for a paused SEV guest with measured direct boot and a disk."""
    return [
        "-name",
        "guest=t1,debug-threads=on",
        "-S",
        "-machine",
        "q35,accel=kvm,confidential-guest-support=lsec0",
        "-object",
        sev_object(launch, **object_args),
        "-bios",
        str(media.firmware),
        "-kernel",
        str(kernel or media.kernel),
        "-initrd",
        str(media.initrd),
        "-append",
        append,
        "-m",
        "256",
        "-drive",
        f"file={media.disk},if=virtio,format=raw",
        "-qmp",
        f"unix:{work / 'qmp.sock'},server=on,wait=off",
        "-serial",
        f"file:{work / 'console.log'}",
        "-display",
        "none",
        "-nodefaults",
        "-no-user-config",
        "-pidfile",
        str(work / "vmm.pid"),
        *extra,
    ]


@dataclass
class VmmProcess:
    """One ``sevlaunch-vmm`` process; its QMP socket, console and stderr under ``work``."""

    work: Path
    device: Path
    service: Service | None = None

    @property
    def qmp(self) -> str:
        return str(self.work / "qmp.sock")

    @property
    def console(self) -> str:
        path = self.work / "console.log"
        return path.read_text() if path.exists() else ""

    @property
    def stderr(self) -> str:
        path = self.work / "stderr.log"
        return path.read_text() if path.exists() else ""

    def env(self) -> dict[str, str]:
        return {**os.environ, "SEVLAUNCH_SEV_DEVICE": str(self.device)}

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self.service is None:
            raise AssertionError("the VMM was not started")
        return self.service.process

    def start(self, argv: Sequence[str], pass_fds: Sequence[int] = ()) -> VmmProcess:
        self.service = start_service(
            "sevlaunch-vmm", [str(VMM), *argv], log=self.work / "stderr.log", ready=Path(self.qmp),
            connect=True, env=self.env(), pass_fds=pass_fds, timeout=WAIT_LIMIT,
        )  # fmt: skip
        return self

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run to exit (start-up failures, -daemonize)."""
        return subprocess.run(
            [VMM, *argv],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=WAIT_LIMIT,
            check=False,
        )

    def wait(self) -> int:
        return self.proc.wait(timeout=WAIT_LIMIT)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(WAIT_LIMIT, kill=True)
        pidfile = self.work / "vmm.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)  # a daemonized VMM


@pytest.fixture
def work() -> Iterator[Path]:
    path = short_tempdir("sevvmm-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vmm(work: Path, platform: PlatformProcess) -> Iterator[VmmProcess]:
    """A VMM process slot against the shared platform; killed at teardown if still running."""
    process = VmmProcess(work, platform.sock)
    yield process
    process.stop()


# ---- QMP through the PyPI client -------------------------------------------------------


async def qmp_connect(path: str) -> Any:
    """A negotiated ``qemu.qmp.QMPClient`` (the library management code uses, unchanged)."""
    from qemu.qmp import QMPClient

    client = QMPClient("tests")
    await client.connect(path)
    return client


async def next_event(client: Any, name: str) -> dict[str, Any]:
    """The next event called ``name``; others are skipped. Returns its ``data`` (or {})."""
    while True:
        event = await client.events.get()
        if event["event"] == name:
            data: dict[str, Any] = event.get("data", {})
            return data


async def qmp_error(client: Any, command: str, arguments: dict[str, Any] | None = None) -> str:
    """Execute a command that must fail; returns ``class: desc``."""
    from qemu.qmp import ExecuteError

    try:
        result = await client.execute(command, arguments)
    except ExecuteError as exc:
        return f"{exc.error.error.class_}: {exc.error.error.desc}"
    raise AssertionError(f"{command} succeeded with {result!r}")
