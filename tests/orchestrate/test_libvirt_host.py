"""The VM tool drives Debian's libvirtd through libvirt-python: the same 13 steps as on
sevlaunch's host manager, with the broker as guest owner; a libvirtd restart mid-launch; and,
side by side on one platform, the same sev-guest object and the same launch digest.

One emulated host (platform, key server, sevlaunch's host manager, broker: ``Stack``) serves
both host managers: the tests' libvirtd uses the Stack's platform (:mod:`tests.libvirtd`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sevlaunch.errors import HostError, QemuCommandError
from sevlaunch.firmware import PROFILES
from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate.demo import Artifacts, domain_xml, make_artifacts, register_workload
from sevlaunch.orchestrate.host_port import connect, is_libvirt_uri
from sevlaunch.orchestrate.launch import Launcher, LaunchResult, StepRecord
from sevlaunch.orchestrate.libvirt_host import LibvirtHost, _host_error
from sevlaunch.orchestrate.owner_port import BrokerOwner
from sevlaunch.orchestrate.services import Stack
from sevlaunch.protocol import Step
from tests.libvirtd import SEVLAUNCH, VMM, WAIT, Libvirtd, running_libvirtd

WORKLOAD = "demo"
DISK_LINE = "disk label 'sevlaunch-demo-root'"


@dataclass
class Env:
    stack: Stack
    libvirtd: Libvirtd
    art: Artifacts

    def xml(self, name: str) -> str:
        """demo's guest for both host managers: the VMM as emulator, a pty serial port."""
        base = domain_xml(name, self.art, self.art.firmware)
        return base.replace(
            "<devices>",
            f"<devices>\n    <emulator>{VMM}</emulator>\n    <controller type='usb' "
            "model='none'/>\n    <memballoon model='none'/>\n    <serial type='pty'/>",
        )

    def owner(self) -> BrokerOwner:
        return BrokerOwner(
            self.stack.broker_url, self.stack.launcher_token.read_bytes().strip(), WORKLOAD
        )

    def launch(self, host: object, name: str, **kwargs: object) -> LaunchResult:
        launcher = Launcher(
            host,  # type: ignore[arg-type]
            self.owner(),
            self.xml(name),
            kds_url=self.stack.kds_url,
            **kwargs,  # type: ignore[arg-type]
        )
        return launcher.run()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="sevlvs-", dir="/tmp"))
    root.chmod(0o755)  # libvirt's qemu user reaches the platform socket through it
    stack = Stack(root / "s")
    stack.start()
    try:
        with running_libvirtd(stack.platform_socket) as daemon:
            art = make_artifacts(root / "media")
            register_workload(stack, art)
            yield Env(stack, daemon, art)
    finally:
        stack.stop()


def test_libvirt_uris_go_to_libvirt_and_sevlaunch_addresses_to_its_host() -> None:
    for uri in ("qemu:///system", "qemu+ssh://h/system", "test:///default", "qemu+unix:///x"):
        assert is_libvirt_uri(uri), uri
    for address in ("unix:/run/h.sock", "tcp:127.0.0.1:1", "https://h:8443", "/run/h.sock"):
        assert not is_libvirt_uri(address), address
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    assert isinstance(connect("test:///default"), LibvirtHost)
    assert isinstance(connect("unix:/nonexistent.sock"), HostClient)


TEST_XML = """<domain type='test'><name>t1</name><memory>65536</memory>
<os><type>hvm</type></os></domain>"""


def test_the_port_on_libvirts_test_driver() -> None:
    """Lifecycle through the port on libvirt's in-process test driver (no daemon)."""
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    with LibvirtHost("test:///default") as host:
        assert host.domain("test").state == "running"
        defined = host.define(TEST_XML)
        assert (defined.name, defined.state, defined.launch) == ("t1", "shut off", 0)
        started = host.start("t1")  # the test driver knows no VIR_DOMAIN_START_PAUSED
        assert (started.state, started.active) == ("running", True)
        assert started.launch > 0
        with pytest.raises(HostError) as refused:  # libvirt refuses to resume a running one
            host.resume("t1")
        assert "not paused" in refused.value.detail

        assert host.console("t1") == ""  # the test driver has no console to read
        assert host.destroy("t1").state == "shut off"
        with pytest.raises(HostError) as exc:
            host.node_sev_info()
        assert exc.value.kind == "this function is not supported by the connection driver"
        with pytest.raises(HostError) as missing:
            host.domain("nope")
        assert missing.value.kind == "Domain not found"


class _Err:
    def __init__(self, message: str) -> None:
        self.message = message

    def get_error_message(self) -> str:
        return self.message


def test_libvirt_errors_keep_libvirts_words_and_qemus_command() -> None:
    plain = _host_error(_Err("Requested operation is not valid: domain is not running"))
    assert (plain.kind, plain.detail) == (
        "Requested operation is not valid",
        "domain is not running",
    )
    qemu = _host_error(
        _Err("internal error: unable to execute QEMU command 'query-sev-launch-measure': "
             "SEV launch measurement is not available")
    )  # fmt: skip
    assert isinstance(qemu, QemuCommandError)
    assert (qemu.command, qemu.error_class) == ("query-sev-launch-measure", "GenericError")


def test_sevlaunch_launch_on_libvirt_with_the_broker(env: Env, tmp_path: Path) -> None:
    """The CLI, ``-c qemu:///system?socket=...``: all 13 steps, the guest unlocks its disk."""
    xml = tmp_path / "guest.xml"
    xml.write_text(env.xml("sevlv-cli"))
    done = subprocess.run(
        [
            SEVLAUNCH, "launch", str(xml), "-c", env.libvirtd.uri, "--broker",
            env.stack.broker_url, "--launcher-token-file", str(env.stack.launcher_token),
            "--workload", WORKLOAD, "--kds-url", env.stack.kds_url, "--json",
        ],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [s["status"] for s in result["steps"]] == ["ok"] * 13, result["steps"]
    steps = {s["step"]: s for s in result["steps"]}
    assert "STARTED event" in steps[int(Step.MEASUREMENT_READ)]["detail"]
    state = env.libvirtd.virsh("domstate", "sevlv-cli").stdout.strip()
    assert state == "running"
    env.libvirtd.virsh("destroy", "sevlv-cli")


def test_a_launch_survives_libvirtd_restarting_after_the_start(env: Env) -> None:
    """libvirtd restarts while the guest waits paused for its measurement check: the port
    reconnects and the launch goes on to the boot."""
    restarted: list[bool] = []

    def observer(_name: str, record: StepRecord) -> None:
        if record.step is Step.STARTED_PAUSED and record.status == "ok" and not restarted:
            env.libvirtd.restart()
            restarted.append(True)

    with LibvirtHost(env.libvirtd.uri) as host:
        result = env.launch(host, "sevlv-restart", observer=observer)
        assert restarted
        assert result.ok, result.message
        assert DISK_LINE in result.console
        host.destroy("sevlv-restart")
    env.libvirtd.reprobe()  # the reloaded capabilities lack cpu0-id (see tests/e2e)


def test_a_tampered_firmware_fails_at_step_11_and_libvirt_destroys_the_domain(env: Env) -> None:
    with LibvirtHost(env.libvirtd.uri) as host:
        launcher = Launcher(
            host,
            env.owner(),
            env.xml("sevlv-evil").replace(str(env.art.firmware), str(env.art.tampered)),
            kds_url=env.stack.kds_url,
        )
        result = launcher.run()
        assert not result.ok
        assert result.failed_step is Step.MEASUREMENT_CHECKED, result.message
        assert not host.domain("sevlv-evil").active


def _sev_guest_object(name: str) -> dict[str, object]:
    """The running VMM's ``-object sev-guest`` of guest ``name``, with the blob files read:
    what each host manager gave the hypervisor."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if f"guest={name},debug-threads=on".encode() not in argv:
            continue
        for i, word in enumerate(argv[:-1]):
            if word == b"-object" and b'"sev-guest"' in argv[i + 1]:
                obj: dict[str, object] = json.loads(argv[i + 1])
                for key in ("dh-cert-file", "session-file"):
                    obj[key] = Path(str(obj[key])).read_text().strip()
                return obj
    raise AssertionError(f"no running VMM for guest {name}")


def test_side_by_side_the_same_sev_guest_and_launch_digest(env: Env) -> None:
    """One domain XML, one platform: sevlaunch's host manager and libvirt build the same
    sev-guest object from the same blobs, and the broker checks both measurements against the
    workload's one expected digest. They differ only where the object names a file: each
    writes the blobs in its own state directory (libvirt: <libDir>/dh_cert.base64)."""
    ours, theirs = "sevlv-ours", "sevlv-libvirt"
    with HostClient(env.stack.host_uri) as host, LibvirtHost(env.libvirtd.uri) as lv:
        ours_result = env.launch(host, ours)
        theirs_result = env.launch(lv, theirs)
        assert ours_result.ok, ours_result.message
        assert theirs_result.ok, theirs_result.message
        ours_obj, theirs_obj = _sev_guest_object(ours), _sev_guest_object(theirs)
        # each launch had its own session from the broker: compare all but the blobs' text
        for obj in (ours_obj, theirs_obj):
            assert len(str(obj.pop("dh-cert-file"))) > 0
            assert len(str(obj.pop("session-file"))) > 0
        assert ours_obj == theirs_obj
        assert ours_obj["cbitpos"] == PROFILES[env.stack.profile].cbitpos
        assert DISK_LINE in ours_result.console
        assert DISK_LINE in theirs_result.console
        host.destroy(ours)
        lv.destroy(theirs)
