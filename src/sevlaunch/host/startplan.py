"""What a domain start writes before it spawns the hypervisor: the launch plan's files (0600
from their first byte, as libvirt's launch blobs), the domain's log directory, and the argv.
"""

from __future__ import annotations

import os
from pathlib import Path

from sevlaunch._files import write_atomic
from sevlaunch.host import driver
from sevlaunch.host.domxml import Domain, LaunchSecurity
from sevlaunch.host.qemu import (
    HostSevDefaults,
    LaunchPaths,
    SecretResolver,
    build_launch_plan,
)


def blobs_detail(sev: LaunchSecurity) -> str:
    """Step 6's detail: where the session blobs came from."""
    return "dhCert and session " + (
        "from stored secrets" if sev.dh_cert_secret or sev.session_secret else "inline"
    )


def prepare_start(
    domain: Domain,
    paths: driver.RunPaths,
    log_dir: Path,
    *,
    emulator: str,
    resolve_secret: SecretResolver,
    host_sev: HostSevDefaults | None,
) -> tuple[str, list[str]]:
    """Write the plan's files into ``paths``; return the binary and its arguments."""
    plan = build_launch_plan(
        domain,
        LaunchPaths(
            lib_dir=str(paths.root),
            monitor_socket=str(paths.qmp),
            pidfile=str(paths.pidfile),
            log_dir=str(log_dir),
        ),
        emulator=emulator,
        resolve_secret=resolve_secret,
        host_sev=host_sev,
        master_key=os.urandom(32),  # libvirt's per-domain key (qemuDomainMasterKeyCreate)
    )
    for planned in plan.files:
        write_private(Path(planned.path), planned.content, planned.mode)
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return plan.argv[0], list(plan.argv[1:])


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a launch blob with ``mode`` (libvirt's 0600), never readable by others meanwhile;
    not fsynced: the run directory is made afresh at every start, so a crash loses nothing
    that the next start does not write again."""
    write_atomic(path, data, mode, durable=False)
