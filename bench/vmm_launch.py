"""Cost of launching an SEV guest through ``sevlaunch-vmm`` against the platform's own cost.

Measured, for a 4 MiB synthetic OVMF, each iteration a fresh process:

1. ``sevlaunch-vmm`` process start (``-S``, SEV guest from an owner session) until the first
   successful ``query-sev-launch-measure`` through ``qemu.qmp``: interpreter start, command
   line, LAUNCH_START + ACTIVATE, LAUNCH_UPDATE_DATA of the image, LAUNCH_MEASURE, QMP up.
2. From the same start until ``SEVLAUNCH_GUEST_BOOTED`` after the owner's secret was injected
   and ``cont`` sent: adds the secret packet, LAUNCH_SECRET, LAUNCH_FINISH and the guest model
   (secret table read through the memory controller, scrypt unlock of the disk).

Baseline, in the same run against the same platform service: LAUNCH_START + ACTIVATE +
LAUNCH_UPDATE_DATA (4 MiB) + LAUNCH_MEASURE called directly through
:class:`sevlaunch.platform.client.PlatformClient`; and the same launch by
:class:`~sevlaunch.vmm.machine.Machine` in this process (the VMM's own work without an
interpreter to start or QMP to serve). Target: process start to measurement at most
:data:`TARGET` times the in-process launch. The three are alternated, one of each per round,
so a machine that slows down moves them together. The interpreter floor (``python -c 'import
sevlaunch.vmm.main'``) is printed for context: it is most of what the process adds. The
package's bytecode is compiled first, as an installed package has it (see bench/_bytecode.py).

Usage: ``.venv/bin/python bench/vmm_launch.py [--iterations N] [--latency none|real]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._bytecode import ensure_bytecode
from sevlaunch.crypto.disk import DiskContents, seal
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.firmware import PROFILES, Firmware, SparseMemory
from sevlaunch.formats.policy import PolicyFlags
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.owner.session import LaunchSession, make_session
from sevlaunch.owner.verify import trust_store, verify_chain_file
from sevlaunch.platform.client import PlatformClient
from sevlaunch.platform.state import STATE_FILE, StoredState
from sevlaunch.vmm.ovmf_image import make_image

BIN = Path(sys.executable).parent
PROFILE = "rome"
FIRMWARE_SIZE = 4 << 20
POLICY = 0x1
PASSPHRASE = b"bench passphrase"
BOOTED = "SEVLAUNCH_GUEST_BOOTED"
LIMIT = 60.0
TARGET = 2.0


def _wait_listening(path: Path, proc: subprocess.Popen[bytes], poll: float = 0.002) -> None:
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return
        except OSError:
            time.sleep(poll)
        finally:
            probe.close()
    raise SystemExit(f"nothing listens on {path} after {LIMIT} s")


class Setup:
    """A platform service on a fresh rome chip, the owner's session files and boot media."""

    def __init__(self, root: Path, latency: str) -> None:
        self.root = root
        self.sock = root / "sev.sock"
        state = root / "state"
        state.mkdir(mode=0o700)
        identity = Firmware(PROFILES[PROFILE]).persistent_state()
        (state / STATE_FILE).write_bytes(StoredState(PROFILE, identity).to_bytes())
        (state / STATE_FILE).chmod(0o600)
        command = [str(BIN / "sevlaunch"), "platform", "serve", "--state", str(state)]
        command += ["--listen", str(self.sock), "--latency", latency]
        self.proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        _wait_listening(self.sock, self.proc)
        with PlatformClient(self.sock) as client:
            client.ensure_init()
            chain = client.pdh_cert_export()
            from dataclasses import replace

            from sevlaunch.formats.chain import CaChain
            from sevlaunch.formats.sevcert import SevCert

            chain = replace(
                chain,
                cek=SevCert.from_bytes(client.signed_cek()),
                ca=CaChain.from_bytes(client.ca_chain()),
            )
            self.verified = verify_chain_file(chain.to_bytes(), trust_store([client.ark()]))
        self.firmware = make_image(FIRMWARE_SIZE, seed=b"bench")
        (root / "OVMF.fd").write_bytes(self.firmware)
        disk = seal(PASSPHRASE, DiskContents("bench", bytes(4096)), salt=bytes(16), nonce=bytes(12))
        (root / "disk.img").write_bytes(disk)

    def session(self) -> LaunchSession:
        return make_session(self.verified, POLICY, rng=os.urandom)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=LIMIT)


def platform_direct(setup: Setup) -> float:
    """LAUNCH_START + ACTIVATE + LAUNCH_UPDATE_DATA(4 MiB) + LAUNCH_MEASURE, as KVM issues them."""
    launch = setup.session()
    godh, session = launch.godh.to_bytes(), launch.session.to_bytes()
    memory = SparseMemory()
    base = (1 << 32) - FIRMWARE_SIZE
    memory.write(base, setup.firmware)
    with PlatformClient(setup.sock) as client:
        profile = client.profile()
        asid = profile.max_es_guests + 1
        start = time.perf_counter()
        handle = client.launch_start(POLICY, godh, session)
        _activate(client, handle, asid, asid + profile.max_guests)
        client.launch_update_data(handle, base, FIRMWARE_SIZE, memory)
        client.launch_measure(handle)
        elapsed = time.perf_counter() - start
        client.deactivate(handle)
        client.decommission(handle)
    return elapsed


def _activate(client: PlatformClient, handle: int, first: int, last: int) -> None:
    from sevlaunch.errors import FirmwareError

    for asid in range(first, last):
        try:
            client.activate(handle, asid)
            return
        except FirmwareError:
            with contextlib.suppress(FirmwareError):
                client.df_flush()
    raise SystemExit("no free SEV ASID on the platform")


def _argv(setup: Setup, work: Path, launch: LaunchSession) -> list[str]:
    (work / "godh.b64").write_text(launch.godh_b64)
    (work / "session.b64").write_text(launch.session_b64)
    sev = (
        f"sev-guest,id=lsec0,cbitpos={PROFILES[PROFILE].cbitpos},reduced-phys-bits=1,"
        f"policy={POLICY:#x},dh-cert-file={work / 'godh.b64'},session-file={work / 'session.b64'}"
    )
    return [
        str(BIN / "sevlaunch-vmm"), "-name", "guest=bench", "-S",
        "-machine", "q35,confidential-guest-support=lsec0", "-object", sev,
        "-bios", str(setup.root / "OVMF.fd"), "-m", "512",
        "-drive", f"file={setup.root / 'disk.img'},if=virtio,format=raw",
        "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off",
        "-serial", f"file:{work / 'console.log'}", "-display", "none", "-nodefaults",
    ]  # fmt: skip


async def _drive(qmp_path: Path, keys: TransportKeys, started: float) -> tuple[float, float]:
    from qemu.qmp import ExecuteError, QMPClient

    client: Any = QMPClient("bench")
    await client.connect(str(qmp_path))
    while True:
        try:
            measurement = (await client.execute("query-sev-launch-measure"))["data"]
            break
        except ExecuteError:
            await asyncio.sleep(0.001)
    measured = time.perf_counter() - started
    table = secret_table([("luks-key", PASSPHRASE)])
    packet = build_packet(table, keys, base64.b64decode(measurement), rng=os.urandom)
    args = {"packet-header": packet.header_b64, "secret": packet.payload_b64}
    await client.execute("sev-inject-launch-secret", args)
    await client.execute("cont")
    while (event := await client.events.get())["event"] != BOOTED:
        pass
    booted = time.perf_counter() - started
    if event["data"].get("disk-label") != "bench":
        raise SystemExit(f"the guest did not unlock the disk: {event['data']}")
    await client.execute("quit")
    await client.disconnect()
    return measured, booted


def vmm_launch(setup: Setup) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(prefix="sevb-", dir="/tmp"))
    try:
        launch = setup.session()
        argv = _argv(setup, work, launch)
        env = {**os.environ, "SEVLAUNCH_SEV_DEVICE": str(setup.sock)}
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
        _wait_listening(work / "qmp.sock", proc)
        result = asyncio.run(_drive(work / "qmp.sock", launch.keys, started))
        if proc.wait(timeout=LIMIT) != 0:
            raise SystemExit(f"sevlaunch-vmm exited with {proc.returncode}")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def machine_in_process(setup: Setup) -> float:
    """The same launch by :class:`Machine` in this process: the VMM's own work, no interpreter."""
    from sevlaunch.vmm.machine import Machine, MachineSpec
    from sevlaunch.vmm.platform_port import EmulatedSevPlatform
    from sevlaunch.vmm.sev import SevGuestConfig

    launch = setup.session()
    config = SevGuestConfig(
        cbitpos=PROFILES[PROFILE].cbitpos,
        reduced_phys_bits=1,
        policy=POLICY,
        dh_cert_b64=launch.godh_b64.encode(),
        session_b64=launch.session_b64.encode(),
    )
    spec = MachineSpec("bench", 512 << 20, setup.root / "OVMF.fd", sev=config)

    async def run() -> float:
        machine = Machine(spec, EmulatedSevPlatform(str(setup.sock)), lambda *_: None, print)
        started = time.perf_counter()
        await machine.init()
        machine.query_sev_launch_measure()
        elapsed = time.perf_counter() - started
        await machine.teardown()
        return elapsed

    return asyncio.run(run())


def interpreter_floor(code: str = "import sevlaunch.vmm.main") -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--latency", choices=["none", "real"], default="none")
    args = parser.parse_args()
    assert not POLICY & PolicyFlags.ES  # the baseline activates on a plain-SEV ASID
    ensure_bytecode()
    root = Path(tempfile.mkdtemp(prefix="sevb-", dir="/tmp"))
    setup = Setup(root, args.latency)
    directs: list[float] = []
    in_processes: list[float] = []
    runs: list[tuple[float, float]] = []
    floors: list[float] = []
    asyncio_floors: list[float] = []
    try:
        platform_direct(setup)  # warm the service's caches and the page cache
        vmm_launch(setup)
        for _ in range(args.iterations):
            directs.append(platform_direct(setup))
            in_processes.append(machine_in_process(setup))
            runs.append(vmm_launch(setup))
            floors.append(interpreter_floor())
            asyncio_floors.append(interpreter_floor("import asyncio"))
    finally:
        setup.stop()
        shutil.rmtree(root, ignore_errors=True)
    direct, in_process, floor = _median(directs), _median(in_processes), _median(floors)
    asyncio_floor = _median(asyncio_floors)
    measured = _median([m for m, _ in runs])
    booted = _median([b for _, b in runs])
    print(f"firmware {FIRMWARE_SIZE >> 20} MiB, profile {PROFILE}, platform latency model "
          f"'{args.latency}', median of {args.iterations}")  # fmt: skip
    print(f"platform direct  LAUNCH_START+ACTIVATE+UPDATE_DATA+MEASURE  {direct * 1e3:8.1f} ms")
    print(f"sevlaunch-vmm    process start -> measurement available     {measured * 1e3:8.1f} ms"
          f"   ratio {measured / direct:5.2f}")  # fmt: skip
    print(f"sevlaunch-vmm    process start -> guest booted (secret+cont) {booted * 1e3:8.1f} ms"
          f"   ratio {booted / direct:5.2f}")  # fmt: skip
    print(f"context: Machine.init in process (no interpreter, no QMP)      {in_process * 1e3:8.1f} ms"
          f"   ratio {in_process / direct:5.2f}")  # fmt: skip
    print(f"context: interpreter start + imports of sevlaunch.vmm.main     {floor * 1e3:8.1f} ms")
    print(f"context: interpreter start + import asyncio (any Python VMM)   {asyncio_floor * 1e3:8.1f} ms"
          f"   / in process {asyncio_floor / in_process:5.2f}")  # fmt: skip
    ratio = measured / in_process
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"process start -> measurement / Machine.init in process: {ratio:.2f} "
          f"(target <= {TARGET}: {verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
