"""The QEMU driver: run a hypervisor binary (``sevlaunch-vmm`` or ``qemu-system-x86_64``) and
talk QMP to it with qemu.qmp, the same code for both.

As libvirt does, the driver starts the process itself (no ``-daemonize``), waits for the QMP
socket, reports the process's own error output when it dies during start-up, and keeps a pid
file so a restarted manager can find running guests again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient

from sevlaunch.errors import HostError, QemuCommandError

START_TIMEOUT = 60.0
LOG_TAIL = 4000


@dataclass(frozen=True)
class RunPaths:
    """A domain's per-run directory: QMP socket, pid file, the hypervisor's log, launch blobs."""

    root: Path

    @property
    def qmp(self) -> Path:
        return self.root / "qmp.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "qemu.pid"

    @property
    def log(self) -> Path:
        return self.root / "qemu.log"


def internal_error(detail: str) -> HostError:
    return HostError("internal error", detail)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def log_tail(path: Path) -> str:
    try:
        data = path.read_bytes()[-LOG_TAIL:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def exited_words(tail: str, returncode: int | None) -> str:
    """libvirt's words for a hypervisor that died before its monitor came, with its log's
    tail; a process killed before it wrote anything (the OOM killer, a SIGKILL) is named by
    how it ended, or the user would read nothing after the colon."""
    words = f"process exited while connecting to monitor: {tail}"
    if tail or returncode is None:
        return words
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{words}(no output; killed by {name})"
    return f"{words}(no output; exit status {returncode})"


async def spawn(
    binary: str, argv: list[str], paths: RunPaths, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Start the hypervisor detached from the manager's session, output to the domain log."""
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        paths.qmp.unlink()
    log = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return await asyncio.create_subprocess_exec(
            binary,
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **env},
        )
    except OSError as exc:
        raise HostError(
            "internal error", f"cannot execute binary {binary}: {exc.strerror}"
        ) from exc
    finally:
        os.close(log)


async def connect(
    proc_pid: int,
    paths: RunPaths,
    exited: asyncio.Future[int] | None = None,
    timeout: float = START_TIMEOUT,
) -> QMPClient:
    """Wait for the QMP socket and negotiate; a process that dies first is reported with its log."""
    deadline = time.monotonic() + timeout
    last: ConnectError | None = None
    while True:
        if (exited is not None and exited.done()) or (exited is None and not pid_alive(proc_pid)):
            code = exited.result() if exited is not None and not exited.cancelled() else None
            raise internal_error(exited_words(log_tail(paths.log), code)) from last
        if paths.qmp.exists():
            client = QMPClient(f"pid-{proc_pid}")
            try:
                await client.connect(str(paths.qmp))
            except ConnectError as exc:  # the socket exists before QEMU listens on it
                last = exc
            else:
                return client
        if time.monotonic() > deadline:
            why = f": {last}" if last is not None else ""
            raise internal_error(
                f"timed out waiting for the monitor socket {paths.qmp}{why}"
            ) from last
        await asyncio.sleep(0.02)


async def qmp_execute(
    client: QMPClient, command: str, arguments: Mapping[str, Any] | None = None
) -> Any:
    """Run a QMP command; QEMU's error becomes libvirt's "internal error: unable to execute QEMU command"."""
    try:
        return await client.execute(command, dict(arguments) if arguments else None)
    except ExecuteError as exc:
        raise QemuCommandError(command, str(exc.error_class), str(exc)) from exc
    except Exception as exc:  # connection lost and kin
        raise internal_error(
            f"unable to execute QEMU command '{command}': {type(exc).__name__}: {exc}"
        ) from exc


def kill(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM (QEMU and sevlaunch-vmm tear the guest down on it), SIGKILL after ``grace``."""
    kill(pid)
    if not await wait_gone(pid, grace):
        kill(pid, signal.SIGKILL)
        await wait_gone(pid, grace)


def find_hypervisor(paths: RunPaths, recorded: int | None) -> int | None:
    """The live hypervisor of a run directory: the recorded pid or the pid file's, or (a start
    cut short before either was written) a process whose argv names the QMP socket. A pid is
    only believed when that process's argv names the socket, so a recycled pid is never ours."""
    for pid in (recorded, read_pidfile(paths.pidfile)):
        if pid and pid_alive(pid) and _names(pid, paths.qmp):
            return pid
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and _names(int(entry.name), paths.qmp)
            and pid_alive(int(entry.name))
        ):
            return int(entry.name)
    return None


def _names(pid: int, socket: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(socket).encode() in argv


async def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
