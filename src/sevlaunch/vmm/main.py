"""``sevlaunch-vmm``: the emulated hypervisor process, started and driven like qemu-system-x86_64.

Start-up follows QEMU: parse the command line (QEMU's messages on error, exit 1), bring up the
SEV guest (LAUNCH_START, LAUNCH_UPDATE_DATA of the firmware and kernel hashes, LAUNCH_MEASURE
at machine-init-done) and only then serve QMP; ``-daemonize`` returns once that succeeded.
The SEV device is the platform service's socket: ``sev-device=PATH``; when the object leaves
the default ``/dev/sev``, ``$SEVLAUNCH_SEV_DEVICE``, else ``/dev/sev`` itself (a symlink to the
socket, as ``sevlaunch platform install-libvirt`` makes it: libvirt clears the environment and
gives the hypervisor a private /dev holding that link), else where ``sevlaunch platform serve``
listens by default (:func:`default_socket`: ``RUNDIR/platform.sock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sevlaunch.errors import (
    CommandLineError,
    FirmwareError,
    PlatformError,
    SevlaunchError,
    VmmStartupError,
)
from sevlaunch.qmp import QMPServer, VersionInfo
from sevlaunch.vmm.cmdline import DiskImage, VmConfig, parse_cmdline
from sevlaunch.vmm.cmdline import SevGuestConfig as ParsedSevGuest
from sevlaunch.vmm.console import Console
from sevlaunch.vmm.machine import EVENTS, MEASUREMENT_EVENT, Machine, MachineSpec
from sevlaunch.vmm.port import SevPlatform
from sevlaunch.vmm.qmp_commands import VmmCommands
from sevlaunch.vmm.qmp_probe import ProbeCommands, accel_of
from sevlaunch.vmm.qmp_runtime import RuntimeCommands
from sevlaunch.vmm.sev import SevGuestConfig

if TYPE_CHECKING:  # SNP's modules load only for an SNP guest
    from sevlaunch.vmm.snp_port import SnpPlatform

PROG = "sevlaunch-vmm"
DEVICE_ENV = "SEVLAUNCH_SEV_DEVICE"
DEFAULT_DEVICE = "/dev/sev"


#: Root's RUNDIR socket, also looked at when the environment names another RUNDIR (libvirt
#: clears the environment and may run the hypervisor as another user).
ROOT_SOCKET = "/run/sevlaunch/platform.sock"


def default_sockets() -> tuple[str, ...]:
    """Where the VMM looks when there is no /dev/sev and no $SEVLAUNCH_SEV_DEVICE: the
    platform service's default socket (``RUNDIR/platform.sock``), so a platform started with
    its defaults is found by a hypervisor started with its own; then root's."""
    from sevlaunch._files import default_run_dir

    return tuple(dict.fromkeys((str(default_run_dir() / "platform.sock"), ROOT_SOCKET)))


def sev_device_path(
    config: VmConfig, sockets: tuple[str, ...] | None = None, dev_sev: str = DEFAULT_DEVICE
) -> str:
    """The SEV device to open; ``dev_sev`` is where /dev/sev is looked for (tests move it)."""
    guest = config.sev_guest or config.snp_guest
    configured = guest.sev_device if guest else DEFAULT_DEVICE
    if configured != DEFAULT_DEVICE:
        return configured
    if DEVICE_ENV in os.environ:
        return os.environ[DEVICE_ENV]
    if not os.path.lexists(dev_sev):
        for socket_path in default_sockets() if sockets is None else sockets:
            if os.path.exists(socket_path):
                return socket_path
    return DEFAULT_DEVICE


def open_device(path: str) -> tuple[SevPlatform | None, str]:
    """The platform behind ``path`` or why there is none (QEMU's "Failed to open" text)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return None, f"SEV: Failed to open {path}: {exc.strerror}"
    if stat.S_ISCHR(mode):
        return None, (
            f"SEV: {path} is a real SEV device; sevlaunch-vmm emulates SEV on the sevlaunch "
            "platform service: run qemu-system-x86_64 on this host instead"
        )
    if not stat.S_ISSOCK(mode):
        return None, f"SEV: Failed to open {path}: not the socket of a sevlaunch platform service"
    from sevlaunch.vmm.platform_port import EmulatedSevPlatform

    return EmulatedSevPlatform(path), ""


def check_host_devices(config: VmConfig) -> None:
    """QEMU's ``host_device`` driver opens only block and character devices (block/file-posix.c)."""
    for node in config.blockdevs:
        if node.driver != "host_device" or node.filename is None:
            continue
        try:
            mode = os.stat(node.filename).st_mode
        except OSError as exc:
            raise VmmStartupError(
                f"-blockdev node-name={node.node_name}: Could not open '{node.filename}': "
                f"{exc.strerror}"
            ) from exc
        if not (stat.S_ISBLK(mode) or stat.S_ISCHR(mode)):
            raise VmmStartupError(
                f"-blockdev node-name={node.node_name}: 'host_device' driver requires "
                f"'{node.filename}' to be either a character or block device"
            )


def machine_spec(config: VmConfig) -> MachineSpec:
    check_host_devices(config)
    if config.firmware is None:
        raise VmmStartupError(
            "no firmware given: use -bios FILE or -drive if=pflash,unit=0,file=FILE"
        )
    sev = config.sev_guest
    return MachineSpec(
        snp=config.snp_guest,
        fw_cfg=fw_cfg_blobs(config),
        name=config.name or "",
        memory=config.memory,
        firmware=Path(config.firmware),
        start_paused=config.start_paused,
        sev=_sev_config(sev) if sev is not None else None,
        kernel=Path(config.kernel) if config.kernel else None,
        initrd=Path(config.initrd) if config.initrd else None,
        append=config.append,
        disks=tuple(Path(d.file) for d in config.disks),
        disk_names=guest_disk_names(config.disks),
        vcpus=config.smp.cpus,
        cpu_model=config.cpu_model or "qemu64",
        no_shutdown=config.no_shutdown,
    )


def fw_cfg_blobs(config: VmConfig) -> tuple[tuple[str, bytes], ...]:
    """The ``-fw_cfg`` files' contents, read at start-up as QEMU reads them."""
    out = []
    for entry in config.fw_cfg:
        if entry.string is not None:
            out.append((entry.name, entry.string.encode()))
            continue
        try:
            out.append((entry.name, Path(entry.file or "").read_bytes()))
        except OSError as exc:
            raise VmmStartupError(f"-fw_cfg name={entry.name}: can't load {entry.file}") from exc
    return tuple(out)


def guest_disk_names(disks: Sequence[DiskImage]) -> tuple[str, ...]:
    """The names Linux gives the disks: virtio-blk ``vdX``, ATA and SCSI ``sdX``, CD-ROMs ``srN``."""
    counters = {"vd": 0, "sd": 0, "sr": 0}
    names = []
    for disk in disks:
        prefix = (
            "vd" if disk.driver.startswith("virtio") else "sr" if disk.driver == "ide-cd" else "sd"
        )
        number = counters[prefix]
        counters[prefix] += 1
        names.append(f"sr{number}" if prefix == "sr" else prefix + chr(ord("a") + number))
    return tuple(names)


def _sev_config(sev: ParsedSevGuest) -> SevGuestConfig:

    def blob(path: str | None, prop: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:  # QEMU's sev_read_file_base64 text, with glib's reason
            raise VmmStartupError(
                f"SEV: Failed to read '{path}' (Failed to open file “{path}”: {exc.strerror}); "
                f"check the sev-guest {prop} property"
            ) from exc

    return SevGuestConfig(
        cbitpos=sev.cbitpos,
        reduced_phys_bits=sev.reduced_phys_bits,
        policy=sev.policy,
        handle=sev.handle,
        dh_cert_b64=blob(sev.dh_cert_file, "dh-cert-file"),
        session_b64=blob(sev.session_file, "session-file"),
        kernel_hashes=sev.kernel_hashes,
        legacy_vm_type=sev.legacy_vm_type,
    )


async def _start_machine(
    config: VmConfig,
    device: SevPlatform | None,
    device_error: str,
    server: QMPServer,
    console: Console,
) -> Machine | None:
    """Machine init as QEMU does it before the monitor runs; ``-machine none`` has none."""
    if config.machine_type == "none":
        return None
    spec = machine_spec(config)
    if (spec.sev is not None or spec.snp is not None) and device is None:
        raise VmmStartupError(f"sev_common_kvm_init: {device_error}")

    def emit(name: str, data: dict[str, Any] | None) -> None:
        # the measurement is announced before QMP listens: latch it for clients that connect later
        server.emit(name, data, latch=name == MEASUREMENT_EVENT)

    snp = _snp_device(device) if spec.snp is not None else None
    machine = Machine(spec, device if spec.sev else None, emit, console, snp_platform=snp)
    try:
        await machine.init()
    except (SevlaunchError, FirmwareError, PlatformError) as exc:
        await machine.teardown()
        raise VmmStartupError(str(exc)) from exc
    return machine


def _snp_device(device: SevPlatform | None) -> SnpPlatform | None:
    from sevlaunch.vmm.platform_port import EmulatedSevPlatform

    return device.snp() if isinstance(device, EmulatedSevPlatform) else None


#: The longest Unix socket path (sun_path holds 108 bytes with the terminating NUL).
UNIX_PATH_MAX = 107


async def _listen(server: QMPServer, config: VmConfig) -> None:
    for endpoint in config.qmp:
        if endpoint.path is not None:
            if len(os.fsencode(endpoint.path)) > UNIX_PATH_MAX:  # QEMU's words for it
                raise VmmStartupError(f"UNIX socket path '{endpoint.path}' is too long")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(endpoint.path)
            try:
                await server.start_unix(endpoint.path)
            except OSError as exc:
                raise VmmStartupError(
                    f"Failed to bind socket to {endpoint.path}: {exc.strerror}"
                ) from exc
        elif endpoint.fd is not None:
            await server.start_socket(socket.socket(fileno=endpoint.fd))


async def run(config: VmConfig, started: asyncio.Future[None] | None = None) -> int:
    server = QMPServer(VersionInfo(9, 1, 0, "sevlaunch-vmm"))
    console = Console(config.serials)
    device, device_error = open_device(sev_device_path(config))
    done = asyncio.Event()
    machine = await _start_machine(config, device, device_error, server, console)
    VmmCommands(machine, config.name, device, device_error, done.set).register(server)
    RuntimeCommands(config, console.ptys).register(server)
    ProbeCommands(accel_of(config), EVENTS).register(server)
    try:
        await _listen(server, config)
    except VmmStartupError:
        if machine is not None:
            await machine.teardown()
        raise
    if config.pidfile:
        Path(config.pidfile).write_text(f"{os.getpid()}\n")
    if started is not None:
        started.set_result(None)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, _on_signal, sig, machine, server, done)
    waiters = [asyncio.ensure_future(done.wait())]
    if machine is not None:
        waiters.append(asyncio.ensure_future(machine.shutdown_requested.wait()))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.sleep(0.05)  # let the SHUTDOWN event and the quit reply reach the clients
    await server.close()
    if machine is not None:
        await machine.teardown()
    console.close()
    for leftover in (config.pidfile, *(e.path for e in config.qmp)):
        if leftover:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return machine.exit_code if machine is not None else 0


def _on_signal(sig: int, machine: Machine | None, server: QMPServer, done: asyncio.Event) -> None:
    print(f"{PROG}: terminating on signal {sig}", file=sys.stderr, flush=True)
    if machine is not None:
        machine.signal_shutdown()
    else:
        server.emit("SHUTDOWN", {"guest": False, "reason": "host-signal"})
    done.set()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_cmdline(args)
    except CommandLineError as exc:
        print(exc.report(PROG), file=sys.stderr)
        return 1
    if config.daemonize:
        return _daemonize(config)
    try:
        return asyncio.run(run(config))
    except VmmStartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1


def _daemonize(config: VmConfig) -> int:
    """QEMU's -daemonize: the parent returns 0 only once the child finished start-up."""
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            status = pipe.read(1)
        return 0 if status == b"\0" else 1
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)

    async def child() -> int:
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        started.add_done_callback(lambda _f: _report(write_fd, b"\0"))
        return await run(config, started)

    try:
        code = asyncio.run(child())
    except VmmStartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        _report(write_fd, b"\1")
        code = 1
    os._exit(code)


def _report(fd: int, status: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, status)
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
