"""Launch-digest speed and memory against hashlib and, when installed, sev-snp-measure.

Inputs, generated in a temporary directory: a 4 MiB OVMF-like firmware whose footer table
(built with OvmfFooterTable/FooterEntry) names an SEV hashes area, a 64 MiB kernel and a
256 MiB initrd. Measured in the same run:

- in-process: ``launch_digest`` over the three files (streamed) against ``hashlib.file_digest``
  over the same three files; ratio = baseline / ours, target at least 0.9;
- peak RSS of a whole ``sevlaunch owner digest`` process (target under 64 MiB), read by a
  wrapper process through ``resource.getrusage(RUSAGE_CHILDREN)``;
- if the PyPI package sev-snp-measure is installed (a bench-only optional dependency), its
  ``--mode sev`` on the same inputs, in-process and as whole CLI processes, and both CLIs on
  the firmware alone, where start-up dominates; ratio = theirs / ours (above 1: we are faster);
  and both CLIs' CPU time on a 2 MiB and a 64 MiB firmware alone (target: ratio at least 1).

Usage: ``.venv/bin/python bench/digest.py [--rounds N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sevlaunch.formats import FooterEntry, OvmfFooterTable
from sevlaunch.formats.ovmf import (
    RESET_VECTOR_SIZE,
    SEV_ES_RESET_BLOCK_GUID,
    SEV_HASH_TABLE_GUID,
    SEV_SECRET_BLOCK_GUID,
)
from sevlaunch.owner.launch_digest import launch_digest

MIB = 1 << 20
RATIO_TARGET = 0.9
RSS_TARGET_MIB = 64
FIRMWARE_ONLY_MIB = (2, 64)  # where start-up dominates, and where hashing does
CMDLINE = "console=ttyS0 root=/dev/vda1 quiet"
BIN = Path(sys.executable).parent


def _area(base: int, size: int) -> bytes:
    return base.to_bytes(4, "little") + size.to_bytes(4, "little")


def firmware_image(size: int) -> bytes:
    """``size`` bytes ending in an AmdSev-like footer table and a reset vector."""
    table = OvmfFooterTable(
        (
            FooterEntry(SEV_ES_RESET_BLOCK_GUID, (0x80B004).to_bytes(4, "little")),
            FooterEntry(SEV_SECRET_BLOCK_GUID, _area(0x810000, 0xC00)),
            FooterEntry(SEV_HASH_TABLE_GUID, _area(0x810C00, 0x400)),
        )
    ).to_bytes() + bytes(RESET_VECTOR_SIZE)
    body = (os.urandom(MIB) * (size // MIB + 1))[: size - len(table)]
    return body + table


def write_random(path: Path, size: int) -> None:
    block = os.urandom(8 * MIB)
    with path.open("wb") as out:
        for offset in range(0, size, len(block)):
            out.write(block[: min(len(block), size - offset)])


def make_inputs(folder: Path) -> tuple[Path, Path, Path]:
    fw, kernel, initrd = folder / "OVMF.amdsev.fd", folder / "vmlinuz", folder / "initrd.img"
    fw.write_bytes(firmware_image(4 * MIB))
    write_random(kernel, 64 * MIB)
    write_random(initrd, 256 * MIB)
    return fw, kernel, initrd


def best_of(rounds: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(
    rounds: int, first: Callable[[], object], second: Callable[[], object]
) -> tuple[float, float]:
    """Best time of each, runs alternated so that background load hits both alike."""
    a, b = [], []
    for _ in range(rounds):
        a.append(best_of(1, first))
        b.append(best_of(1, second))
    return min(a), min(b)


def ours(fw: Path, kernel: Path, initrd: Path) -> bytes:
    with fw.open("rb") as f, kernel.open("rb") as k, initrd.open("rb") as r:
        return launch_digest(f, k, r, CMDLINE)


def baseline(*paths: Path) -> None:
    for path in paths:
        with path.open("rb") as handle:
            hashlib.file_digest(handle, "sha256")


def child_peak_rss_mib(argv: list[str]) -> float:
    """Peak RSS of ``argv`` alone: a wrapper process runs it and reads RUSAGE_CHILDREN."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *argv],
        check=True,
        capture_output=True,
        text=True,
        env=CHILD_ENV,
    )
    return int(done.stdout.strip()) / 1024  # ru_maxrss is in KiB on Linux


#: Child processes may cache bytecode, as an installed package has it (PYTHONDONTWRITEBYTECODE
#: would make every start compile sevlaunch's modules again, which no real install does).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cpu_of(argv: list[str]) -> float:
    """User + system seconds of one whole process (its own, from wait4)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=CHILD_ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def cpu_alternated(rounds: int, first: list[str], second: list[str]) -> tuple[float, float]:
    """Median CPU seconds of each command, runs alternated (CPU time is what a busy machine
    moves least; wall time on a shared machine mostly measures the neighbours)."""
    a, b = [], []
    for _ in range(rounds):
        a.append(cpu_of(first))
        b.append(cpu_of(second))
    return statistics.median(a), statistics.median(b)


def run_cli(argv: list[str]) -> str:
    done = subprocess.run(argv, check=True, capture_output=True, text=True, env=CHILD_ENV)
    return done.stdout.strip()


def sevlaunch_cli(fw: Path, kernel: Path | None, initrd: Path | None) -> list[str]:
    argv = [str(BIN / "sevlaunch"), "owner", "digest", "--firmware", str(fw)]
    if kernel is not None and initrd is not None:
        argv += ["--kernel", str(kernel), "--initrd", str(initrd), "--append", CMDLINE]
    return argv


def snp_cli(fw: Path, kernel: Path | None, initrd: Path | None) -> list[str]:
    argv = [str(BIN / "sev-snp-measure"), "--mode", "sev", "--ovmf", str(fw)]
    if kernel is not None and initrd is not None:
        argv += ["--kernel", str(kernel), "--initrd", str(initrd), "--append", CMDLINE]
    return [*argv, "--output-format", "hex"]


def peer(fw: Path, kernel: Path, initrd: Path, rounds: int, ours_s: float) -> None:
    if importlib.util.find_spec("sevsnpmeasure") is None:
        print("sev-snp-measure: not installed (.venv/bin/pip install sev-snp-measure to compare)")
        return
    from sevsnpmeasure.guest import sev_calc_launch_digest

    theirs = sev_calc_launch_digest(str(fw), str(kernel), str(initrd), CMDLINE)
    assert theirs == ours(fw, kernel, initrd), "sev-snp-measure disagrees on the digest"
    theirs_s = best_of(
        rounds, lambda: sev_calc_launch_digest(str(fw), str(kernel), str(initrd), CMDLINE)
    )
    print(
        f"in-process  sev-snp-measure --mode sev: {theirs_s * 1e3:8.1f} ms   "
        f"ratio theirs/ours {theirs_s / ours_s:5.2f}"
    )
    for label, args in (("full inputs", (fw, kernel, initrd)), ("firmware only", (fw, None, None))):
        mine, other = sevlaunch_cli(*args), snp_cli(*args)
        assert run_cli(mine) == run_cli(other), f"CLIs disagree on {label}"
        ours_cli, theirs_cli = interleaved(
            max(rounds, 10), functools.partial(run_cli, mine), functools.partial(run_cli, other)
        )
        print(
            f"CLI {label:13s}: sevlaunch {ours_cli * 1e3:7.1f} ms, sev-snp-measure "
            f"{theirs_cli * 1e3:7.1f} ms   ratio theirs/ours {theirs_cli / ours_cli:5.2f}"
        )
    print(
        f"peak RSS sev-snp-measure CLI: {child_peak_rss_mib(snp_cli(fw, kernel, initrd)):.1f} MiB"
    )
    for size in FIRMWARE_ONLY_MIB:
        image = fw.parent / f"OVMF-{size}M.fd"
        image.write_bytes(firmware_image(size * MIB))
        mine, other = sevlaunch_cli(image, None, None), snp_cli(image, None, None)
        assert run_cli(mine) == run_cli(other), f"CLIs disagree on a {size} MiB firmware"
        ours_cpu, theirs_cpu = cpu_alternated(max(rounds, 15), mine, other)
        print(
            f"CLI {size:3d} MiB firmware only, CPU (user+sys, median): sevlaunch "
            f"{ours_cpu * 1e3:6.1f} ms, sev-snp-measure {theirs_cpu * 1e3:6.1f} ms   ratio "
            f"theirs/ours {theirs_cpu / ours_cpu:5.2f} (target >= 1)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="generate the inputs here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sevlaunch-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        fw, kernel, initrd = make_inputs(folder)
        total = sum(p.stat().st_size for p in (fw, kernel, initrd)) / MIB
        baseline(fw, kernel, initrd)  # warm the page cache for both sides
        ours_s, base_s = interleaved(
            args.rounds, lambda: ours(fw, kernel, initrd), lambda: baseline(fw, kernel, initrd)
        )
        ratio = base_s / ours_s
        print(f"inputs: {total:.0f} MiB (4 MiB firmware, 64 MiB kernel, 256 MiB initrd)")
        print(
            f"in-process  sevlaunch launch_digest:    {ours_s * 1e3:8.1f} ms "
            f"({total / ours_s:6.0f} MiB/s)"
        )
        print(
            f"in-process  hashlib.file_digest x3:     {base_s * 1e3:8.1f} ms "
            f"({total / base_s:6.0f} MiB/s)"
        )
        print(
            f"ratio hashlib/ours {ratio:5.2f} (target >= {RATIO_TARGET}) "
            f"{'OK' if ratio >= RATIO_TARGET else 'MISSED'}"
        )
        rss = child_peak_rss_mib(sevlaunch_cli(fw, kernel, initrd))
        print(
            f"peak RSS sevlaunch owner digest CLI: {rss:.1f} MiB (target < {RSS_TARGET_MIB}) "
            f"{'OK' if rss < RSS_TARGET_MIB else 'MISSED'}"
        )
        peer(fw, kernel, initrd, args.rounds, ours_s)


if __name__ == "__main__":
    main()
