"""The QEMU driver: spawning, the monitor wait that reports the hypervisor's own error,
QMP errors as libvirt words them, and finding a guest again without trusting a stale pid."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu.qmp import ConnectError

from sevlaunch.errors import HostError
from sevlaunch.host import driver
from tests.host.conftest import VMM, wait_for


@pytest.fixture
def paths(short_dir: Path) -> driver.RunPaths:
    return driver.RunPaths(short_dir / "run")


@pytest.fixture
def sleeper(paths: driver.RunPaths) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose argv names the run directory's QMP socket (but serves no monitor)."""
    code = "import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(paths.qmp)])
    yield proc
    proc.kill()
    proc.wait()


def test_pid_helpers(paths: driver.RunPaths) -> None:
    paths.root.mkdir(parents=True)
    assert driver.read_pidfile(paths.pidfile) is None
    paths.pidfile.write_text("1234\n")
    assert driver.read_pidfile(paths.pidfile) == 1234
    paths.pidfile.write_text("garbage")
    assert driver.read_pidfile(paths.pidfile) is None
    assert driver.pid_alive(None) is False
    zombie = subprocess.Popen(["true"])  # exits at once and stays a zombie until wait()
    wait_for(lambda: not driver.pid_alive(zombie.pid), 5, "the zombie to count as dead")
    zombie.wait()


def test_missing_binary_is_cannot_execute(paths: driver.RunPaths) -> None:
    with pytest.raises(HostError, match="cannot execute binary /nonexistent/qemu"):
        asyncio.run(driver.spawn("/nonexistent/qemu", [], paths, {}))


def test_a_hypervisor_dying_at_start_is_reported_with_its_words(paths: driver.RunPaths) -> None:
    async def main() -> None:
        proc = await driver.spawn(VMM, ["-bogus"], paths, {})
        exited = asyncio.ensure_future(proc.wait())
        await driver.connect(proc.pid, paths, exited)

    with pytest.raises(HostError) as caught:
        asyncio.run(main())
    assert caught.value.kind == "internal error"
    assert "process exited while connecting to monitor" in caught.value.detail
    assert "-bogus: invalid option" in caught.value.detail


def test_a_monitor_socket_nobody_answers_times_out_with_the_connect_error_as_cause(
    paths: driver.RunPaths, sleeper: subprocess.Popen[bytes]
) -> None:
    """The socket path exists but nothing listens: the wait retries only on connection errors
    and, at its deadline, names the last one and keeps it as the cause."""
    paths.root.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(paths.qmp))  # bound, never listening: connect() is refused
    try:
        with pytest.raises(HostError) as caught:
            asyncio.run(driver.connect(sleeper.pid, paths, timeout=0.3))
    finally:
        dead.close()
    assert caught.value.kind == "internal error"
    assert caught.value.detail.startswith(f"timed out waiting for the monitor socket {paths.qmp}: ")
    assert isinstance(caught.value.__cause__, ConnectError)


def test_qmp_errors_read_like_libvirts(paths: driver.RunPaths) -> None:
    argv = ["-S", "-machine", "none", "-display", "none"]
    argv += ["-qmp", f"unix:{paths.qmp},server=on,wait=off", "-pidfile", str(paths.pidfile)]

    async def main() -> tuple[dict[str, object], HostError]:
        proc = await driver.spawn(VMM, argv, paths, {})
        client = await driver.connect(proc.pid, paths)
        try:
            status = await driver.qmp_execute(client, "query-status")
            arguments = {"packet-header": "AA==", "secret": "AA=="}
            with pytest.raises(HostError) as caught:
                await driver.qmp_execute(client, "sev-inject-launch-secret", arguments)
            assert driver.find_hypervisor(paths, None) == proc.pid
        finally:
            await client.disconnect()
            await driver.terminate(proc.pid)
            await proc.wait()
        return status, caught.value

    status, error = asyncio.run(main())
    assert status["running"] is False
    assert error.kind == "internal error"
    assert error.detail.startswith(
        "unable to execute QEMU command 'sev-inject-launch-secret': GenericError:"
    )


def test_find_hypervisor_never_trusts_a_recycled_pid(
    paths: driver.RunPaths, sleeper: subprocess.Popen[bytes]
) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        paths.root.mkdir(parents=True)
        paths.pidfile.write_text(f"{stranger.pid}\n")
        # the pid file and the record name a live process that is not ours: the scan finds ours
        assert driver.find_hypervisor(paths, stranger.pid) == sleeper.pid
        sleeper.kill()
        sleeper.wait()
        assert driver.find_hypervisor(paths, stranger.pid) is None
    finally:
        stranger.kill()
        stranger.wait()


def test_terminate_escalates_to_sigkill(paths: driver.RunPaths) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()  # SIGTERM is ignored from here on
    asyncio.run(driver.terminate(proc.pid, grace=0.2))
    assert proc.wait(5) == -9


def test_a_hypervisor_killed_before_it_wrote_anything_is_named_by_how_it_ended(
    paths: driver.RunPaths,
) -> None:
    """SIGKILL (the OOM killer) leaves an empty log: the error says how the process ended
    instead of nothing after libvirt's colon."""

    async def main() -> None:
        proc = await driver.spawn("/bin/sh", ["-c", "kill -9 $$"], paths, {})
        exited = asyncio.ensure_future(proc.wait())
        await driver.connect(proc.pid, paths, exited)

    with pytest.raises(HostError) as caught:
        asyncio.run(main())
    assert caught.value.detail.endswith(
        "process exited while connecting to monitor: (no output; killed by SIGKILL)"
    )


def test_exit_words() -> None:
    assert driver.exited_words("boom", -9) == "process exited while connecting to monitor: boom"
    assert driver.exited_words("", 3).endswith(": (no output; exit status 3)")
    assert driver.exited_words("", -200).endswith(": (no output; killed by signal 200)")
    assert driver.exited_words("", None) == "process exited while connecting to monitor: "
