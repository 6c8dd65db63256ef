"""A libvirtd of the tests' own, driving sevlaunch-vmm on an emulated platform, and the undo.

Debian's libvirtd runs as root with its system driver (what ``qemu:///system`` is on a real
host) but listens on a private socket, so nothing else on the machine talks to it, and logs
to the test's directory. ``sevlaunch platform install-libvirt`` links /dev/sev and sets
qemu.conf; the tests' libvirtd has a directory first on its PATH where
``qemu-system-x86_64`` is the VMM, so ``virsh nodesevinfo`` asks the emulated platform.

Whatever the system driver creates or changes under /etc/libvirt, /var/lib/libvirt,
/var/cache/libvirt, /var/log/libvirt, /run/libvirt and libvirt's ``machine`` cgroups is undone
at the end: paths that did not exist before are removed, qemu.conf is restored byte for byte.
One session at a time takes it (a lock); it is skipped with the reason where it cannot run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sevlaunch.firmware import PROFILES, Firmware
from sevlaunch.orchestrate.services import Service, start_service
from sevlaunch.platform.libvirt_setup import Identity, Layout, Request, emulator_problems
from sevlaunch.platform.libvirt_setup import install as install_libvirt
from sevlaunch.platform.libvirt_setup import uninstall as uninstall_libvirt
from sevlaunch.platform.state import STATE_FILE, StoredState

BIN = Path(sys.executable).parent
VMM = BIN / "sevlaunch-vmm"
SEVLAUNCH = BIN / "sevlaunch"
PROFILE = "rome"
WAIT = 60.0  # a bound on waiting for a daemon, not an assertion about speed
ROOTS = (
    Path("/etc/libvirt"),
    Path("/var/lib/libvirt"),
    Path("/var/cache/libvirt"),
    Path("/var/log/libvirt"),
    Path("/run/libvirt"),
)
CGROUPS = Path("/sys/fs/cgroup")
LOCK = Path("/tmp/sevlaunch-libvirt-tests.lock")
LIBVIRTD_CONF = """unix_sock_dir = "{root}/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "1:file:{root}/libvirtd.log"
log_filters = "1:qemu.qemu_monitor 3:*"
"""


def why_not() -> str | None:
    """Why a libvirtd of the tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "libvirtd's system driver needs root"
    for tool in ("libvirtd", "virsh"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"{tool} is not installed (Debian: libvirt-daemon-system libvirt-clients)"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "libvirt-python is not installed (pip install 'sevlaunch[libvirt]')"
    if os.path.lexists("/dev/sev"):
        return "/dev/sev exists on this machine (real SEV, or another user's link)"
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() in ("libvirtd", "virtqemud") and _uid(proc) == 0:
                return "a root libvirtd already runs on this machine: the tests need its state"
    return None


def _uid(proc: Path) -> int | None:
    """The real uid of a process: a session libvirtd of another user does not share state."""
    for line in (proc / "status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


@dataclass
class Snapshot:
    """The paths under libvirt's directories and cgroups before the tests, to remove the new."""

    before: set[Path] = field(default_factory=set)
    qemu_conf: bytes | None = None

    @classmethod
    def take(cls) -> Snapshot:
        conf = Path("/etc/libvirt/qemu.conf")
        return cls(set(_walk()), conf.read_bytes() if conf.exists() else None)

    def restore(self) -> None:
        if self.qemu_conf is not None:
            Path("/etc/libvirt/qemu.conf").write_bytes(self.qemu_conf)
        for path in sorted(set(_walk()) - self.before, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir() if str(path).startswith(str(CGROUPS)) else shutil.rmtree(path)
                else:
                    path.unlink()


def _walk() -> Iterator[Path]:
    for root in ROOTS:
        if root.exists():
            yield root
            for base, dirs, files in os.walk(root):
                for name in (*dirs, *files):
                    yield Path(base) / name
    for controller in CGROUPS.glob("*"):
        machine = controller / "machine"
        if machine.is_dir():
            yield machine
            yield from (p for p in machine.rglob("*") if p.is_dir())


@dataclass
class Libvirtd:
    """The tests' libvirtd, its platform, and ``virsh`` against it."""

    root: Path
    platform_socket: Path
    qemu_user: str | None
    proc: Service | None = None
    platform: Service | None = None

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.root}/sock/libvirt-sock"

    @property
    def bindir(self) -> Path:
        return self.root / "bin"

    def start(self) -> None:
        (self.root / "sock").mkdir(exist_ok=True)
        conf = self.root / "libvirtd.conf"
        conf.write_text(LIBVIRTD_CONF.format(root=self.root))
        env = {**os.environ, "PATH": f"{self.bindir}:{os.environ.get('PATH', '/usr/bin')}"}
        self.proc = start_service(
            "libvirtd",
            ["libvirtd", "--config", str(conf), "--pid-file", str(self.root / "libvirtd.pid")],
            log=self.root / "libvirtd.out",
            ready=self.root / "sock" / "libvirt-sock",
            connect=True,
            env=env,
            timeout=WAIT,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(WAIT)
        self.proc = None

    def restart(self) -> None:
        """As an admin's ``systemctl restart libvirtd``: the domains keep running."""
        self.stop()
        self.start()

    def reprobe(self) -> None:
        """Make libvirt probe the VMM again (its cache is keyed on the binary's ctime): after a
        restart libvirt 9.0's reloaded capabilities lack cpu0-id (virQEMUCapsParseSEVInfo
        never reads back the <cpu0Id> it writes)."""
        os.utime(VMM)

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["virsh", "-c", self.uri, *args],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
        return done

    def log(self) -> str:
        path = self.root / "libvirtd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _start_platform(root: Path) -> tuple[Service, Path]:
    state = root / "platform-state"
    state.mkdir(mode=0o700)
    stored = StoredState(PROFILE, Firmware(PROFILES[PROFILE]).persistent_state())
    (state / STATE_FILE).write_bytes(stored.to_bytes())
    (state / STATE_FILE).chmod(0o600)
    sock = root / "platform.sock"
    service = start_service(
        "platform",
        [str(SEVLAUNCH), "platform", "serve", "--state", str(state), "--listen", str(sock)],
        log=root / "platform.log",
        ready=sock,
        connect=True,
        timeout=WAIT,
    )
    return service, sock


def _qemu_user() -> str | None:
    """libvirt-qemu when that user can run this venv's VMM, else root (a venv under a private
    home, as pyenv's under /root, is out of its reach)."""
    try:
        who = Identity.of("libvirt-qemu", "libvirt-qemu")
    except KeyError:
        return "root"
    return None if not emulator_problems(VMM, who) else "root"


@contextlib.contextmanager
def running_libvirtd(platform_socket: Path | None = None) -> Iterator[Libvirtd]:
    """The tests' libvirtd on its own platform, or on the one at ``platform_socket``."""
    reason = why_not()
    if reason is not None:
        pytest.skip(reason)
    lock = LOCK.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        pytest.skip("another test session on this machine uses libvirtd")
    snapshot = Snapshot.take()
    root = Path(tempfile.mkdtemp(prefix="sevlv-", dir="/tmp"))
    root.chmod(0o755)  # the qemu user reaches the platform socket through it
    daemon = Libvirtd(root, root / "platform.sock", _qemu_user())
    layout = Layout(manifest=root / "install.json")
    try:
        if platform_socket is None:
            daemon.platform, daemon.platform_socket = _start_platform(root)
        else:
            daemon.platform_socket = platform_socket
        install_libvirt(
            Request(
                socket=daemon.platform_socket,
                emulator=VMM,
                qemu_user=daemon.qemu_user,
                stdio_file=True,  # no virtlogd: the hypervisor's stderr goes to a file
                default_emulator_dir=daemon.bindir,
            ),
            layout,
            log=lambda _line: None,
        )
        daemon.start()
        yield daemon
    finally:
        _teardown(daemon, layout, snapshot)
        shutil.rmtree(root, ignore_errors=True)
        lock.close()


def _teardown(daemon: Libvirtd, layout: Layout, snapshot: Snapshot) -> None:
    with contextlib.suppress(Exception):
        if daemon.proc is not None:
            listed = daemon.virsh("list", "--all", "--name", check=False).stdout.split()
            for name in listed:
                daemon.virsh("destroy", name, check=False)
                daemon.virsh("undefine", name, "--nvram", check=False)
    daemon.stop()
    with contextlib.suppress(Exception):
        if layout.manifest.exists():
            uninstall_libvirt(layout, log=lambda _line: None)
    if daemon.platform is not None:
        daemon.platform.stop(WAIT)
    snapshot.restore()
