"""The VM tool's one port to a host manager: sevlaunch's over HTTP, or libvirt.

:class:`HostPort` is what :class:`~sevlaunch.orchestrate.launch.Launcher` needs for the 13
steps, in libvirt's words: node SEV info, define, start paused, launch security info and
state, resume, destroy, and a watch for step 10. :class:`~sevlaunch.host.client.HostClient`
implements it over sevlaunch's host API; :class:`~sevlaunch.orchestrate.libvirt_host.LibvirtHost`
over libvirt-python, for any libvirt URI (``qemu:///system``, ``qemu+ssh://host/system``).
:func:`connect` picks by the address: a URI whose scheme is a libvirt driver goes to libvirt,
sevlaunch's own addresses (``unix:PATH``, ``tcp:HOST:PORT``, ``http(s)://``) to its host.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Protocol

from sevlaunch.protocol import (
    DomainInfo,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    StepReport,
)

#: libvirt's hypervisor drivers (virConnectOpen's URI schemes, before any ``+transport``).
LIBVIRT_DRIVERS = frozenset(
    {
        "qemu", "test", "xen", "libxl", "lxc", "vbox", "vmwareplayer", "vmwarews",
        "vmwarefusion", "esx", "gsx", "vpx", "bhyve", "vz", "parallels", "ch", "hyperv",
        "openvz", "phyp",
    }
)  # fmt: skip
#: Seconds the VM tool waits mid-launch for a host manager that went away (restarted: its
#: guests keep running) once it has answered; as long as it gives a restarting libvirtd.
RECONNECT = 30.0
_URI = re.compile(r"([a-z][a-z0-9]*)(\+[a-z0-9]+)?://")


def is_libvirt_uri(address: str) -> bool:
    """Whether ``address`` names a libvirt connection (``qemu:///system``, ``qemu+ssh://``)."""
    match = _URI.match(address)
    return match is not None and match.group(1) in LIBVIRT_DRIVERS


class Watch(AbstractContextManager["Watch"], Protocol):
    """Step 10's wait for the measurement: opened before the start."""

    announcement: str

    @property
    def available(self) -> bool:
        """Whether announcements can still come (else the tool polls)."""
        ...

    def wait(self, launch: int, timeout: float) -> bool:
        """Until ``launch``'s measurement is announced (True), or it cannot be (False)."""
        ...


class HostPort(Protocol):
    """A host manager as the VM tool drives it; failures raise HostError (libvirt's words)."""

    uri: str

    def node_sev_info(self) -> NodeSevInfo: ...

    def domain(self, name: str) -> DomainInfo: ...

    def define(self, xml: str) -> DomainInfo: ...

    def start(self, name: str, *, paused: bool = False) -> DomainInfo: ...

    def watch(self, name: str) -> Watch: ...

    def timeline(self, name: str, launch: int | None = None) -> list[StepReport]:
        """The host's own record of its steps, where it keeps one."""
        ...

    def report_steps(self, name: str, reports: list[StepReport]) -> int:
        """Have the host keep the VM tool's record of steps 1-5 and 11 (0 where it cannot)."""
        ...

    def launch_security_info(self, name: str) -> LaunchSecurityInfo | None: ...

    def set_launch_security_state(
        self, name: str, release: SecretRelease, address: int | None = None
    ) -> None: ...

    def resume(self, name: str) -> DomainInfo: ...

    def wait_booted(self, name: str, timeout: float = 60.0) -> DomainInfo: ...

    def destroy(self, name: str) -> DomainInfo: ...

    def console(self, name: str) -> str: ...

    def close(self) -> None: ...


def connect(
    address: str,
    *,
    token: str | None = None,
    ca_file: str | None = None,
    insecure_plain_http: bool = False,
) -> HostPort:
    """The host port for ``address``: libvirt for a libvirt URI, else sevlaunch's host."""
    if is_libvirt_uri(address):
        from sevlaunch.orchestrate.libvirt_host import LibvirtHost

        return LibvirtHost(address)
    from sevlaunch.host.client import HostClient

    return HostClient(
        address,
        token=token,
        ca_file=ca_file,
        insecure_plain_http=insecure_plain_http,
        reconnect=RECONNECT,
    )
