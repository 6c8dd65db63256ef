"""Firmware emulator costs against the primitives they are built on, measured in one run.

- LAUNCH_UPDATE_DATA throughput (16 MiB in 1 MiB commands, SparseMemory) against the same
  primitive work done directly: for each 1 MiB command, for each 64 KiB granule of it, the
  granule copied out of memory, fed to one running hashlib SHA-256, encrypted by a new pyca
  AES-128-XTS context with the granule's address as tweak, and the ciphertext copied back.
  Target ratio (ours / baseline throughput) >= 0.7.
- LAUNCH_START (GODH + session; the guest is decommissioned, untimed, after each) against one
  pyca P-384 ECDH. Target ratio (ours / baseline time) <= 1.5.

Both sides of each figure run alternately, one round of each in turn, so a machine whose
speed drifts moves them together; the ratio is the median of the rounds' ratios.

Run: ``.venv/bin/python bench/firmware.py``.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sevlaunch.crypto import ecc, kdf, launch
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.firmware import PROFILES, Firmware, SparseMemory
from sevlaunch.formats.commands import Command, HandleBuffer, LaunchStartBuffer
from sevlaunch.formats.session import Session
from sevlaunch.formats.sevcert import Algorithm, SevCert, Signature, Usage
from sevlaunch.formats.status import Status

MIB = 1 << 20
TOTAL = 16 * MIB
CHUNK = MIB
GRANULE = 1 << 16  # sevlaunch.firmware.encryption.GRANULE: one XTS data unit


def alternated(ours: Callable[[], float], base: Callable[[], float], rounds: int) -> list[float]:
    """``rounds`` pairs of (our seconds, baseline seconds) taken in turn, after one warm-up of
    each; returns each pair's baseline / ours."""
    ours()
    base()
    ratios = []
    for _ in range(rounds):
        mine = ours()
        theirs = base()
        ratios.append(theirs / mine)
    return ratios


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_update(fw: Firmware, handle: int, rounds: int = 7) -> tuple[float, float, float]:
    """Median seconds of 16 MiB of LAUNCH_UPDATE_DATA (guest RAM re-staged, untimed, each
    round) and of the same primitive work done directly, and the median ratio."""
    data = os.urandom(TOTAL)
    mem = SparseMemory()
    xts = algorithms.AES(os.urandom(32))  # a VEK and its tweak key, as GuestCipher holds them
    ours_s: list[float] = []
    base_s: list[float] = []

    def ours() -> float:
        mem.write(0, data)

        def work() -> None:
            for offset in range(0, TOTAL, CHUNK):
                fw.launch_update_data(handle, mem, offset, CHUNK)

        elapsed = _timed(work)
        ours_s.append(elapsed)
        return elapsed

    def baseline() -> float:
        memory = bytearray(data)

        def work() -> None:
            digest = hashlib.sha256()
            for command in range(0, TOTAL, CHUNK):
                for paddr in range(command, command + CHUNK, GRANULE):
                    granule = bytes(memory[paddr : paddr + GRANULE])
                    digest.update(granule)
                    tweak = modes.XTS(paddr.to_bytes(16, "little"))
                    ciphertext = Cipher(xts, tweak).encryptor().update(granule)
                    memory[paddr : paddr + GRANULE] = ciphertext
            digest.digest()

        elapsed = _timed(work)
        base_s.append(elapsed)
        return elapsed

    ratios = alternated(ours, baseline, rounds)
    return statistics.median(ours_s[1:]), statistics.median(base_s[1:]), statistics.median(ratios)


def _session(fw: Firmware, policy: int) -> tuple[bytes, bytes]:
    pdh = SevCert.from_bytes(fw.pdh_cert_export()[0])
    godh_key = ecc.generate_p384()
    godh = SevCert(
        Usage.PDH,
        Algorithm.ECDH_SHA256,
        ecc.from_public_key(godh_key.public_key()),
        Signature.empty(),
        Signature.empty(),
    )
    nonce, iv = os.urandom(16), os.urandom(16)
    keys = TransportKeys(os.urandom(16), os.urandom(16))
    master = kdf.master_secret(ecc.ecdh(godh_key, pdh.ecc_key), nonce)
    wrap_tk, wrap_mac = launch.wrap_keys(master, keys, iv)
    session = Session(nonce, wrap_tk, iv, wrap_mac, launch.policy_mac(keys.tik, policy))
    return godh.to_bytes(), session.to_bytes()


def bench_launch_start(fw: Firmware) -> tuple[float, float]:
    godh, session = _session(fw, 0)
    mem = SparseMemory()
    mem.write(0x1000, godh)
    mem.write(0x3000, session)
    start = LaunchStartBuffer(0, 0, 0x1000, len(godh), 0x3000, len(session)).to_bytes()

    private = ec.generate_private_key(ec.SECP384R1())
    peer = ec.generate_private_key(ec.SECP384R1()).public_key()
    ours_s: list[float] = []
    base_s: list[float] = []

    def ours() -> float:
        begin = time.perf_counter()
        status, written = fw.execute(Command.LAUNCH_START, start, mem)
        elapsed = time.perf_counter() - begin
        assert status is Status.SUCCESS
        decommission = HandleBuffer(LaunchStartBuffer.from_bytes(written).handle)
        fw.execute(Command.DECOMMISSION, decommission.to_bytes(), mem)
        ours_s.append(elapsed)
        return elapsed

    def baseline() -> float:
        elapsed = _timed(lambda: private.exchange(ec.ECDH(), peer))
        base_s.append(elapsed)
        return elapsed

    alternated(ours, baseline, 300)
    return statistics.median(ours_s), statistics.median(base_s)


def main() -> None:
    fw = Firmware(PROFILES["milan"])
    fw.init()
    handle = fw.launch_start(0)
    fw.activate(handle, PROFILES["milan"].sev_asids.start)
    ours, base, ratio = bench_update(fw, handle)
    print(
        f"LAUNCH_UPDATE_DATA: {TOTAL / ours / MIB:8.1f} MiB/s; the same SHA-256 + AES-128-XTS "
        f"per 64 KiB granule: {TOTAL / base / MIB:8.1f} MiB/s; ratio {ratio:.2f} (target >= 0.7)"
    )
    ours, base = bench_launch_start(fw)
    print(
        f"LAUNCH_START: {ours * 1e3:.3f} ms; P-384 ECDH: {base * 1e3:.3f} ms; "
        f"ratio {ours / base:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
