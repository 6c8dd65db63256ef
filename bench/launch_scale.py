"""N concurrent attested launches end to end, and how close they come to the PSP's limit.

For each latency model (``none``: the emulated PSP answers as fast as it computes; ``real``:
it also sleeps what the command costs on an EPYC part, see sevlaunch.platform.latency) one
stack is started as ``sevlaunch demo`` starts it (platform service, key server, host manager,
broker; a 4 MiB firmware with kernel hashes). Then, for each N, N threads each run one whole
launch, steps 1-13 (the VM tool's Launcher over the host and broker HTTP APIs), at once; the
guests are destroyed between rounds. Printed per round: launches per second (N / wall time),
p50 and p99 of one launch's latency, from its submission to its result (time spent waiting
for a worker thread or at the start gate included).

The baseline, with real latency: one PSP runs one command at a time, so N launches cannot take
less than N times the firmware time of one launch. That time is counted, not guessed: a lone
launch runs first through a proxy on the platform socket that decodes every frame and prices
each mailbox command with the latency model (LAUNCH_START 4 ms, LAUNCH_UPDATE_DATA 0.5 ms plus
its length at 6 MiB/s, every other command 0.5 ms). Ratio = wall time / (N x that), target at
most 1.2 at N = 100.

Usage: ``.venv/bin/python bench/launch_scale.py [--n 1,10,100] [--latency none,real]``
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

from sevlaunch.formats.commands import Command
from sevlaunch.host.client import HostClient
from sevlaunch.orchestrate import demo
from sevlaunch.orchestrate.launch import PARALLEL_STARTS, Launcher, LaunchResult
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
    stack: Stack, art: demo.Artifacts, names: list[str], parallel_starts: int = PARALLEL_STARTS
) -> list[tuple[LaunchResult, float]]:
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
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
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


def run_model(latency: str, sizes: list[int], parallel_starts: int, count_commands: bool) -> None:
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
        header = f"{'N':>5} {'wall s':>8} {'launch/s':>9} {'p50 s':>7} {'p99 s':>7} {'failed':>6}"
        print(header + ("  PSP bound s   ratio" if per_launch else ""))
        for n in sizes:
            began = time.perf_counter()
            names = [f"n{n}-{i}" for i in range(1, n + 1)]
            counting = proxied(stack) if count_commands else contextlib.nullcontext(None)
            with counting as proxy:
                results = launch_round(stack, art, names, parallel_starts)
            wall = time.perf_counter() - began
            durations = [d for _, d in results]
            failed = [r for r, _ in results if not r.ok]
            line = (
                f"{n:>5} {wall:>8.2f} {n / wall:>9.2f} {statistics.median(durations):>7.2f} "
                f"{percentile(durations, 99):>7.2f} {len(failed):>6}"
            )
            if per_launch:
                bound = n * per_launch
                line += f"  {bound:>11.2f}   {wall / bound:.2f}"
                if failed:
                    line += "  (not comparable: launches failed)"
                elif n >= 100:
                    line += (
                        f"  (target <= {TARGET}: {'met' if wall / bound <= TARGET else 'MISSED'})"
                    )
            print(line, flush=True)
            if proxy is not None:
                print(f"      PSP commands per launch in this round: {mix(proxy, n)}")
            for result in failed[:3]:
                print(f"      {result.message}")
            destroy_all(stack)


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
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.n.split(",") if x]
    print(f"{os.cpu_count()} CPUs; start gate {args.parallel_starts}")
    for model in args.latency.split(","):
        run_model(model, sizes, args.parallel_starts, args.count_commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
