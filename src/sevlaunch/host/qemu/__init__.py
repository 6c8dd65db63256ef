"""The QEMU command line for a domain, as libvirt 9.0's QEMU driver builds it for the same XML.

Pure: :func:`build_launch_plan` takes the domain, the per-domain paths, a resolver for the
secrets the domain names by UUID and the master key's bytes, and returns a :class:`LaunchPlan`:
the argv and the files to write first (the SEV blobs and libvirt's master key, mode 0600, in
the domain's directory, as ``qemuProcessSEVCreateFile`` does). The argv is what
``virsh domxml-to-native qemu-argv`` prints for the domain on Debian 12 (libvirt 9.0, QEMU 7.2;
a test compares them when libvirt is installed), with two differences a host manager without
libvirt's daemons needs: the monitor is a socket path (libvirt passes an fd), and the serial
ports are logged into the domain's log directory (as ``<log file=...>`` would).

Parts: :mod:`.machine` (the head), :mod:`.layout` and :mod:`.pci` (libvirt's default devices and
addresses), :mod:`.devices`, :mod:`.sev`, :mod:`.plan` (the result).
"""

from __future__ import annotations

from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu.devices import device_args
from sevlaunch.host.qemu.layout import layout
from sevlaunch.host.qemu.machine import MASTER_KEY, head_args
from sevlaunch.host.qemu.plan import (
    HostSevDefaults,
    LaunchPaths,
    LaunchPlan,
    PlannedFile,
    SecretResolver,
    unsupported,
)
from sevlaunch.host.qemu.sev import SEV_OBJECT_ID, sev_object

__all__ = [
    "SEV_OBJECT_ID",
    "HostSevDefaults",
    "LaunchPaths",
    "LaunchPlan",
    "PlannedFile",
    "SecretResolver",
    "build_launch_plan",
]

SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def build_launch_plan(
    domain: Domain,
    paths: LaunchPaths,
    *,
    emulator: str | None = None,
    resolve_secret: SecretResolver | None = None,
    host_sev: HostSevDefaults | None = None,
    master_key: bytes = bytes(32),
    daemonize: bool = False,
) -> LaunchPlan:
    """Build the launch of ``domain``; ``emulator`` overrides ``<emulator>`` (``--qemu``)."""
    binary = emulator or domain.emulator
    if not binary:
        raise unsupported(
            f"domain '{domain.name}' has no <emulator> and no QEMU binary was given: set "
            "<emulator>/usr/bin/qemu-system-x86_64</emulator> or the daemon's --qemu",
            field="devices/emulator",
        )
    files = [PlannedFile(f"{paths.lib_dir}/{MASTER_KEY}", master_key)]
    argv = [binary, *head_args(domain, paths.lib_dir, paths.monitor_socket)]
    argv += device_args(domain, layout(domain), paths.log_dir)
    if domain.launch_security is not None:
        sev, blobs = sev_object(
            domain, domain.launch_security, paths.lib_dir, resolve_secret, host_sev
        )
        argv += ["-object", sev]
        files += blobs
    argv += ["-sandbox", SANDBOX, "-msg", "timestamp=on"]
    if paths.pidfile is not None:
        argv += ["-pidfile", paths.pidfile]
    if daemonize:
        argv.append("-daemonize")
    return LaunchPlan(
        argv=tuple(argv),
        files=tuple(files),
        monitor_socket=paths.monitor_socket,
        pidfile=paths.pidfile,
    )
