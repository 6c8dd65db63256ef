"""Restart safety: find guests that outlived the host manager (pid file, QMP socket) and free
the SEV context of those that died without tearing it down, as KVM does when QEMU dies.
"""

from __future__ import annotations

from pathlib import Path

from qemu.qmp import QMPClient

from sevlaunch.errors import HostError
from sevlaunch.host import driver
from sevlaunch.host.runtime import Runtime, as_dict
from sevlaunch.host.steps import SEV_STEPS, HostSteps
from sevlaunch.host.store import DomainRow, StepRow
from sevlaunch.host.timeline import GUEST_BOOTED, GUEST_HALTED, boot_reported
from sevlaunch.protocol import Outcome, Step

RECONNECT_TIMEOUT = 30.0


def run_paths(row: DomainRow, run_root: Path) -> driver.RunPaths:
    """The run directory a domain's last start used (its UUID under ``run_root`` if unrecorded)."""
    return driver.RunPaths(Path(row.run_dir or run_root / row.uuid))


async def reconnect(pid: int, paths: driver.RunPaths) -> tuple[QMPClient, bool] | None:
    """Connect to a surviving hypervisor's monitor: (client, vCPUs running), or None when the
    monitor is gone."""
    try:
        client = await driver.connect(pid, paths, timeout=RECONNECT_TIMEOUT)
        status = await driver.qmp_execute(client, "query-status")
    except HostError:
        return None
    return client, bool(as_dict(status).get("running"))


def restore_progress(
    runtime: Runtime, steps: list[StepRow], vocabulary: HostSteps = SEV_STEPS
) -> None:
    """Carry the run's recorded progress over, so boot and measurement are not announced twice
    (``vocabulary``: the domain's launch's steps, SEV's or SNP's)."""
    if boot_reported(steps, vocabulary.booted):
        halts = [
            s.detail
            for s in steps
            if s.step == vocabulary.booted and s.detail.startswith(GUEST_HALTED)
        ]
        runtime.boot_failure = f"the {halts[-1]}" if halts else None
        runtime.booted.set()
    if vocabulary.snp:
        runtime.measured = runtime.measurement_read = False  # SNP measures nothing pre-boot
    else:
        runtime.measured = any(
            s.step == Step.LAUNCH_MEASURED and s.outcome == Outcome.OK for s in steps
        )
        runtime.measurement_read = any(s.step == Step.MEASUREMENT_READ for s in steps)
    runtime.resumed = any(
        s.step == vocabulary.resumed
        and s.outcome == Outcome.OK
        and not s.detail.startswith((GUEST_BOOTED, GUEST_HALTED))
        for s in steps
    )


def recovered_reason(row: DomainRow, running: bool) -> str:
    """Keep a paused guest's recorded reason; anything else now runs "unpaused"."""
    return row.reason if row.state == "paused" and not running else "unpaused"
