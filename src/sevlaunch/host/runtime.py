"""A running hypervisor as the host manager tracks it, and the small helpers around it: the
QMP event names it listens for, who did each launch step, and what a stopped run leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from sevlaunch.errors import HostError
from sevlaunch.host import driver
from sevlaunch.host.store import DomainRow

MEASUREMENT_EVENT = "SEV_LAUNCH_MEASUREMENT_AVAILABLE"
GUEST_BOOTED_EVENT = "SEVLAUNCH_GUEST_BOOTED"
SHUTDOWN_TIMEOUT = 30.0

_STOPPED_DETAIL = {"crashed": "Crashed", "destroyed": "Destroyed", "shutdown": "Shutdown"}


@dataclass
class Runtime:
    """A running hypervisor: its pid, QMP client and the task watching it."""

    pid: int
    client: QMPClient
    paths: driver.RunPaths
    watcher: asyncio.Task[None] | None = None
    events: asyncio.Task[None] | None = None
    stopping: str | None = None  # "destroyed" / "shutdown" when we asked for it
    booted: asyncio.Event = field(default_factory=asyncio.Event)  # boot reported, or gone
    boot_failure: str | None = None  # why no boot: the guest halted, or the hypervisor stopped
    measured: bool = False  # "measurement-available" published for this run
    resumed: bool = False  # the first resume of this run (step 13, LAUNCH_FINISH) happened
    measurement_read: bool = False  # step 10 is recorded once per run, however often it is read
    terminator: asyncio.Task[None] | None = None  # ending the process after a guest power-off


def invalid(detail: str) -> HostError:
    """libvirt's VIR_ERR_OPERATION_INVALID: the request does not fit the domain's state."""
    return HostError("Requested operation is not valid", detail)


def no_domain(key: str) -> HostError:
    """libvirt's VIR_ERR_NO_DOMAIN for a name or UUID that matches nothing."""
    return HostError("Domain not found", f"no domain with matching name or uuid '{key}'")


def stopped_detail(reason: str) -> str:
    """The "Stopped" lifecycle event's detail for a shut-off reason."""
    return _STOPPED_DETAIL.get(reason, "Failed")


def remove_run_files(run_dir: str) -> None:
    """Delete what a stopped run leaves: monitor socket, pid file and the launch blobs."""
    paths = driver.RunPaths(Path(run_dir))
    for leftover in (
        paths.qmp,
        paths.pidfile,
        paths.root / "dh_cert.base64",
        paths.root / "session.base64",
    ):
        leftover.unlink(missing_ok=True)


def remove_domain_dirs(*dirs: str | Path | None) -> None:
    """Delete an undefined domain's run and log directories, whatever they hold."""
    for found in dirs:
        if found is not None:
            shutil.rmtree(found, ignore_errors=True)


def sweep_orphans(run_root: Path, log_root: Path, rows: Iterable[DomainRow]) -> None:
    """Delete run and log directories no defined domain owns (an undefine cut short, a probe
    that was killed): what a stopped manager left behind."""
    rows = list(rows)
    owners = {run_root / r.uuid for r in rows} | {Path(r.run_dir) for r in rows if r.run_dir}
    for entry in run_root.iterdir() if run_root.exists() else ():
        if entry.is_dir() and entry not in owners:
            shutil.rmtree(entry, ignore_errors=True)
    names = {r.name for r in rows}
    for entry in log_root.iterdir() if log_root.exists() else ():
        if entry.is_dir() and entry.name not in names:
            shutil.rmtree(entry, ignore_errors=True)


def resolve_binary(name: str) -> str:
    """A hypervisor binary: on PATH, else (for ``sevlaunch-vmm``) beside this Python's scripts."""
    if os.sep in name or shutil.which(name):
        return name
    sibling = Path(sys.executable).parent / name
    return str(sibling) if sibling.exists() else name


def as_dict(value: object) -> dict[str, Any]:
    """A QMP object as a dict (qemu.qmp types its replies as ``object``)."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


async def quiet_disconnect(client: QMPClient) -> None:
    """Close a monitor connection whose peer may already be gone."""
    with contextlib.suppress(Exception):
        await client.disconnect()
