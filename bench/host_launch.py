"""Full SEV launches through the host manager's HTTP API against the same launches driven
directly over QMP, in the same run.

A full launch is define → start paused → read the measurement → inject the secret → resume →
guest booted. Through the API it is those six calls against ``sevlaunch host serve`` on a Unix
socket. Baseline: this script spawns ``sevlaunch-vmm`` itself with the argv the host manager
builds (:func:`sevlaunch.host.qemu.build_launch_plan`), writes the same 0600 blobs,
and runs ``query-sev-launch-measure``, ``query-sev``, ``sev-inject-launch-secret`` and
``cont`` with qemu.qmp, waiting for the guest's boot event. Both sides use one emulated
platform service and the same firmware (1 MiB, no kernel).

For N = 1, 10 and 50 concurrent launches it prints launches per second, p50 and p99 latency
per launch, and the overhead ratio API / direct (throughput and p50). Target: at most 1.3 at
N = 10.

Usage: ``.venv/bin/python bench/host_launch.py [--rounds R]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from qemu.qmp import QMPClient

from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu import LaunchPaths, build_launch_plan
from sevlaunch.owner.measurement import decode_measurement
from sevlaunch.owner.secret import build_packet, secret_table
from sevlaunch.vmm.ovmf_image import make_image

TARGET = 1.3
BIN = Path(sys.executable).parent
SEVLAUNCH = str(BIN / "sevlaunch")
VMM = str(BIN / "sevlaunch-vmm")
SIZES = (1, 10, 50)
XML = {"Content-Type": "application/xml"}


@dataclass(frozen=True)
class Setup:
    root: Path
    platform: Path
    firmware: Path
    godh: str
    session: str
    keys: TransportKeys


def domain_xml(name: str, s: Setup) -> str:
    return (
        f"<domain type='kvm'><name>{name}</name><uuid>{uuid.uuid4()}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='q35'>hvm</type>"
        f"<loader readonly='yes' type='rom'>{s.firmware}</loader></os><devices/>"
        "<launchSecurity type='sev' kernelHashes='no'><cbitpos>51</cbitpos>"
        f"<reducedPhysBits>1</reducedPhysBits><policy>0x0001</policy><dhCert>{s.godh}</dhCert>"
        f"<session>{s.session}</session></launchSecurity></domain>"
    )


def secret(s: Setup, measurement: str) -> tuple[str, str]:
    packet = build_packet(
        secret_table([("luks-key", b"bench passphrase")]),
        s.keys,
        decode_measurement(measurement),
        rng=os.urandom,
    )
    return packet.header_b64, packet.payload_b64


# ---- through the API ---------------------------------------------------------------------


async def api_launch(c: httpx.AsyncClient, name: str, s: Setup) -> float:
    began = time.perf_counter()
    (await c.post("/v1/domains", content=domain_xml(name, s), headers=XML)).raise_for_status()
    (await c.post(f"/v1/domains/{name}/start", json={"paused": True})).raise_for_status()
    info = (await c.get(f"/v1/domains/{name}/launch-security")).raise_for_status().json()
    header, payload = secret(s, info["sev-measurement"])
    body = {"sev-secret-header": header, "sev-secret": payload}
    (await c.put(f"/v1/domains/{name}/launch-security", json=body)).raise_for_status()
    (await c.post(f"/v1/domains/{name}/resume")).raise_for_status()
    (await c.post(f"/v1/domains/{name}/wait-booted")).raise_for_status()
    return time.perf_counter() - began


async def api_batch(sock: Path, s: Setup, n: int, tag: str) -> tuple[float, list[float]]:
    transport = httpx.AsyncHTTPTransport(uds=str(sock))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://h",
        timeout=300,
        limits=httpx.Limits(max_connections=n),
    ) as c:
        names = [f"{tag}-{i}" for i in range(n)]
        began = time.perf_counter()
        latencies = await asyncio.gather(*(api_launch(c, name, s) for name in names))
        wall = time.perf_counter() - began
        for name in names:  # not timed
            (await c.post(f"/v1/domains/{name}/destroy")).raise_for_status()
            (await c.delete(f"/v1/domains/{name}")).raise_for_status()
    return wall, list(latencies)


# ---- directly over QMP -------------------------------------------------------------------


async def direct_launch(name: str, s: Setup, run_root: Path) -> tuple[float, int]:
    began = time.perf_counter()
    domain = Domain.from_xml(domain_xml(name, s))
    run = run_root / name
    run.mkdir(mode=0o700, parents=True)
    paths = LaunchPaths(
        lib_dir=str(run), monitor_socket=str(run / "qmp.sock"), pidfile=str(run / "qemu.pid")
    )
    plan = build_launch_plan(domain, paths, emulator=VMM)
    for planned in plan.files:
        fd = os.open(planned.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, planned.mode)
        with os.fdopen(fd, "wb") as out:
            out.write(planned.content)
    argv = [*plan.argv, "-chardev", f"file,id=con,path={run / 'console.log'}"]
    argv += ["-serial", "chardev:con"]
    with (run / "qemu.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "SEVLAUNCH_SEV_DEVICE": str(s.platform)},
            start_new_session=True,
        )
    client = QMPClient(name)
    while True:
        try:
            await client.connect(paths.monitor_socket)
            break
        except Exception:
            if proc.returncode is not None:
                raise RuntimeError((run / "qemu.log").read_text()) from None
            await asyncio.sleep(0.02)
    reply = await client.execute("query-sev-launch-measure")
    assert isinstance(reply, dict)
    measurement = str(reply["data"])
    await client.execute("query-sev")
    header, payload = secret(s, measurement)
    await client.execute("sev-inject-launch-secret", {"packet-header": header, "secret": payload})
    with client.listener("SEVLAUNCH_GUEST_BOOTED") as listener:
        await client.execute("cont")
        await listener.get()
    elapsed = time.perf_counter() - began
    await client.disconnect()
    return elapsed, proc.pid


async def direct_batch(s: Setup, n: int, tag: str) -> tuple[float, list[float]]:
    run_root = s.root / "direct" / tag
    began = time.perf_counter()
    results = await asyncio.gather(*(direct_launch(f"{tag}-{i}", s, run_root) for i in range(n)))
    wall = time.perf_counter() - began
    for _, pid in results:  # not timed
        os.kill(pid, 15)
    await asyncio.sleep(0.3)
    shutil.rmtree(run_root, ignore_errors=True)
    return wall, [latency for latency, _ in results]


# ---- set-up and report -------------------------------------------------------------------


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def prepare(root: Path, platform: Path) -> Setup:
    chain, ark, owner = root / "chain", root / "ark", root / "owner"
    sev = [SEVLAUNCH, "platform"]
    subprocess.run(
        [*sev, "export", "--platform", str(platform), "--out", str(chain), "--full"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*sev, "export-root", "--platform", str(platform), "--out", str(ark)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [SEVLAUNCH, "owner", "session", "--chain", str(chain), "--trust-root", str(ark),
         "--policy", "0x1", "--name", "vm", "--out", str(owner)],
        check=True, capture_output=True,
    )  # fmt: skip
    firmware = root / "OVMF-1M.fd"
    firmware.write_bytes(make_image(1 << 20))
    return Setup(
        root,
        platform,
        firmware,
        (owner / "vm_godh.b64").read_text().strip(),
        (owner / "vm_session.b64").read_text().strip(),
        TransportKeys((owner / "vm_tek.bin").read_bytes(), (owner / "vm_tik.bin").read_bytes()),
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Figures:
    walls: list[float]
    latencies: list[float]

    @property
    def rate(self) -> float:
        return len(self.latencies) / sum(self.walls)

    def line(self, label: str) -> str:
        p50, p99 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.99)
        return (
            f"  {label:<8}{self.rate:8.2f} launches/s   p50 {p50 * 1000:7.0f} ms   "
            f"p99 {p99 * 1000:7.0f} ms   ({len(self.latencies)} launches)"
        )


async def measure(
    batch: Callable[[str], Awaitable[tuple[float, list[float]]]], rounds: int, tag: str
) -> Figures:
    figures = Figures([], [])
    for r in range(rounds):
        wall, latencies = await batch(f"{tag}{r}")
        figures.walls.append(wall)
        figures.latencies += latencies
    return figures


async def run_all(sock: Path, s: Setup, rounds: int) -> dict[int, tuple[Figures, Figures]]:
    results: dict[int, tuple[Figures, Figures]] = {}
    await direct_batch(s, 2, "warm")  # page cache, imports
    await api_batch(sock, s, 2, "warm")
    for n in SIZES:
        r = rounds * (5 if n == 1 else 2 if n == 10 else 1)
        direct = await measure(lambda tag, n=n: direct_batch(s, n, tag), r, f"d{n}-")  # type: ignore[misc]
        api = await measure(lambda tag, n=n: api_batch(sock, s, n, tag), r, f"a{n}-")  # type: ignore[misc]
        results[n] = (api, direct)
        ratio_rate = direct.rate / api.rate
        ratio_p50 = percentile(api.latencies, 0.5) / percentile(direct.latencies, 0.5)
        print(f"N = {n}")
        print(api.line("API"))
        print(direct.line("QMP"))
        verdict = (
            ""
            if n != 10
            else f"  (target <= {TARGET}: {'met' if ratio_rate <= TARGET else 'NOT met'})"
        )
        print(
            f"  overhead ratio API/QMP: throughput {ratio_rate:.2f}, p50 latency {ratio_p50:.2f}{verdict}"
        )
        sys.stdout.flush()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="Multiplier of rounds per N.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sevhb-", dir="/tmp"))
    platform_sock, host_sock = root / "plat.sock", root / "host" / "host.sock"
    procs = []
    try:
        procs.append(
            start(
                [
                    SEVLAUNCH,
                    "platform",
                    "serve",
                    "--state",
                    str(root / "pstate"),
                    "--listen",
                    str(platform_sock),
                ],
                root / "platform.log",
            )
        )
        wait_for(platform_sock.exists, "the platform service")
        setup = prepare(root, platform_sock)
        procs.append(
            start(
                [
                    SEVLAUNCH,
                    "host",
                    "serve",
                    "--state",
                    str(root / "host"),
                    "--qemu",
                    VMM,
                    "--platform",
                    str(platform_sock),
                ],
                root / "host.log",
            )
        )
        wait_for(host_sock.exists, "the host manager")
        print(f"host_launch: emulated SEV, 1 MiB firmware, no kernel; {os.cpu_count()} CPUs")
        asyncio.run(run_all(host_sock, setup, args.rounds))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
