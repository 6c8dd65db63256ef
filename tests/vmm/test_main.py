"""The ``sevlaunch-vmm`` process: start-up failures, -daemonize, signals, and a QMP socket that
stays up whatever a client sends (garbage, huge inputs, wrong types, vanishing clients)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import VmmStartupError
from sevlaunch.vmm import main as vmm_main
from sevlaunch.vmm.cmdline import parse_cmdline
from tests.vmm import libvirt_argv
from tests.vmm.conftest import (
    CBITPOS,
    CMDLINE,
    WAIT_LIMIT,
    Media,
    Owner,
    VmmProcess,
    next_event,
    qmp_connect,
    run_async,
    vmm_argv,
)

# ---- start-up, in process (only failures: a successful start serves forever) ------------


def test_unknown_option_is_refused_as_qemu_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert vmm_main.main(["-frobnicate"]) == 1
    assert capsys.readouterr().err.startswith("sevlaunch-vmm: -frobnicate: invalid option")


def test_missing_firmware_is_refused(
    capsys: pytest.CaptureFixture[str], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(vmm_main.DEVICE_ENV, str(work / "absent.sock"))
    assert vmm_main.main(["-machine", "q35", "-qmp", f"unix:{work / 'q'},server=on,wait=off"]) == 1
    assert "no firmware given: use -bios FILE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("absent.sock", "SEV: Failed to open {path}: No such file or directory"),
        ("regular-file", "not the socket of a sevlaunch platform service"),
    ],
)
def test_an_unusable_sev_device_is_refused(
    capsys: pytest.CaptureFixture[str],
    work: Path,
    media: Media,
    owner: Owner,
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    expected: str,
) -> None:
    path = work / device
    if device == "regular-file":
        path.write_text("")
    monkeypatch.setenv(vmm_main.DEVICE_ENV, str(path))
    assert vmm_main.main(vmm_argv(work, media, owner.session(work))) == 1
    assert expected.format(path=path) in capsys.readouterr().err


def test_cbitpos_must_be_the_hosts(vmm: VmmProcess, media: Media, owner: Owner) -> None:
    done = vmm.run(vmm_argv(vmm.work, media, owner.session(vmm.work), cbitpos=51))
    assert done.returncode == 1
    assert "cbitpos check failed, host '47' requested '51'" in done.stderr


# ---- -daemonize and signals --------------------------------------------------------------


def _exited(pid: int) -> bool:
    """Gone, or a zombie: a daemon is reparented to init, which reaps when it pleases."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not _exited(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"daemon {pid} still runs after {WAIT_LIMIT} s")
        time.sleep(0.01)


def test_daemonize_returns_once_started(vmm: VmmProcess, media: Media, owner: Owner) -> None:
    done = vmm.run(vmm_argv(vmm.work, media, owner.session(vmm.work), extra=["-daemonize"]))
    assert done.returncode == 0, done.stderr
    pid = int((vmm.work / "vmm.pid").read_text())
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.connect(vmm.qmp)  # listening already: no waiting after -daemonize returned
    probe.close()

    async def drive() -> None:
        qmp = await qmp_connect(vmm.qmp)
        assert (await qmp.execute("query-sev"))["state"] == "launch-secret"
        await qmp.execute("quit")

    run_async(drive)
    _wait_gone(pid)
    assert not (vmm.work / "vmm.pid").exists()


def test_daemonize_fails_with_the_start_up(vmm: VmmProcess, media: Media, owner: Owner) -> None:
    launch = owner.session(vmm.work, policy=0x1)
    done = vmm.run(vmm_argv(vmm.work, media, launch, policy=0x3, extra=["-daemonize"]))
    assert done.returncode == 1
    assert "fw_error=11 'Bad measurement'" in done.stderr
    assert not (vmm.work / "vmm.pid").exists()


def test_sigterm_emits_shutdown_and_exits_cleanly(
    vmm: VmmProcess, media: Media, owner: Owner
) -> None:
    vmm.start(vmm_argv(vmm.work, media, owner.session(vmm.work)))
    assert vmm.proc is not None
    proc = vmm.proc

    async def drive() -> dict[str, Any]:
        qmp = await qmp_connect(vmm.qmp)
        proc.send_signal(signal.SIGTERM)
        return await next_event(qmp, "SHUTDOWN")

    assert run_async(drive) == {"guest": False, "reason": "host-signal"}
    assert vmm.wait() == 0
    assert "terminating on signal 15" in vmm.stderr
    assert not (vmm.work / "vmm.pid").exists()


# ---- QMP robustness against the running VMM -----------------------------------------------


class RawQmp:
    """A hand-rolled QMP client, to send what qemu.qmp never would."""

    def __init__(self, path: str, *, negotiate: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT_LIMIT)
        self.sock.connect(path)
        self.buffer = b""
        assert "QMP" in self.message()
        if negotiate:
            assert self.command({"execute": "qmp_capabilities"}) == {"return": {}}

    def message(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the VMM closed the QMP connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        assert line.endswith(b"\r"), "QMP output lines end in CRLF"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def reply(self) -> dict[str, Any]:
        while "event" in (message := self.message()):
            pass
        return message

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(json.dumps(request).encode())  # no newline, as qemu.qmp sends
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def _error(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    return f"{reply['error']['class']}: {reply['error']['desc']}"


@pytest.fixture
def running(vmm: VmmProcess, media: Media, owner: Owner) -> VmmProcess:
    vmm.start(vmm_argv(vmm.work, media, owner.session(vmm.work)))
    return vmm


def _still_serving(vmm: VmmProcess) -> None:
    qmp = RawQmp(vmm.qmp)
    assert qmp.command({"execute": "query-status", "id": 1}) == {
        "return": {"status": "prelaunch", "running": False},
        "id": 1,
    }
    qmp.close()
    assert vmm.proc is not None
    assert vmm.proc.poll() is None


def test_garbage_gets_errors_and_the_connection_goes_on(running: VmmProcess) -> None:
    qmp = RawQmp(running.qmp)
    qmp.send(b"\x00\xffgarbage } ] {,} 'single' 1e999999 ")
    qmp.send(json.dumps({"execute": "query-name", "id": "after"}).encode())
    errors = []
    while (reply := qmp.reply()).get("id") != "after":
        errors.append(_error(reply))
    assert errors
    assert all(e.startswith("GenericError: ") for e in errors), errors
    assert reply == {"return": {"name": "t1"}, "id": "after"}
    assert _error(qmp.command({"id": 7, "arguments": {}})) == (
        "GenericError: QMP input lacks member 'execute'"
    )
    assert _error(qmp.command({"execute": "no-such-command"})) == (
        "CommandNotFound: The command no-such-command has not been found"
    )
    qmp.close()
    _still_serving(running)


def test_huge_inputs_are_refused_not_buffered(running: VmmProcess) -> None:
    qmp = RawQmp(running.qmp)
    huge = {
        "execute": "sev-inject-launch-secret",
        "arguments": {"packet-header": "A" * (3 << 20), "secret": "A"},
    }
    reply = qmp.command(huge)
    assert _error(reply) == "GenericError: JSON token size limit exceeded"
    deep = b"[" * 100_000 + b"]" * 100_000
    qmp.send(deep)
    assert _error(qmp.reply()) == "GenericError: JSON nesting depth limit exceeded"
    assert qmp.command({"execute": "query-sev"})["return"]["state"] == "launch-secret"
    qmp.close()
    _still_serving(running)


UNBACKED = (
    "SEV: Failed to calculate guest address: guest physical range "
    "[0xffffffffffffffff, 0x10000000000000000) is not backed by RAM or flash"
)  # QEMU takes -1 for a uint64 as two's complement


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"packet-header": 5, "secret": "AA=="}, "Invalid parameter type for 'packet-header', expected: string"),
        ({"packet-header": "AA==", "secret": ["x"]}, "Invalid parameter type for 'secret', expected: string"),
        ({"packet-header": "AA==", "secret": "AA==", "gpa": -1}, UNBACKED),
        ({"packet-header": "AA==", "secret": "AA==", "gpa": "0x800000"}, "Parameter 'gpa' expects uint64"),
        ({"packet-header": "AA=="}, "Parameter 'secret' is missing"),
        ({"packet-header": "AA==", "secret": "AA==", "bogus": 1}, "Parameter 'bogus' is unexpected"),
    ],
)  # fmt: skip
def test_wrong_argument_types_and_unknown_arguments(
    running: VmmProcess, arguments: dict[str, Any], expected: str
) -> None:
    qmp = RawQmp(running.qmp)
    request = {"execute": "sev-inject-launch-secret", "arguments": arguments}
    assert _error(qmp.command(request)) == f"GenericError: {expected}"
    assert _error(qmp.command({"execute": "query-status", "arguments": {"verbose": True}})) == (
        "GenericError: Parameter 'verbose' is unexpected"
    )
    qmp.close()
    _still_serving(running)


def test_clients_that_vanish_mid_command_do_not_hurt(running: VmmProcess) -> None:
    half = RawQmp(running.qmp)
    half.send(b'{"execute": "query-sev-launch-me')  # half a message, then gone
    half.close()
    gone = RawQmp(running.qmp)
    gone.send(json.dumps({"execute": "query-sev-capabilities"}).encode())
    gone.sock.shutdown(socket.SHUT_RDWR)  # the reply has nowhere to go
    gone.close()
    unnegotiated = RawQmp(running.qmp, negotiate=False)
    assert _error(unnegotiated.command({"execute": "cont"})) == (
        "CommandNotFound: Expecting capabilities negotiation with 'qmp_capabilities'"
    )
    unnegotiated.close()
    _still_serving(running)
    flood = [RawQmp(running.qmp) for _ in range(20)]
    for client in flood:
        client.send(b'{"execute": "query-status"}' * 50)
        client.close()
    _still_serving(running)


# ---- as libvirt runs it ---------------------------------------------------------------------


def test_libvirts_capability_probe(vmm: VmmProcess) -> None:
    """virQEMUCapsInitQMP's command line and the QMP it sends; every answer is a success."""
    done = vmm.run(libvirt_argv.probe(Path(vmm.qmp), vmm.work / "vmm.pid"))
    assert done.returncode == 0, done.stderr
    pid = int((vmm.work / "vmm.pid").read_text())
    qmp = RawQmp(vmm.qmp)
    for request in LIBVIRT_PROBE:
        reply = qmp.command({**request, "id": "libvirt-x"})
        assert "return" in reply, (request, reply)
    caps = qmp.command({"execute": "query-sev-capabilities"})["return"]
    assert caps["cbitpos"] == CBITPOS
    assert caps["reduced-phys-bits"] == 1
    qmp.command({"execute": "quit"})
    qmp.close()
    _wait_gone(pid)


LIBVIRT_PROBE: list[dict[str, Any]] = [
    {"execute": "query-version"},
    {"execute": "query-target"},
    {"execute": "query-qmp-schema"},
    {"execute": "query-commands"},
    {"execute": "query-kvm"},
    {"execute": "qom-list-types"},
    {"execute": "qom-list-properties", "arguments": {"typename": "memory-backend-file"}},
    {"execute": "qom-list-properties", "arguments": {"typename": "memory-backend-memfd"}},
    {"execute": "query-machines"},
    {"execute": "qom-list-properties", "arguments": {"typename": "none-machine"}},
    {"execute": "query-cpu-definitions"},
    {"execute": "query-tpm-models"},
    {"execute": "query-tpm-types"},
    {"execute": "query-command-line-options"},
    {"execute": "query-migrate-capabilities"},
]


def test_libvirts_domain_start_and_reconnect(vmm: VmmProcess, media: Media, owner: Owner) -> None:
    """The monitor as a listening fd, the serial file as an -add-fd descriptor, and the QMP
    libvirt sends at start (qemuProcessLaunch) and on reconnect (qemuProcessReconnect)."""
    launch = owner.session(vmm.work)
    monitor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    monitor.bind(vmm.qmp)
    monitor.listen()
    console = vmm.work / "console.log"
    serial_fd = os.open(console, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    argv = libvirt_argv.domain(
        name="t1",
        firmware=media.firmware,
        kernel=media.kernel,
        initrd=media.initrd,
        cmdline=CMDLINE,
        disk=media.disk,
        monitor_fd=monitor.fileno(),
        serial_fd=serial_fd,
        sev=libvirt_argv.sev_guest(CBITPOS, launch.policy, launch.godh, launch.session),
        master_key=vmm.work / "master-key.aes",
    )
    try:
        vmm.start(argv, pass_fds=(monitor.fileno(), serial_fd))
    finally:
        monitor.close()
        os.close(serial_fd)
    for sequence in (LIBVIRT_START, LIBVIRT_RECONNECT):
        qmp = RawQmp(vmm.qmp)
        for request in sequence:
            reply = qmp.command({**request, "id": "libvirt-x"})
            assert "return" in reply, (request, reply)
        qmp.close()
    qmp = RawQmp(vmm.qmp)
    assert qmp.command({"execute": "query-status"})["return"]["status"] == "prelaunch"
    assert qmp.command({"execute": "query-sev"})["return"]["state"] == "launch-secret"
    assert qmp.command({"execute": "cont"}) == {"return": {}}
    qmp.close()
    deadline = time.monotonic() + WAIT_LIMIT
    while "boot complete" not in console.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "BlobVerifierSevHashes: kernel hash ok" in console.read_text()


LIBVIRT_START: list[dict[str, Any]] = [
    {"execute": "query-migrate-capabilities"},
    {
        "execute": "migrate-set-capabilities",
        "arguments": {"capabilities": [{"capability": "events", "state": True}]},
    },
    {"execute": "query-chardev"},
    {"execute": "query-hotpluggable-cpus"},
    {"execute": "query-cpus-fast"},
    {"execute": "qom-list", "arguments": {"path": "/machine/unattached/device[0]"}},
    {"execute": "query-named-block-nodes", "arguments": {"flat": True}},
    {"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}},
    {"execute": "query-block"},
]
LIBVIRT_RECONNECT: list[dict[str, Any]] = [
    {"execute": "query-migrate-capabilities"},
    {"execute": "query-status"},
    {"execute": "query-hotpluggable-cpus"},
    {"execute": "query-cpus-fast"},
    {"execute": "query-block"},
    {"execute": "query-chardev"},
    {"execute": "query-jobs"},
    {"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}},
    {"execute": "query-sev-launch-measure"},
    {"execute": "query-sev"},
]


def test_the_sev_device_is_found_without_an_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libvirt clears the environment: /dev/sev (a link to the socket), else the default socket."""
    monkeypatch.delenv(vmm_main.DEVICE_ENV, raising=False)
    plain = parse_cmdline([])
    fixed, dev = tmp_path / "platform.sock", tmp_path / "sev"
    assert vmm_main.sev_device_path(plain, (str(fixed),), str(dev)) == "/dev/sev"
    fixed.write_bytes(b"")
    assert vmm_main.sev_device_path(plain, (str(fixed),), str(dev)) == str(fixed)
    dev.symlink_to(tmp_path / "elsewhere.sock")  # a link, even dangling, is the device
    assert vmm_main.sev_device_path(plain, (str(fixed),), str(dev)) == "/dev/sev"
    monkeypatch.setenv(vmm_main.DEVICE_ENV, "/tmp/env.sock")
    assert vmm_main.sev_device_path(plain, (str(fixed),), str(dev)) == "/tmp/env.sock"
    explicit = parse_cmdline(
        [
            "-object",
            "sev-guest,id=s,reduced-phys-bits=1,sev-device=/x.sock",
            "-machine",
            "q35,confidential-guest-support=s",
        ]
    )
    assert vmm_main.sev_device_path(explicit, (str(fixed),), str(dev)) == "/x.sock"


def test_the_default_socket_is_where_platform_serve_listens_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform and a hypervisor both started with their defaults find each other."""
    from sevlaunch.cli._conn import default_platform

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert vmm_main.default_sockets()[0] == default_platform().removeprefix("unix:")
    assert vmm_main.default_sockets()[-1] == "/run/sevlaunch/platform.sock"
    monkeypatch.delenv(vmm_main.DEVICE_ENV, raising=False)
    (tmp_path / "sevlaunch").mkdir()
    (tmp_path / "sevlaunch" / "platform.sock").write_bytes(b"")
    found = vmm_main.sev_device_path(parse_cmdline([]), dev_sev=str(tmp_path / "no-dev-sev"))
    assert found == str(tmp_path / "sevlaunch" / "platform.sock")


def test_a_host_device_node_must_be_a_device(tmp_path: Path) -> None:
    """QEMU's file-posix: ``host_device`` opens block and character devices only."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(512))
    storage = {"driver": "host_device", "filename": str(image), "node-name": "s"}
    config = parse_cmdline(["-blockdev", json.dumps(storage), "-bios", str(image)])
    with pytest.raises(VmmStartupError, match="'host_device' driver requires"):
        vmm_main.machine_spec(config)
    char = dict(storage, filename="/dev/null")
    spec = vmm_main.machine_spec(
        parse_cmdline(["-blockdev", json.dumps(char), "-bios", str(image)])
    )
    assert spec.firmware == image


def test_linux_names_the_disks_by_their_bus() -> None:
    config = parse_cmdline(
        [
            "-machine",
            "pc",
            "-drive",
            "file=/a,if=virtio",
            "-drive",
            "file=/b,if=ide",
            "-drive",
            "file=/c,if=virtio",
        ]
    )
    assert vmm_main.guest_disk_names(config.disks) == ("vda", "sda", "vdb")
