"""A running emulated host and broker for the VM tool's tests, and the real faults they inject.

:func:`running_stack` starts what ``sevlaunch demo`` starts (platform, key server, host
manager, broker, as processes on Unix sockets in one directory), makes the demo's artifacts and
registers two workloads: the demo's (firmware, kernel, initrd and command line measured) and
``nohashes`` (the firmware alone, for a domain launched with ``kernelHashes='no'``). At the end
every guest is destroyed and every process whose argv names the directory is ended by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from sevlaunch.broker.client import BrokerClient
from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate import demo
from sevlaunch.orchestrate.launch import Launcher, LaunchResult
from sevlaunch.orchestrate.owner_port import BrokerOwner, GuestOwner
from sevlaunch.orchestrate.services import Stack, cli, start_service
from sevlaunch.owner.launch_digest import launch_digest
from sevlaunch.platform.client import PlatformClient

BIN = Path(sys.executable).parent
NOHASHES = "nohashes"
_names = count(1)


def unique(prefix: str) -> str:
    """A domain name no other test of the run uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def pids_naming(text: str) -> list[int]:
    """Live processes whose argv contains ``text``: ours, since ``text`` is our temp dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def reap(text: str) -> None:
    """End, by pid, what is left of the processes whose argv names ``text``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_naming(text):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not pids_naming(text), 5.0, f"processes under {text} to end")


@dataclass
class RunningStack:
    stack: Stack
    art: demo.Artifacts

    @property
    def root(self) -> Path:
        return self.stack.root

    @property
    def launcher_token(self) -> bytes:
        return self.stack.launcher_token.read_bytes().strip()

    def owner(self, workload: str = demo.WORKLOAD) -> BrokerOwner:
        return BrokerOwner(self.stack.broker_url, self.launcher_token, workload)

    def broker_admin(self) -> BrokerClient:
        return BrokerClient(self.stack.broker_url, self.stack.owner_token.read_bytes().strip())

    def host(self) -> HostClient:
        return HostClient(self.stack.host_uri)

    def xml(self, name: str, firmware: Path | None = None, *, kernel_hashes: bool = True) -> str:
        text = demo.domain_xml(name, self.art, firmware or self.art.firmware)
        return text if kernel_hashes else text.replace("kernelHashes='yes'", "kernelHashes='no'")

    def launch(
        self,
        xml: str,
        *,
        owner: GuestOwner | None = None,
        host: HostClient | None = None,
        kds_url: str | None = None,
        cek: bytes | None = None,
    ) -> LaunchResult:
        with host or self.host() as client:
            launcher = Launcher(
                client,
                owner or self.owner(),
                xml,
                kds_url=kds_url or self.stack.kds_url,
                cek=cek,
                boot_timeout=20.0,
            )
            return launcher.run()

    def running(self) -> set[str]:
        """Names of the running or paused domains, as ``sevlaunch host list`` shows them."""
        with self.host() as host:
            return {d.name for d in host.list_domains()}

    def domain_state(self, name: str) -> str:
        with self.host() as host:
            return host.domain(name).state

    def guest_contexts(self) -> int:
        """Guests the platform holds a launch context for (PLATFORM_STATUS guest count)."""
        with PlatformClient(self.stack.platform_socket) as platform:
            return platform.platform_status().guest_count

    def destroy(self, name: str) -> None:
        with self.host() as host:
            host.destroy(name)

    def owner_dir(self, directory: Path, *, trust_ark: bool = True) -> Path:
        """An owner directory for ``--owner-dir``: owner.json, the AMD CA file (ASK ‖ ARK) and,
        unless ``trust_ark`` is off, the emulated ARK as a trust root."""
        directory.mkdir(parents=True, exist_ok=True)
        with PlatformClient(self.stack.platform_socket) as platform:
            (directory / "ca.cert").write_bytes(platform.ca_chain())
            (directory / "ark.cert").write_bytes(platform.ark())
        art = self.art
        config = {
            "policy": f"{demo.POLICY:#x}",
            "trust-roots": ["ark.cert"] if trust_ark else [],
            "ca": "ca.cert",
            "firmware": str(art.firmware),
            "kernel": str(art.kernel),
            "initrd": str(art.initrd),
            "cmdline": demo.CMDLINE,
            "secrets": {"luks-key": str(art.passphrase)},
        }
        (directory / "owner.json").write_text(json.dumps(config, indent=2))
        return directory


@contextlib.contextmanager
def running_stack(
    prefix: str = "sevlaunch-test-", broker_args: tuple[str, ...] = ()
) -> Iterator[RunningStack]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    stack = Stack(root, broker_args=broker_args)
    try:
        stack.start()
        art = demo.make_artifacts(root / "images")
        demo.register_workload(stack, art)
        running = RunningStack(stack, art)
        with running.broker_admin() as broker, art.firmware.open("rb") as firmware:
            broker.add_workload(
                NOHASHES,
                [demo.POLICY],
                [launch_digest(firmware)],
                secrets={"luks-key": art.passphrase.read_bytes()},
            )
        yield running
    finally:
        with contextlib.suppress(Exception):
            demo.destroy_all(stack)
        stack.stop()
        reap(str(root))
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def host_manager(stack: Stack, name: str, qemu: str) -> Iterator[str]:
    """A second host manager on the same platform whose hypervisor binary is ``qemu``; yields
    its URI."""
    socket = stack.root / f"{name}.sock"
    argv = cli("host", "serve", "--state", str(stack.root / name), "--listen", f"unix:{socket}")
    argv += ["--qemu", qemu, "--platform", str(stack.platform_socket)]
    service = start_service(name, argv, log=stack.root / f"{name}.log", ready=socket)
    try:
        yield f"unix:{socket}"
    finally:
        service.stop(10)


def script(path: Path, body: str) -> str:
    """An executable shell script (a stand-in hypervisor binary)."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)
