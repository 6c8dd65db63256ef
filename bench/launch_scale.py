"""N concurrent attested launches end to end, and how close they come to the PSP's limit.

For each latency model (``none``: the emulated PSP answers as fast as it computes; ``real``:
it also sleeps what the command costs on an EPYC part, see sevlaunch.platform.latency) one
stack is started as ``sevlaunch demo`` starts it (platform service, key server, host manager,
broker; a 4 MiB firmware with kernel hashes). Then, for each N, N whole launches, steps 1-13
(the VM tool's Launcher over the host and broker HTTP APIs), are submitted at once and run as
``sevlaunch launch --count N`` runs them: at most ``LAUNCHERS`` in flight, ``PARALLEL_STARTS``
starting at a time (``--launchers``, ``--parallel-starts``); the guests are destroyed between
rounds. Printed per round: launches per second (N / wall time),
p50 and p99 of one launch's latency, from its submission to its result (time spent waiting
for a worker thread or at the start gate included).

Rounds alternate: the sizes run ``--repeat`` times, every other pass in reverse order, so a
machine that slows down (a shared host's neighbours move CPU time by 30% between rounds
here) moves every size alike; each size's figures are the medians of its rounds, and the
throughput at N = 100 is compared with N = 10's. Each round also prints the CPU time of every
process of the stack (services, the guests' VMMs once reaped, this launcher) per launch: on
a 2-core machine the launches are CPU-bound, so launches/s follows it. The package's
bytecode is compiled first, as an installed package has it (see bench/_bytecode.py).

The baseline, with real latency: one PSP runs one command at a time, so N launches cannot take
less than N times the firmware time of one launch. That time is counted, not guessed: a lone
launch runs first through a proxy on the platform socket that decodes every frame and prices
each mailbox command with the latency model (LAUNCH_START 4 ms, LAUNCH_UPDATE_DATA 0.5 ms plus
its length at 6 MiB/s, every other command 0.5 ms). Ratio = wall time / (N x that), target at
most 1.2 at N = 100.

Usage: ``.venv/bin/python bench/launch_scale.py [--n 1,10,100] [--latency none,real] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._bytecode import ensure_bytecode
from sevlaunch.formats.commands import Command
from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate import demo
from sevlaunch.orchestrate.launch import LAUNCHERS, PARALLEL_STARTS, Launcher, LaunchResult
from sevlaunch.orchestrate.owner_port import BrokerOwner
from sevlaunch.orchestrate.services import Stack
from sevlaunch.platform.latency import REAL
from sevlaunch.platform.protocol import FrameDecoder, MailboxRequest, decode_request

TARGET = 1.2


# ---- counting the PSP commands of one launch


@dataclass
class CountingProxy:
    """Listens at ``listen``, forwards every byte to ``upstream`` and decodes what clients send."""

    listen: Path
    upstream: Path
    mailbox: list[tuple[int, float]] = field(default_factory=list)  # (command, modelled cost)
    other: Counter[str] = field(default_factory=Counter)

    @contextlib.contextmanager
    def running(self) -> Iterator[CountingProxy]:
        ready, loop_box = threading.Event(), []
        stop: list[asyncio.Event] = []

        async def main() -> None:
            stop.append(asyncio.Event())
            loop_box.append(asyncio.get_running_loop())
            server = await asyncio.start_unix_server(self._serve, path=str(self.listen))
            ready.set()
            async with server:
                await stop[0].wait()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            loop_box[0].call_soon_threadsafe(stop[0].set)
            thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))
        with contextlib.suppress(asyncio.CancelledError):  # the proxy stopping, clients still on
            await asyncio.gather(
                self._pump(reader, up_writer, FrameDecoder()), self._pump(up_reader, writer, None)
            )

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, decoder: FrameDecoder | None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(1 << 20):
                if decoder is not None:
                    self._count(decoder, data)
                sink.write(data)
                await sink.drain()
        sink.close()

    def _count(self, decoder: FrameDecoder, data: bytes) -> None:
        decoder.feed(data)
        while (frame := decoder.next_frame()) is not None:
            request = decode_request(frame)
            if isinstance(request, MailboxRequest):
                self.mailbox.append((request.command, REAL.cost(request.command, request.buffer)))
            else:
                self.other[type(request).__name__] += 1

    def commands(self) -> Counter[str]:
        return Counter(_name(c) for c, _ in self.mailbox)

    def cost(self) -> float:
        return sum(cost for _, cost in self.mailbox)


def _name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"{command:#x}"


@contextlib.contextmanager
def proxied(stack: Stack) -> Iterator[CountingProxy]:
    """The proxy in front of the platform socket: VMMs and the host manager connect by path,
    so the service's socket is moved aside while it runs."""
    moved = stack.root / "psp.sock"
    stack.platform_socket.rename(moved)
    proxy = CountingProxy(stack.platform_socket, moved)
    try:
        with proxy.running():
            yield proxy
    finally:
        stack.platform_socket.unlink(missing_ok=True)
        moved.rename(stack.platform_socket)


def count_one_launch(stack: Stack, art: demo.Artifacts) -> CountingProxy:
    """The PSP commands of one lone launch (its teardown excluded)."""
    with proxied(stack) as proxy:
        result = launch_round(stack, art, ["counted"])[0][0]
        counted = CountingProxy(proxy.listen, proxy.upstream, list(proxy.mailbox))
        counted.other.update(proxy.other)
        if not result.ok:
            raise SystemExit(f"the counted launch failed: {result.message}")
    destroy_all(stack)
    return counted


def mix(proxy: CountingProxy, launches: int = 1) -> str:
    counts = proxy.commands()
    return ", ".join(f"{name} x{counts[name] / launches:g}" for name in sorted(counts))


# ---- launching


def launch_round(
    stack: Stack,
    art: demo.Artifacts,
    names: list[str],
    parallel_starts: int = PARALLEL_STARTS,
    launchers: int = LAUNCHERS,
) -> list[tuple[LaunchResult, float]]:
    """The launches of ``names`` as ``sevlaunch launch --count`` runs them: ``launchers``
    worker threads, ``parallel_starts`` start slots."""
    token = stack.launcher_token.read_bytes().strip()
    gate = threading.Semaphore(parallel_starts)

    def one(name: str, submitted: float) -> tuple[LaunchResult, float]:
        with HostClient(stack.host_uri, timeout=600) as host:
            owner = BrokerOwner(stack.broker_url, token, demo.WORKLOAD)
            launcher = Launcher(
                host,
                owner,
                demo.domain_xml(name, art, art.firmware),
                kds_url=stack.kds_url,
                boot_timeout=600,
                start_gate=gate,
            )
            result = launcher.run()
        return result, time.perf_counter() - submitted

    # a launch's latency runs from its submission, not from when a worker thread picked it up
    with ThreadPoolExecutor(max_workers=min(len(names), launchers)) as pool:
        futures = [pool.submit(one, name, time.perf_counter()) for name in names]
        return [future.result() for future in futures]


def destroy_all(stack: Stack) -> None:
    with HostClient(stack.host_uri, timeout=600) as host:
        names = [d.name for d in host.list_domains()]
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), 16))) as pool:
        list(pool.map(lambda n: _destroy(stack, n), names))


def _destroy(stack: Stack, name: str) -> None:
    with HostClient(stack.host_uri, timeout=600) as host:
        host.destroy(name)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


@contextlib.contextmanager
def started(latency: str) -> Iterator[tuple[Stack, demo.Artifacts]]:
    root = Path(tempfile.mkdtemp(prefix=f"sl-bench-{latency}-"))
    stack = Stack(root, latency=latency)
    try:
        stack.start()
        art = demo.make_artifacts(root / "images")
        demo.register_workload(stack, art)
        yield stack, art
    finally:
        with contextlib.suppress(Exception):
            destroy_all(stack)
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Round:
    n: int
    wall: float
    durations: list[float]
    failed: list[LaunchResult]
    cpu: float  #: CPU seconds of every process of the stack, guests' VMMs included

    @property
    def rate(self) -> float:
        return self.n / self.wall


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int, children: bool) -> float:
    """utime + stime of ``pid`` (with its reaped children's): /proc/PID/stat fields 14-17."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / _TICK


def stack_cpu(stack: Stack) -> float:
    """CPU seconds used so far by the stack's services, the VMMs the host has reaped, and this
    process (its launcher threads)."""
    services = sum(_cpu_of(s.process.pid, True) for s in stack.services)
    return _cpu_of(os.getpid(), False) + services


def one_round(
    stack: Stack, art: demo.Artifacts, n: int, tag: str, args: argparse.Namespace
) -> Round:
    names = [f"n{n}-{tag}-{i}" for i in range(1, n + 1)]
    cpu = stack_cpu(stack)
    began = time.perf_counter()
    counting = proxied(stack) if args.count_commands else contextlib.nullcontext(None)
    with counting as proxy:
        results = launch_round(stack, art, names, args.parallel_starts, args.launchers)
    wall = time.perf_counter() - began
    destroy_all(stack)  # the VMMs exit and are reaped: their CPU time is the host's children's
    used = stack_cpu(stack) - cpu
    if proxy is not None:
        print(f"      PSP commands per launch in this round: {mix(proxy, n)}")
    durations = [d for _, d in results]
    return Round(n, wall, durations, [r for r, _ in results if not r.ok], used)


HEADER = (
    f"{'N':>5} {'wall s':>8} {'launch/s':>9} {'p50 s':>7} {'p99 s':>7} {'CPU s/l':>8} {'failed':>6}"
)


def row(r: Round, per_launch: float | None) -> str:
    line = (
        f"{r.n:>5} {r.wall:>8.2f} {r.rate:>9.2f} {statistics.median(r.durations):>7.2f} "
        f"{percentile(r.durations, 99):>7.2f} {r.cpu / r.n:>8.3f} {len(r.failed):>6}"
    )
    if per_launch:
        bound = r.n * per_launch
        line += f"  {bound:>11.2f}   {r.wall / bound:.2f}"
    return line


def run_model(latency: str, sizes: list[int], args: argparse.Namespace) -> None:
    print(f"\n== --latency {latency}")
    with started(latency) as (stack, art):
        launch_round(stack, art, ["warm-up"])  # the host's node SEV info probe, caches
        destroy_all(stack)
        per_launch = None
        if latency == "real":
            lone = count_one_launch(stack, art)
            per_launch = lone.cost()
            print(f"PSP commands of one launch: {mix(lone)}; other requests: {dict(lone.other)}")
            print(f"modelled firmware time of one launch: {per_launch * 1000:.1f} ms")
        print(HEADER + ("  PSP bound s   ratio" if per_launch else ""))
        rounds: dict[int, list[Round]] = {n: [] for n in sizes}
        for rep in range(args.repeat):
            for n in sizes if rep % 2 == 0 else list(reversed(sizes)):
                r = one_round(stack, art, n, str(rep), args)
                rounds[n].append(r)
                print(row(r, per_launch), flush=True)
                for result in r.failed[:3]:
                    print(f"      {result.message}")
        summarize(rounds, per_launch)


def summarize(rounds: dict[int, list[Round]], per_launch: float | None) -> None:
    """Medians per size; the scaling and PSP-bound verdicts."""
    print(f"medians of {len(next(iter(rounds.values())))} alternated rounds:")
    rate = {n: statistics.median(r.rate for r in rs) for n, rs in rounds.items()}
    for n, rs in rounds.items():
        cpu = statistics.median(r.cpu / r.n for r in rs)
        p99 = statistics.median(percentile(r.durations, 99) for r in rs)
        line = f"{n:>5} launch/s {rate[n]:.2f}  p99 {p99:.2f} s  CPU {cpu:.3f} s/launch"
        if per_launch:
            ratio = statistics.median(r.wall / (r.n * per_launch) for r in rs)
            line += f"  PSP-bound ratio {ratio:.2f}"
            if n >= 100:
                line += f" (target <= {TARGET}: {'met' if ratio <= TARGET else 'MISSED'})"
        print(line)
    big = max(rate)
    if 10 in rate and big > 10:
        verdict = "met" if rate[big] >= rate[10] else "MISSED"
        print(f"throughput N={big} / N=10: {rate[big] / rate[10]:.2f} (target >= 1: {verdict})")
    failures = sum(len(r.failed) for rs in rounds.values() for r in rs)
    print(f"failed launches: {failures} (target 0)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="1,10,100", help="comma-separated launch counts")
    parser.add_argument("--latency", default="none,real", help="latency models: none, real")
    parser.add_argument(
        "--parallel-starts",
        type=int,
        default=PARALLEL_STARTS,
        help="guests started at once (the VM tool's start gate)",
    )
    parser.add_argument(
        "--count-commands",
        action="store_true",
        help="count the PSP commands of every round too (the proxy costs a little time)",
    )
    parser.add_argument(
        "--launchers",
        type=int,
        default=LAUNCHERS,
        help="launches in flight at once (the VM tool's worker threads)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="passes over the sizes, alternating their order"
    )
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.n.split(",") if x]
    ensure_bytecode()
    print(
        f"{os.cpu_count()} CPUs; {args.launchers} launchers, start gate {args.parallel_starts}; "
        f"{args.repeat} passes"
    )
    for model in args.latency.split(","):
        run_model(model, sizes, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
