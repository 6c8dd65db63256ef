"""The VM tool against a real host manager, platform and broker, with a fault injected at each
step the way it happens in reality: each launch must fail at that step, say so, and leave no
guest running and no launch context on the platform."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sevlaunch.errors import HostError
from sevlaunch.host.client import HostClient
from sevlaunch.host.domxml import Domain
from sevlaunch.orchestrate.demo import DISK_LABEL, POLICY
from sevlaunch.orchestrate.launch import (
    Launcher,
    LaunchResult,
    StepRecord,
    prepare_domain,
)
from sevlaunch.orchestrate.owner_port import BrokerOwner
from sevlaunch.protocol import (
    DomainInfo,
    HostEvent,
    LaunchConfiguration,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretRelease,
    Step,
    one_per_step,
)
from tests.orchestrate.stack import (
    BIN,
    NOHASHES,
    RunningStack,
    host_manager,
    script,
    unique,
    wait_for,
)

# ---- faults, injected as they happen in reality


class TamperingHost(HostClient):
    """A man in the middle between host and tool: one bit of the certificate chain flips."""

    def __init__(self, uri: str, offset: int) -> None:
        super().__init__(uri)
        self.offset = offset

    def node_sev_info(self, *, refresh: bool = False) -> NodeSevInfo:
        info = super().node_sev_info(refresh=refresh)
        chain = bytearray(info.cert_chain)
        chain[self.offset] ^= 0x01
        return dataclasses.replace(info, cert_chain=bytes(chain))


class CrashingHost(HostClient):
    """The hypervisor dies (SIGKILL, as an OOM kill would) right after it started paused."""

    def __init__(self, uri: str, run_root: Path) -> None:
        super().__init__(uri)
        self.run_root = run_root

    def start(self, name: str, *, paused: bool = False) -> DomainInfo:
        info = super().start(name, paused=paused)
        pid = int((self.run_root / info.uuid / "qemu.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: not self.domain(name).active,
            10.0,
            "the host manager to notice the crash",
        )
        return info


class CorruptingOwner(BrokerOwner):
    """A secret packet whose header MAC was damaged on its way to the host."""

    def attest(
        self,
        launch_id: str,
        launch_info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        release = super().attest(launch_id, launch_info, configuration)
        header = bytearray(release.header)
        header[20] ^= 0x01  # flags (4) ‖ IV (16) ‖ MAC (32): the MAC's first byte
        return SecretRelease(bytes(header), release.secret)


class ReplayingOwner(BrokerOwner):
    """Someone attested this launch first (a replayed measurement): ours comes second."""

    def attest(
        self,
        launch_id: str,
        launch_info: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
    ) -> SecretRelease:
        super().attest(launch_id, launch_info, configuration)
        return super().attest(launch_id, launch_info, configuration)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A local TCP port bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# ---- checks


def assert_failed_at(
    env: RunningStack, result: LaunchResult, number: int, *words: str, contexts: int
) -> None:
    """Failed at step ``number`` for the reason ``words`` say; no guest left running or measured."""
    step = Step.of(number)
    assert not result.ok, "the launch should have failed"
    assert result.failed_step == step, result.message
    assert result.message.startswith(f"{result.domain}: step {int(step)} ({step.title}) failed")
    for word in words:
        assert word in (result.error or ""), result.message
    statuses = {s.step: s.status for s in result.steps}
    assert statuses[step] == "failed"
    assert [s for s, v in statuses.items() if v == "failed"] == [step]
    assert all(v == "pending" for s, v in statuses.items() if s > step)
    assert result.domain not in env.running()
    wait_for(lambda: env.guest_contexts() == contexts, 10.0, "the launch context to be freed")


def assert_never_defined(env: RunningStack, name: str) -> None:
    with env.host() as host, pytest.raises(HostError, match="Domain not found"):
        host.domain(name)


# ---- a launch that works


def test_an_attested_launch_boots_and_unlocks_its_disk(env: RunningStack) -> None:
    name = unique("good")
    result = env.launch(env.xml(name))
    assert result.ok, result.message
    assert [s.status for s in result.steps] == ["ok"] * len(Step)
    assert f"disk label '{DISK_LABEL}'" in result.console
    assert "luks-key" in result.console
    assert name in env.running()
    assert result.as_dict()["message"] == f"{name}: launched and booted"
    measured = result.steps[Step.MEASUREMENT_READ - 1]
    assert measured.detail == f"{result.measurement} (announced by the host)"
    with env.host() as host:
        recorded = {r.step: r for r in host.timeline(name)}
    for step in (Step.SEV_GUEST_BUILT, Step.LAUNCH_MEASURED):  # not seen by the tool itself
        shown = result.steps[step - 1]
        assert shown.by_host, f"{step} was reported without the host's record"
        assert (shown.status, shown.detail) == (recorded[step].outcome, recorded[step].detail)
    assert "SEV state launch-secret" in result.steps[Step.LAUNCH_MEASURED - 1].detail
    with env.host() as host:
        kept = one_per_step(host.timeline(name))
    assert sorted(kept) == list(Step)  # the host holds all 13, the VM tool's 1-5 and 11 too
    for step, report in kept.items():  # one set of figures for the terminal and the page
        shown = result.steps[step - 1]
        assert (shown.started, shown.duration) == (report.started, report.duration), step
    env.destroy(name)
    assert name not in env.running()


class StreamlessHost(HostClient):
    """A host manager without an event stream (the tool must poll for the measurement)."""

    def events(self, domain: str | None = None) -> Iterator[HostEvent]:
        raise HostError("Operation not supported", "no event stream here")

    def sibling(self) -> HostClient:
        return StreamlessHost(self.uri)


def test_without_an_event_stream_step_10_polls(env: RunningStack) -> None:
    name = unique("polled")
    result = env.launch(env.xml(name), host=StreamlessHost(env.stack.host_uri))
    assert result.ok, result.message
    assert result.steps[Step.MEASUREMENT_READ - 1].detail.endswith("(polled: no event stream)")
    env.destroy(name)


# ---- step 2: the host


def test_step_2_host_manager_unreachable(env: RunningStack, tmp_path: Path) -> None:
    name, contexts = unique("nohost"), env.guest_contexts()
    host = HostClient(f"unix:{tmp_path / 'absent.sock'}")
    result = env.launch(env.xml(name), host=host)
    assert_failed_at(
        env, result, 2, "failed to connect to the host manager", "absent.sock", contexts=contexts
    )
    assert "no guest was started" in result.message
    assert_never_defined(env, name)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # QEMU on a machine without /dev/sev: query-sev-capabilities fails (a device path that
        # cannot exist, so that a /dev/sev on this machine, e.g. libvirt tests', is not found)
        (
            f'export SEVLAUNCH_SEV_DEVICE=/nonexistent/sev\nexec {BIN / "sevlaunch-vmm"} "$@"',
            "does not support SEV",
        ),
        # a binary that is not a hypervisor at all
        ("echo 'not a hypervisor' >&2\nexit 1", "not a hypervisor"),
    ],
    ids=["no-sev-device", "not-a-hypervisor"],
)
def test_step_2_sev_unsupported(env: RunningStack, body: str, expected: str) -> None:
    name, contexts = unique("nosev"), env.guest_contexts()
    qemu = script(env.root / f"{name}-qemu.sh", body)
    with host_manager(env.stack, name, qemu) as uri:
        result = env.launch(env.xml(name), host=HostClient(uri))
    assert_failed_at(env, result, 2, expected, contexts=contexts)
    assert_never_defined(env, name)


# ---- step 3: the AMD-signed CEK


def test_step_3_key_server_unreachable(env: RunningStack) -> None:
    name, contexts = unique("nokds"), env.guest_contexts()
    with closed_port() as port:
        result = env.launch(env.xml(name), kds_url=f"http://127.0.0.1:{port}")
    assert_failed_at(
        env, result, 3, "cannot download the AMD-signed CEK", f":{port}", contexts=contexts
    )
    assert_never_defined(env, name)
    # the key server failed, not the host or its firmware (which exported a chain)
    assert result.steps[2].party == "VM tool → AMD key server"
    assert "failed (VM tool → AMD key server): " in result.message
    assert "fetch-cek" not in (result.error or "")


def test_step_3_takes_a_given_signed_cek_instead_of_the_key_server(env: RunningStack) -> None:
    """``launch --cek FILE``: an offline VM tool with the CEK fetched elsewhere."""
    from sevlaunch.platform.client import PlatformClient

    with PlatformClient(env.stack.platform_socket) as platform:
        cek = platform.signed_cek()
    name = unique("given-cek")
    with closed_port() as port:  # a key server that cannot answer: the given CEK is used
        result = env.launch(env.xml(name), kds_url=f"http://127.0.0.1:{port}", cek=cek)
    assert result.ok, result.message
    assert result.steps[2].detail == "CEK given"
    env.destroy(name)


# ---- step 4: the platform's proof


def test_step_4_broker_does_not_trust_the_platform(env: RunningStack) -> None:
    name, contexts = unique("untrusted"), env.guest_contexts()
    with env.broker_admin() as broker:
        broker.remove_root("emulated")
        try:
            result = env.launch(env.xml(name))
        finally:
            from sevlaunch.platform.client import PlatformClient

            with PlatformClient(env.stack.platform_socket) as platform:
                broker.add_root(platform.ca_chain(), name="emulated")
    assert_failed_at(env, result, 4, "ARK", contexts=contexts)
    assert_never_defined(env, name)


@pytest.mark.parametrize(
    ("offset", "step", "expected"),
    [
        (0x420, 4, "OCA -> PEK: slot 1: ECDSA signature does not verify"),  # PEK's signature
        (0x824 + 0x420, 4, "OCA -> OCA: slot 1: ECDSA signature does not verify"),  # OCA's
        (0x10, 3, "unknown EccCurve code"),  # a field that no longer parses
    ],
    ids=["pek-signature", "oca-signature", "pek-curve"],
)
def test_step_3_4_chain_tampered_in_transit(
    env: RunningStack, offset: int, step: int, expected: str
) -> None:
    name, contexts = unique("tampered-chain"), env.guest_contexts()
    result = env.launch(env.xml(name), host=TamperingHost(env.stack.host_uri, offset))
    assert_failed_at(env, result, step, expected, contexts=contexts)
    assert_never_defined(env, name)


def test_step_4_unknown_workload(env: RunningStack) -> None:
    """The session (step 5) comes with the platform check in one broker call, so an unknown
    workload is refused at step 4."""
    name, contexts = unique("noworkload"), env.guest_contexts()
    result = env.launch(env.xml(name), owner=env.owner("no-such-workload"))
    assert_failed_at(env, result, 4, "no workload named 'no-such-workload'", contexts=contexts)
    assert_never_defined(env, name)


# ---- step 6: the domain definition


def test_step_6_launch_security_that_takes_no_session(env: RunningStack) -> None:
    name, contexts = unique("s390"), env.guest_contexts()
    xml = env.xml(name).replace("type='sev' kernelHashes='yes'", "type='s390-pv'")
    result = env.launch(xml)
    assert_failed_at(
        env, result, 6, "launch security type 's390-pv' takes no session", contexts=contexts
    )
    assert_never_defined(env, name)


def test_step_6_a_running_domain_of_that_name_is_left_alone(env: RunningStack) -> None:
    name = unique("twice")
    first = env.launch(env.xml(name))
    assert first.ok, first.message
    contexts = env.guest_contexts()
    with env.host() as host:
        xml_before = host.dumpxml(name)
    second = env.launch(env.xml(name))
    assert not second.ok
    assert second.failed_step == 6, second.message
    assert f"domain '{name}' is already running" in (second.error or "")
    assert name in env.running(), "the first launch's guest must survive the second launch"
    assert env.guest_contexts() == contexts
    with env.host() as host:
        assert host.dumpxml(name) == xml_before, "the running domain's session was replaced"
    env.destroy(name)


# ---- step 8: the hypervisor


def test_step_8_hypervisor_cannot_start(env: RunningStack) -> None:
    name, contexts = unique("nofirmware"), env.guest_contexts()
    result = env.launch(env.xml(name, env.root / "absent-OVMF.fd"))
    assert_failed_at(env, result, 8, "absent-OVMF.fd", "No such file", contexts=contexts)
    assert env.domain_state(name) == "shut off"
    assert "the domain was destroyed" in result.message


# ---- step 10: the measurement


def test_step_10_hypervisor_crashed_before_the_measurement_was_read(env: RunningStack) -> None:
    name, contexts = unique("crash"), env.guest_contexts()
    began = time.monotonic()
    host = CrashingHost(env.stack.host_uri, env.root / "host" / "run")
    result = env.launch(env.xml(name), host=host)
    assert_failed_at(env, result, 10, "domain is not running", contexts=contexts)
    assert time.monotonic() - began < 20.0, "a dead hypervisor must not be polled for long"
    assert env.domain_state(name) == "shut off"


# ---- step 11: the owner's verdict


def test_step_11_tampered_firmware_is_refused(env: RunningStack) -> None:
    name, contexts = unique("tampered-fw"), env.guest_contexts()
    result = env.launch(env.xml(name, env.art.tampered))
    assert_failed_at(env, result, 11, "matches none", contexts=contexts)
    assert "efi_secret" not in result.console
    assert env.domain_state(name) == "shut off"


def test_step_11_calls_a_direct_boot_without_kernel_hashes_unmeasurable_not_compromised(
    env: RunningStack,
) -> None:
    """issue 14 item 6: the broker registered the direct boot's digest; a domain without
    kernelHashes='yes' is measured as its firmware alone. The verdict names the configuration
    and its fix, not a compromised guest, on the terminal and in the broker's audit."""
    name, contexts = unique("unhashed"), env.guest_contexts()
    result = env.launch(env.xml(name, kernel_hashes=False))
    assert_failed_at(env, result, 11, "cannot be measured as registered", contexts=contexts)
    assert "kernelHashes='yes'" in result.message  # the fix, on the terminal
    assert "AmdSev" in result.message
    assert "do not trust" not in result.message
    with env.broker_admin() as broker:
        entries = broker.audit(launch=result.launch_id)
    refused = [e for e in entries if e.action == "launch.measure"]
    assert [e.reason for e in refused] == ["unmeasurable-configuration"], entries
    detail = refused[0].detail or {}
    assert "kernelHashes='yes'" in str(detail.get("diagnosis")), detail
    # and with kernelHashes='yes' the same tampering is the guest's, not the configuration's
    other = env.launch(env.xml(unique("hashed-fw"), env.art.tampered))
    assert "do not trust" in other.message
    assert "cannot be measured" not in other.message


def test_step_11_replayed_attestation_is_refused(env: RunningStack) -> None:
    name, contexts = unique("replay"), env.guest_contexts()
    result = env.launch(env.xml(name), owner=ReplayingOwner(**_owner_args(env)))
    assert_failed_at(env, result, 11, "single-use", "already released", contexts=contexts)


# ---- step 12: the secret


def test_step_12_corrupt_secret_header_fails_launch_secret(env: RunningStack) -> None:
    name, contexts = unique("badmac"), env.guest_contexts()
    result = env.launch(env.xml(name), owner=CorruptingOwner(**_owner_args(env)))
    assert_failed_at(
        env, result, 12, "sev-inject-launch-secret", "Bad measurement", contexts=contexts
    )
    assert "efi_secret" not in result.console


# ---- step 13: the boot


def test_step_13_guest_halts_without_a_hashes_table(env: RunningStack) -> None:
    """With kernelHashes='no' the measurement covers the firmware alone, so an owner who
    expects just that releases the secret; the AmdSev firmware then refuses to boot a kernel
    it cannot verify. (A changed kernel file cannot fail step 13 on its own: its hash is in
    the measured table, so step 11 refuses it first.)"""
    name, contexts = unique("nohashes"), env.guest_contexts()
    result = env.launch(env.xml(name, kernel_hashes=False), owner=env.owner(NOHASHES))
    assert_failed_at(env, result, 13, "the guest halted", contexts=contexts)
    assert "hashes table is missing or malformed" in result.console
    assert env.domain_state(name) == "shut off"


def _owner_args(env: RunningStack) -> dict[str, Any]:
    return {"url": env.stack.broker_url, "token": env.launcher_token, "workload": "demo"}


# ---- pure parts


def test_prepare_domain_takes_policy_and_blobs_from_the_session() -> None:
    xml = """<domain type='kvm'><name>g</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='q35'>hvm</type></os>
      <launchSecurity type='sev'><policy>0x0003</policy></launchSecurity></domain>"""
    out = Domain.from_xml(prepare_domain(xml, POLICY, "R09ESA==", "U0VTU0lPTg=="))
    sev = out.launch_security
    assert sev is not None
    assert (sev.policy, sev.dh_cert, sev.session) == (POLICY, "R09ESA==", "U0VTU0lPTg==")
    assert out.name == "g"
    assert out.uuid is None
    renamed = Domain.from_xml(prepare_domain(xml, POLICY, "R09ESA==", "U0VTU0lPTg==", name="h"))
    assert renamed.name == "h"
    assert renamed.uuid is not None


def test_prepare_domain_adds_launch_security_when_absent() -> None:
    xml = "<domain type='kvm'><name>g</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>"
    sev = Domain.from_xml(prepare_domain(xml, 0x5, "QQ==", "Qg==")).launch_security
    assert sev is not None
    assert (sev.type, sev.policy) == ("sev", 0x5)


def test_result_message_names_the_step_and_the_fate_of_the_domain() -> None:
    result = LaunchResult(
        "g", [StepRecord(s) for s in Step], error="boom", failed_step=Step.MEASUREMENT_CHECKED
    )
    assert (
        result.message == "g: step 11 (measurement checked) failed: boom; the domain was destroyed"
    )
    early = LaunchResult("g", error="nope", failed_step=Step.PLATFORM_VERIFIED)
    assert early.message == "g: step 4 (platform verified) failed: nope; no guest was started"
    data = result.as_dict()
    assert data["failed_step"] == 11
    assert [s["step"] for s in data["steps"]] == list(range(1, 14))


# ---- many launches at once


class CountingStarts(HostClient):
    """Records how many starts are in flight at once, across threads."""

    lock = threading.Lock()
    in_flight = 0
    most = 0

    def start(self, name: str, *, paused: bool = False) -> DomainInfo:
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        try:
            time.sleep(0.05)  # widen the window in which a second start could overlap
            return super().start(name, paused=paused)
        finally:
            with cls.lock:
                cls.in_flight -= 1


def test_start_gate_bounds_the_starts_in_flight(env: RunningStack) -> None:
    gate = threading.Semaphore(1)
    names = [unique("gated") for _ in range(3)]

    def one(name: str) -> LaunchResult:
        with CountingStarts(env.stack.host_uri) as host:
            launcher = Launcher(
                host, env.owner(), env.xml(name), kds_url=env.stack.kds_url, start_gate=gate
            )
            return launcher.run()

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, names))
    assert all(r.ok for r in results), [r.message for r in results]
    assert CountingStarts.most == 1
    for name in names:
        env.destroy(name)


class CountingKeyServer(ThreadingHTTPServer):
    """A key-server mirror in front of the emulated one that counts what it is asked."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server = self.server
                assert isinstance(server, CountingKeyServer)
                server.requests.append(self.path)
                with urllib.request.urlopen(server.upstream + self.path) as answer:
                    body = answer.read()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        super().__init__(("127.0.0.1", 0), Handler)


def test_signed_cek_is_fetched_once_per_chip(env: RunningStack) -> None:
    mirror = CountingKeyServer(env.stack.kds_url)
    thread = threading.Thread(target=mirror.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{mirror.server_address[1]}"
    try:
        names = [unique("cek"), unique("cek")]
        for name in names:
            result = env.launch(env.xml(name), kds_url=url)
            assert result.ok, result.message
    finally:
        mirror.shutdown()
        mirror.server_close()
    assert len(mirror.requests) == 1
    assert mirror.requests[0].startswith("/cek/id/")
    for name in names:
        env.destroy(name)
