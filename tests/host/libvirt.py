"""Debian's libvirt as the reference for the host's command line: ``virsh domxml-to-native
qemu-argv`` from a private ``qemu:///session`` daemon run as ``nobody`` in a temporary home,
so nothing of the machine's libvirt (``/etc/libvirt``, ``/var/run/libvirt``) is touched.

The session daemon is started by the first virsh call and ended by its pid at :meth:`close`;
the home directory goes with it. Domains use ``type='qemu'`` (``nobody`` cannot open
``/dev/kvm``) and no ``<launchSecurity>`` (a session daemon without SEV hardware refuses it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

QEMU = "/usr/bin/qemu-system-x86_64"
USER = "nobody"


def unavailable() -> str | None:
    """Why the reference cannot run here, or None."""
    for tool in ("virsh", "libvirtd", "runuser"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (apt-get install libvirt-daemon-system)"
    if not Path(QEMU).exists():
        return f"{QEMU} is not installed (apt-get install qemu-system-x86)"
    if os.geteuid() != 0:
        return "running virsh as another user needs root (runuser)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"there is no user {USER!r} to run a private session daemon as"
    return None


def older_than(version: tuple[int, int], why: str) -> str | None:
    """Why the installed libvirt is too old for a test (``virsh --version``), or None."""
    out = subprocess.run(["virsh", "--version"], capture_output=True, text=True, check=False)
    found = tuple(int(p) for p in out.stdout.strip().split(".")[:2] if p.isdigit())
    if found >= version:
        return None
    wanted = ".".join(map(str, version))
    return f"libvirt {out.stdout.strip() or '(unknown)'} {why}: this test needs libvirt >= {wanted}"


class LibvirtReference:
    """One private session daemon; :meth:`argv` asks it for a domain's QEMU command line."""

    def __init__(self) -> None:
        entry = pwd.getpwnam(USER)
        self.home = Path(tempfile.mkdtemp(prefix="sevlaunch-libvirt-"))
        os.chown(self.home, entry.pw_uid, entry.pw_gid)
        self._uid, self._gid = entry.pw_uid, entry.pw_gid
        self.env = {
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.home / "run"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
        }

    def argv(self, xml: str) -> list[str]:
        """libvirt's argv for ``xml``, from the binary on (its environment dropped)."""
        path = self.home / f"domain-{time.monotonic_ns()}.xml"
        path.write_text(xml)
        os.chown(path, self._uid, self._gid)
        command = ["runuser", "-u", USER, "--", "env", *(f"{k}={v}" for k, v in self.env.items())]
        command += ["virsh", "-c", "qemu:///session", "domxml-to-native", "qemu-argv", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        path.unlink()
        if result.returncode != 0:
            raise AssertionError(f"libvirt refused the domain: {result.stderr.strip()}")
        words = shlex.split(result.stdout)
        return words[next(i for i, w in enumerate(words) if w.startswith("/")) :]

    def close(self) -> None:
        pidfile = self.home / "run" / "libvirt" / "libvirtd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
        shutil.rmtree(self.home, ignore_errors=True)


def lib_dir(argv: list[str]) -> str:
    """The domain directory libvirt put its master key and monitor in."""
    monitor = next(a for a in argv if a.startswith("socket,id=charmonitor,path="))
    return str(Path(monitor.split("path=", 1)[1].split(",", 1)[0]).parent)
