"""The one process harness: sevlaunch's services as processes, for the demo and every test.

:func:`start_service` starts one program (a ``sevlaunch`` command through :func:`cli`, or any
binary such as ``sevlaunch-vmm``) with its output in a log, and waits until its socket is
there (and, if asked, accepts a connection); :class:`Service` stops it. :class:`Stack` is the
demo's set: an emulated platform (with its key server), a host manager and an attestation
broker, all on Unix sockets in one directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sevlaunch._files import write_atomic
from sevlaunch.errors import SevlaunchError, UsageError

START_TIMEOUT = 60.0
#: Longest Unix socket path Linux takes (sun_path is 108 bytes with its NUL).
SOCKET_PATH_MAX = 107
#: A guest's QMP socket under the root: host/run/<uuid>/qmp.sock.
_DEEPEST_SOCKET = "/host/run/" + "0" * 36 + "/qmp.sock"


def cli(*args: str) -> list[str]:
    """The argv of ``sevlaunch ARGS`` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "sevlaunch.cli", *args]


def _write_private(path: Path, data: bytes) -> Path:
    return write_atomic(path, data)


def firmware_image(size: int, *, seed: bytes) -> bytes:
    """An AmdSev-like OVMF image the emulated hypervisor boots (``sevlaunch image firmware``)."""
    from sevlaunch.vmm.ovmf_image import make_image

    return make_image(size, seed=seed)


@dataclass
class Service:
    """One started process and the log its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self, grace: float = 5.0, *, kill: bool = False) -> None:
        """SIGTERM (SIGKILL at once with ``kill``), then SIGKILL after ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    ready: Path | None = None,
    connect: bool = False,
    until: Callable[[Service], bool] | None = None,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    pass_fds: Sequence[int] = (),
    capture: bool = False,
    detach: bool = False,
    timeout: float = START_TIMEOUT,
) -> Service:
    """Start ``argv`` with stdout and stderr appended to ``log`` (stdout piped instead with
    ``capture``) under ``umask`` if given, with ``pass_fds`` inherited; wait until ``ready`` exists (and accepts a
    connection with ``connect``) and ``until(service)`` holds. A process that exits first, or
    readiness that never comes, raises with the log's tail and the process is killed."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else out,
            stderr=out,
            start_new_session=detach,
            env=None if env is None else dict(env),
            umask=-1 if umask is None else umask,
            pass_fds=tuple(pass_fds),
        )
    service = Service(name, process, log)
    try:
        wait_ready(service, ready, connect=connect, until=until, timeout=timeout)
    except SevlaunchError:
        service.stop(kill=True)
        raise
    return service


def wait_ready(
    service: Service,
    path: Path | None,
    *,
    connect: bool = False,
    until: Callable[[Service], bool] | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Until ``path`` exists (and accepts a Unix connection with ``connect``) and ``until``."""

    def ready() -> bool:
        if path is not None and not (path.exists() and (not connect or _accepts(path))):
            return False
        return until is None or until(service)

    deadline = time.monotonic() + timeout
    while not ready():
        if not service.alive:
            raise SevlaunchError(
                f"the {service.name} service failed to start "
                f"(exit {service.process.returncode}): {service.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise SevlaunchError(
                f"the {service.name} service was not ready ({path or 'its check'}) within "
                f"{timeout:.0f} s: {service.log_tail()}"
            )
        time.sleep(0.02)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the kernel's choice), for a service to bind next."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> Callable[[Service], bool]:
    def accepts(_service: Service) -> bool:
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", port))
            except OSError:
                return False
        return True

    return accepts


@dataclass
class Stack:
    """The services of one emulated host plus a broker, under ``root``: on Unix sockets, or
    with ``web`` the host manager and the broker on loopback TCP (a browser can open their
    dashboards there; the host then needs its token, ``host.token``)."""

    root: Path
    profile: str = "rome"
    latency: str = "none"
    es: bool = False
    web: bool = False
    snp: bool = False  # the broker verifies SNP reports with this platform's key server
    services: list[Service] = field(default_factory=list)
    kds_url: str = ""
    host_port: int = 0
    broker_port: int = 0
    #: More ``broker serve`` options (a fault test's short ``--launch-ttl``).
    broker_args: tuple[str, ...] = ()

    @property
    def platform_socket(self) -> Path:
        return self.root / "platform.sock"

    @property
    def host_socket(self) -> Path:
        return self.root / "host.sock"

    @property
    def broker_socket(self) -> Path:
        return self.root / "broker.sock"

    @property
    def host_uri(self) -> str:
        return f"tcp:127.0.0.1:{self.host_port}" if self.web else f"unix:{self.host_socket}"

    @property
    def broker_url(self) -> str:
        return f"http://127.0.0.1:{self.broker_port}" if self.web else f"unix:{self.broker_socket}"

    @property
    def host_dashboard(self) -> str | None:
        """The host manager's page for a browser (None on a Unix socket)."""
        return f"http://127.0.0.1:{self.host_port}/" if self.web else None

    @property
    def broker_dashboard(self) -> str | None:
        """The broker's page for a browser (None on a Unix socket)."""
        return f"{self.broker_url}/" if self.web else None

    @property
    def host_token(self) -> Path:
        """The host's bearer token, needed on TCP only."""
        return self.root / "host.token"

    def host_token_value(self) -> str | None:
        return self.host_token.read_text().strip() if self.web else None

    @property
    def owner_token(self) -> Path:
        return self.root / "owner.token"

    @property
    def launcher_token(self) -> Path:
        return self.root / "launcher.token"

    def ca_chain(self) -> bytes:
        """The emulated platform's AMD CA file (ASK ‖ ARK), as ``platform export-root`` writes."""
        from sevlaunch.platform.client import PlatformClient

        with PlatformClient(self.platform_socket) as platform:
            return platform.ca_chain()

    def start(self, *, detach: bool = False) -> None:
        self._check_socket_paths()
        self.root.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "platform",
            [
                "platform",
                "serve",
                "--state",
                str(self.root / "platform"),
                "--listen",
                str(self.platform_socket),
                "--profile",
                self.profile,
                "--latency",
                self.latency,
            ],
            self.platform_socket,
            detach,
        )
        if self.es:
            self._cli("platform", "init", "--es", "--platform", str(self.platform_socket))
        if self.snp:
            self._snp_init()
        kds = self._spawn(
            "kds",
            ["platform", "kds", "--platform", str(self.platform_socket)],
            None,
            detach,
            capture=True,
        )
        self.kds_url = self._first_line(kds)
        host = [
            "host",
            "serve",
            "--state",
            str(self.root / "host"),
            "--listen",
            self.host_uri,
            "--platform",
            str(self.platform_socket),
        ]
        if self.web:
            self.host_port, self.broker_port = free_port(), free_port()
            _write_private(self.host_token, secrets.token_hex(24).encode())
            host[host.index("--listen") + 1] = self.host_uri
            host += ["--host-token-file", str(self.host_token)]
        self._spawn("host", host, None if self.web else self.host_socket, detach,
                    until=_answers(self.host_port) if self.web else None)  # fmt: skip
        _write_private(self.root / "kek", secrets.token_bytes(32))
        _write_private(self.owner_token, secrets.token_hex(24).encode())
        _write_private(self.launcher_token, secrets.token_hex(24).encode())
        broker = [
            "broker",
            "serve",
            "--db",
            f"sqlite:///{self.root / 'broker.db'}",
            "--kek-file",
            str(self.root / "kek"),
            "--listen",
            self.broker_url,
        ]
        broker += [
            "--owner-token-file",
            str(self.owner_token),
            "--launcher-token-file",
            str(self.launcher_token),
            "--log-level",
            "warning",
            *self.broker_args,
        ]
        if self.snp:
            broker += ["--kds-url", self.kds_url, "--kds-cache-dir", str(self.root / "kds")]
        self._spawn("broker", broker, None if self.web else self.broker_socket, detach,
                    until=_answers(self.broker_port) if self.web else None)  # fmt: skip

    def _snp_init(self) -> None:
        """SNP up before any guest, as Linux's ccp driver brings it up before SEV: an SEV
        guest started first would leave the platform WORKING, and SNP_INIT needs SEV UNINIT."""
        from sevlaunch.platform import snp_calls
        from sevlaunch.platform.client import PlatformClient

        with PlatformClient(self.platform_socket) as platform:
            platform.run(snp_calls.ensure_snp_init())

    def _check_socket_paths(self) -> None:
        """Every guest's monitor socket lives under the root: refuse a root too deep for one,
        before a hypervisor fails to bind it halfway through a launch."""
        longest = len(os.fsencode(self.root.absolute())) + len(_DEEPEST_SOCKET)
        if longest > SOCKET_PATH_MAX:
            raise UsageError(
                f"work directory {self.root.absolute()} is too long: guest sockets under it "
                f"would be {longest} bytes, Unix sockets take at most {SOCKET_PATH_MAX}; "
                f"choose a directory of at most {SOCKET_PATH_MAX - len(_DEEPEST_SOCKET)} bytes"
            )

    def _cli(self, *args: str) -> None:
        done = subprocess.run(cli(*args), capture_output=True, check=False)
        if done.returncode:
            raise SevlaunchError(
                f"sevlaunch {' '.join(args)} failed: {done.stderr.decode().strip()}"
            )

    def _spawn(
        self,
        name: str,
        args: list[str],
        ready: Path | None,
        detach: bool,
        *,
        capture: bool = False,
        until: Callable[[Service], bool] | None = None,
    ) -> Service:
        service = start_service(
            name,
            cli(*args),
            log=self.root / f"{name}.log",
            ready=ready,
            until=until,
            capture=capture,
            detach=detach,
        )
        self.services.append(service)
        return service

    @staticmethod
    def _first_line(service: Service) -> str:
        stdout = service.process.stdout
        if stdout is None:
            raise SevlaunchError(f"the {service.name} service's output is not captured")
        line = stdout.readline().decode().strip()
        if not line:
            raise SevlaunchError(
                f"the {service.name} service failed to start: {service.log_tail()}"
            )
        return line

    def stop(self) -> None:
        for service in reversed(self.services):
            with contextlib.suppress(OSError):
                service.stop()
        self.services.clear()
