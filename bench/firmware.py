"""Firmware emulator costs against the primitives they are built on, measured in one run.

- LAUNCH_UPDATE_DATA throughput (16 MiB in 1 MiB commands, SparseMemory) against hashlib
  SHA-256 plus pyca AES-128-CTR over the same bytes. Target ratio (ours / baseline
  throughput) >= 0.7.
- LAUNCH_START (GODH + session; the guest is decommissioned, untimed, after each) against one
  pyca P-384 ECDH. Target ratio (ours / baseline time) <= 1.5.

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


def best_of(fn: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``fn`` over ``rounds`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_update(fw: Firmware, handle: int) -> tuple[float, float]:
    """Seconds for 16 MiB of LAUNCH_UPDATE_DATA (guest RAM re-staged, untimed, each round)
    and for SHA-256 plus AES-128-CTR over the same bytes."""
    data = os.urandom(TOTAL)
    mem = SparseMemory()
    key, iv = os.urandom(16), os.urandom(16)
    times = []
    for _ in range(6):
        mem.write(0, data)
        start = time.perf_counter()
        for offset in range(0, TOTAL, CHUNK):
            fw.launch_update_data(handle, mem, offset, CHUNK)
        times.append(time.perf_counter() - start)

    def baseline() -> None:
        hashlib.sha256(data).digest()
        Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor().update(data)

    return statistics.median(times[1:]), best_of(baseline, 5)


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

    times = []
    for _ in range(300):
        begin = time.perf_counter()
        status, written = fw.execute(Command.LAUNCH_START, start, mem)
        times.append(time.perf_counter() - begin)
        assert status is Status.SUCCESS
        decommission = HandleBuffer(LaunchStartBuffer.from_bytes(written).handle)
        fw.execute(Command.DECOMMISSION, decommission.to_bytes(), mem)

    private = ec.generate_private_key(ec.SECP384R1())
    peer = ec.generate_private_key(ec.SECP384R1()).public_key()
    return statistics.median(times), best_of(lambda: private.exchange(ec.ECDH(), peer), 300)


def main() -> None:
    fw = Firmware(PROFILES["milan"])
    fw.init()
    handle = fw.launch_start(0)
    fw.activate(handle, PROFILES["milan"].sev_asids.start)
    ours, base = bench_update(fw, handle)
    print(
        f"LAUNCH_UPDATE_DATA: {TOTAL / ours / MIB:8.1f} MiB/s; SHA-256 + AES-128-CTR: "
        f"{TOTAL / base / MIB:8.1f} MiB/s; ratio {base / ours:.2f} (target >= 0.7)"
    )
    ours, base = bench_launch_start(fw)
    print(
        f"LAUNCH_START: {ours * 1e3:.3f} ms; P-384 ECDH: {base * 1e3:.3f} ms; "
        f"ratio {ours / base:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
