"""Cost of one attestation in the broker, and its HTTP throughput.

1. In process: ``Broker.start_launch`` (chain verify, session, sealed keys, DB rows) plus
   ``Broker.finish_launch`` (claim, measurement check, secret packet, audit) on SQLite, timed
   around the broker calls only (the simulated platform's work is outside the timer). Baseline,
   in the same run: the cryptographic operations the attestation cannot avoid, called
   directly on pyca/cryptography (and hashlib) — 3 RSA-4096 PSS verifies and 4 ECDSA P-384
   verifies (the RSA keys built from numbers inside the loop, the P-384 ones, the PDH's
   included, built once: the broker builds RSA keys per verification and caches P-384 keys
   in ``sevlaunch.crypto.ecc.to_public_key``), the SHA-256 that names the
   platform, a P-384 key and its public point for the GODH certificate, ECDH, the KDF and wrap
   HMACs and AES-CTR, the POLICY_MAC, AES-GCM sealing of TEK ‖ TIK under the key-encryption
   key, then at the measurement AES-GCM opening of TEK ‖ TIK and of the secret, the
   measurement HMAC, the secret packet's AES-CTR and HMAC. With the chain cache the broker
   skips the chain; its ratio is then taken against the baseline without the chain verifies.
   Baseline and broker iterations alternate, so load from other processes on the machine
   weighs on both alike; each is timed by the wall clock and by this thread's CPU time (the
   broker runs no other thread here), medians. Target: at most 1.25. The crypto floor holds
   no persistence: a third side, alternated too, adds the SQL the broker ran (traced by SQLite,
   replayed as text on a connection of its own, see :func:`sql_floor`), the floor of a durable
   attestation. ``--profile`` splits the broker's time between pyca/hashlib, SQLite and the
   rest (cProfile).
2. Over HTTP: ``sevlaunch broker serve`` on a UNIX socket, 1, 8 and 32 concurrent clients each
   running whole attestations (start, simulated platform, measurement), in alternating rounds
   of ``--seconds`` each (medians of ``--rounds``), on SQLite and, when
   SEVLAUNCH_TEST_POSTGRES_URL is set, on PostgreSQL. Target: 32 clients at least as many
   attestations a second as 1.

Usage: ``.venv/bin/python bench/broker.py [--iterations N] [--seconds S] [--rounds R]
[--no-http] [--profile]``
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as pyca_hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.broker.conftest import KEK, LAUNCHER_TOKEN, OWNER_TOKEN  # noqa: E402
from tests.broker.fakeplatform import FakePlatform  # noqa: E402
from tests.broker.servers import broker_process, write_files  # noqa: E402

from sevlaunch.broker import db  # noqa: E402
from sevlaunch.broker.client import BrokerClient  # noqa: E402
from sevlaunch.broker.service import Broker, LauncherLimits, NewWorkload, Settings  # noqa: E402
from sevlaunch.formats.sevcert import EccPublicKey, SevCert  # noqa: E402

TARGET = 1.25
DIGEST = hashlib.sha256(b"bench firmware").digest()
POLICY = 0x3
SECRET = b"x" * 64
#: The benchmark's launcher is not to be limited (the limits' own cost is still paid).
UNLIMITED = LauncherLimits(max_open=10**6, rate=1e9, burst=10**6)


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = pyca_hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def baseline(p: FakePlatform) -> tuple[Callable[[], None], Callable[[], None]]:
    """(chain verification, everything else) as direct pyca/cryptography calls."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=padding.PSS.DIGEST_LENGTH)
    sha384, ecdsa = hashes.SHA384(), ec.ECDSA(hashes.SHA256())
    assert p.ark.signature is not None
    assert p.ask.signature is not None
    rsa_jobs = [
        (p.ark, p.ark.signature.to_bytes(512, "big"), p.ark.signed_bytes()),
        (p.ark, p.ask.signature.to_bytes(512, "big"), p.ask.signed_bytes()),
        (p.ask, p.cek.sig1.rsa_s.to_bytes(512, "big"), p.cek.signed_bytes()),
    ]
    ecc_jobs = [
        (p.oca, encode_dss_signature(*p.oca.sig1.ecdsa_rs), p.oca.signed_bytes()),
        (p.oca, encode_dss_signature(*p.pek.sig1.ecdsa_rs), p.pek.signed_bytes()),
        (p.cek, encode_dss_signature(*p.pek.sig2.ecdsa_rs), p.pek.signed_bytes()),
        (p.pek, encode_dss_signature(*p.pdh.sig1.ecdsa_rs), p.pdh.signed_bytes()),
    ]

    def ecc_pub(cert: SevCert) -> ec.EllipticCurvePublicKey:
        key = cert.public_key
        assert isinstance(key, EccPublicKey)
        return ec.EllipticCurvePublicNumbers(key.qx, key.qy, ec.SECP384R1()).public_key()

    ecc_keys = [(ecc_pub(signer), sig, data) for signer, sig, data in ecc_jobs]
    pdh_key = ecc_pub(p.pdh)

    def chain() -> None:
        for signer, sig, data in rsa_jobs:
            rsa.RSAPublicNumbers(signer.pub_exp, signer.modulus).public_key().verify(
                sig, data, pss, sha384
            )
        for key, sig, data in ecc_keys:
            key.verify(sig, data, ecdsa)

    table = bytes(128)
    platform_parts = (p.pdh.to_bytes(), p.pek.to_bytes() + p.oca.to_bytes() + p.cek.to_bytes())
    sealer = AESGCM(KEK)
    mnonce = bytes(16)  # chosen by the firmware: it arrives in the measurement
    secret_nonce = os.urandom(12)
    sealed_secret = sealer.encrypt(secret_nonce, SECRET, b"secret")

    def rest() -> None:
        platform_id = hashlib.sha256()  # names the platform in the launch row and chain cache
        for part in platform_parts:
            platform_id.update(len(part).to_bytes(4, "little"))
            platform_id.update(part)
        platform_id.hexdigest()
        godh = ec.generate_private_key(ec.SECP384R1())
        godh.public_key().public_numbers()  # the GODH certificate carries the affine point
        z = godh.exchange(ec.ECDH(), pdh_key)
        nonce, tek, tik, iv = (os.urandom(16) for _ in range(4))
        master = _hmac(z, b"\1\0\0\0sev-master-secret\0", nonce, b"\x80\0\0\0")[:16]
        kek = _hmac(master, b"\1\0\0\0sev-kek\0\x80\0\0\0")[:16]
        kik = _hmac(master, b"\1\0\0\0sev-kik\0\x80\0\0\0")[:16]
        wrap = _ctr(kek, iv, tek + tik)
        _hmac(kik, wrap)
        _hmac(tik, POLICY.to_bytes(4, "little"))
        keys_nonce = os.urandom(12)
        sealed_keys = sealer.encrypt(keys_nonce, tek + tik, b"launch-keys")
        # -- the measurement arrives --
        opened = sealer.decrypt(keys_nonce, sealed_keys, b"launch-keys")
        tek, tik = opened[:16], opened[16:]
        measure = _hmac(tik, b"\4\1\x34\4", POLICY.to_bytes(4, "little"), DIGEST, mnonce)
        hmac.compare_digest(measure, measure)
        sealer.decrypt(secret_nonce, sealed_secret, b"secret")
        secret_iv = os.urandom(16)
        ct = _ctr(tek, secret_iv, table)
        _hmac(tik, b"\1\0\0\0\0", secret_iv, len(ct).to_bytes(4, "little") * 2, ct, measure)

    return chain, rest


def sql_floor(broker: Broker, p: FakePlatform, chain: bytes, db_file: Path) -> Callable[[], None]:
    """The SQL one cached attestation runs, replayed with no Python around it: SQLite's own
    trace of the broker's statements (two BEGIN IMMEDIATE ... COMMIT transactions: the
    launcher's limits, the launch row and its audit entry; the claim, the release and its audit
    entry), each run again as text on a connection of its own to the same database with the
    broker's PRAGMAs, a fresh launch id each time. Added to the crypto floor it is the floor
    of a durable attestation, which the issue's goal (crypto alone) leaves out."""
    _attest_id(broker, p, chain)  # the first one fills the caches (and reads the catalog)
    traced: list[str] = []
    kept = db._kept(broker.engine)  # the attestation path's own connection
    assert kept is not None
    conn = kept.get()
    conn.set_trace_callback(traced.append)
    try:
        started = _attest_id(broker, p, chain)
    finally:
        conn.set_trace_callback(None)
    assert traced.count("COMMIT") == 2, traced
    replay = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        replay.execute(f"PRAGMA {pragma}")

    def run() -> None:
        fresh = uuid.uuid4().hex
        for statement in traced:
            replay.execute(statement.replace(started, fresh)).fetchall()

    return run


def _attest_id(broker: Broker, p: FakePlatform, chain: bytes) -> str:
    """One attestation as :func:`_attest` makes it; its launch id."""
    launch = broker.start_launch("w", p.pdh.to_bytes(), chain)
    keys = p.launch_start(
        base64.b64encode(launch.godh).decode(), base64.b64encode(launch.session).decode(), POLICY
    )
    assert broker.finish_launch(
        launch.id, p.launch_info(p.launch_measure(keys, DIGEST, POLICY), POLICY)
    ).secret
    return str(launch.id)


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Timing:
    """Median seconds of the broker's attestation and of its baseline, wall and CPU."""

    wall: float
    cpu: float
    base_wall: float
    base_cpu: float


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def _broker(p: FakePlatform, directory: Path, use_cache: bool, name: str = "inproc") -> Broker:
    engine = db.create_engine(f"sqlite:///{directory / f'{name}-{use_cache}.db'}")
    db.upgrade(engine)
    broker = Broker(engine, KEK, Settings(use_chain_cache=use_cache, launcher_limits=UNLIMITED))
    broker.ensure_default_launcher(LAUNCHER_TOKEN)
    broker.add_root(p.ca_file, "bench")
    broker.add_workload(NewWorkload("w", (POLICY,), (DIGEST,), secrets={"luks-key": SECRET}))
    return broker


def _attest(broker: Broker, p: FakePlatform, chain: bytes, prof: Any = None) -> tuple[float, float]:
    """One attestation: (wall, CPU) seconds spent in the broker (not in the platform), which
    ``prof`` (a cProfile.Profile) profiles if given."""
    on, off = (prof.enable, prof.disable) if prof is not None else (_nothing, _nothing)
    w0, c0 = _clocks()
    on()
    started = broker.start_launch("w", p.pdh.to_bytes(), chain)
    off()
    w1, c1 = _clocks()
    keys = p.launch_start(
        base64.b64encode(started.godh).decode(), base64.b64encode(started.session).decode(), POLICY
    )
    report = p.launch_info(p.launch_measure(keys, DIGEST, POLICY), POLICY)
    w2, c2 = _clocks()
    on()
    released = broker.finish_launch(started.id, report)
    off()
    w3, c3 = _clocks()
    assert released.secret is not None
    return (w1 - w0) + (w3 - w2), (c1 - c0) + (c3 - c2)


def _nothing() -> None:
    pass


def in_process(
    p: FakePlatform,
    directory: Path,
    use_cache: bool,
    iterations: int,
    base: Callable[[], None],
    with_sql: bool = False,
) -> tuple[Timing, Timing | None]:
    """The broker's attestation and ``base`` (and, ``with_sql``, ``base`` followed by
    :func:`sql_floor`), in alternation: (against ``base``, against ``base`` + SQL)."""
    broker = _broker(p, directory, use_cache)
    chain = p.pek.to_bytes() + p.oca.to_bytes() + p.cek.to_bytes()
    sql = sql_floor(broker, p, chain, directory / f"inproc-{use_cache}.db") if with_sql else None

    def durable() -> None:
        base()
        if sql is not None:
            sql()

    got: list[tuple[float, float]] = []
    based: list[tuple[float, float]] = []
    floor: list[tuple[float, float]] = []
    for _ in range(iterations + 1):
        got.append(_attest(broker, p, chain))
        for fn, rows in ((base, based), (durable, floor)):
            if rows is floor and sql is None:
                continue
            w0, c0 = _clocks()
            fn()
            w1, c1 = _clocks()
            rows.append((w1 - w0, c1 - c0))
    broker.engine.dispose()
    del got[0], based[0]  # the first broker call fills the caches

    def med(rows: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    crypto = Timing(med(got, 0), med(got, 1), med(based, 0), med(based, 1))
    if not floor:
        return crypto, None
    del floor[0]
    return crypto, Timing(med(got, 0), med(got, 1), med(floor, 0), med(floor, 1))


#: Where a cProfile'd attestation's own time goes, by the function that spent it.
_CRYPTO = ("cryptography", "_hashlib", "urandom", "randbytes", "exchange", "generate_private")
_SQLITE = ("sqlite3",)


def profile(p: FakePlatform, directory: Path, iterations: int) -> None:
    """Split the cached attestation's time between pyca/hashlib, SQLite and the rest."""
    import cProfile
    import pstats

    broker = _broker(p, directory, True, "profile")
    chain = p.pek.to_bytes() + p.oca.to_bytes() + p.cek.to_bytes()
    _attest(broker, p, chain)
    prof = cProfile.Profile()
    for _ in range(iterations):
        _attest(broker, p, chain, prof)
    broker.engine.dispose()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    groups = {"pyca/hashlib": 0.0, "sqlite3": 0.0, "python": 0.0}
    rest: list[tuple[float, str]] = []
    for (file, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        where = f"{file}:{line}({name})"
        if "disable" in name:
            continue
        if any(k in where for k in _CRYPTO):
            groups["pyca/hashlib"] += tottime
        elif any(k in where for k in _SQLITE):
            groups["sqlite3"] += tottime
        else:
            groups["python"] += tottime
            rest.append((tottime, where.replace(str(ROOT) + "/", "")))
    total = sum(groups.values())
    print(f"profile of {iterations} cached attestations (cProfile inflates the python share):")
    for name, seconds in groups.items():
        print(f"  {name:13s} {seconds / iterations * 1e6:7.1f} us  {seconds / total:6.1%}")
    print("  python, the largest:")
    for seconds, where in sorted(rest, reverse=True)[:12]:
        print(f"    {seconds / iterations * 1e6:6.1f} us  {where[-90:]}")


def http_throughput(
    p: FakePlatform, url: str, token: bytes, concurrency: int, seconds: float
) -> float:
    """Whole attestations per second over HTTP with ``concurrency`` clients."""
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with BrokerClient(url, token) as client:
                while time.monotonic() < stop:
                    launch = client.start_launch("w", p.node)
                    keys = p.launch_start(launch.dh_cert_b64, launch.session_b64, POLICY)
                    info = p.launch_info(p.launch_measure(keys, DIGEST, POLICY), POLICY)
                    assert client.finish_launch(launch.launch_id, info).secret
                    with lock:
                        done[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return done[0] / (time.monotonic() - t0)


def http_bench(
    p: FakePlatform, db_url: str, label: str, directory: Path, seconds: float, rounds: int
) -> None:
    files = write_files(directory)
    sock = directory / f"{label}.sock"
    with broker_process(db_url, files, sock, f"bench-{label}"):
        with BrokerClient(f"unix:{sock}", OWNER_TOKEN) as owner:
            owner.add_root(p.ca_file, "bench")
            owner.add_workload("w", [POLICY], [DIGEST], secrets={"luks-key": SECRET})
            made = owner.add_launcher("bench", max_open=10**6, rate=1e6, burst=10**6)
            token = str(made.token).encode()
        http_throughput(p, f"unix:{sock}", token, 8, 1.0)  # warm up: pools, caches
        levels = (1, 8, 32)
        rates: dict[int, list[float]] = {c: [] for c in levels}
        for _ in range(rounds):
            for concurrency in levels:
                rates[concurrency].append(
                    http_throughput(p, f"unix:{sock}", token, concurrency, seconds)
                )
        for concurrency in levels:
            rate = statistics.median(rates[concurrency])
            print(f"HTTP {label:10s} {concurrency:3d} clients: {rate:7.1f} attestations/s")
        ratio = statistics.median(rates[32]) / statistics.median(rates[1])
        verdict = "ok" if ratio >= 1 else "BELOW TARGET"
        print(f"HTTP {label:10s} 32 clients / 1 client: {ratio:.2f} (target >= 1) {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0, help="per HTTP round")
    parser.add_argument("--rounds", type=int, default=3, help="HTTP rounds of 1, 8, 32 clients")
    parser.add_argument("--no-http", action="store_true", help="only the in-process figures")
    parser.add_argument("--profile", action="store_true", help="where the broker's time goes")
    args = parser.parse_args()
    p = FakePlatform.create(b"bench", bits=4096)
    chain, rest = baseline(p)

    def whole() -> None:
        chain()
        rest()

    base_chain = statistics.median(_timed(chain) for _ in range(args.iterations))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        no_cache, _ = in_process(p, directory, False, args.iterations, whole)
        cached, durable = in_process(p, directory, True, args.iterations, rest, with_sql=True)
        print(
            f"baseline pyca: chain {base_chain * 1e3:.2f} ms, rest {cached.base_wall * 1e3:.2f} "
            f"ms, whole {no_cache.base_wall * 1e3:.2f} ms"
        )
        for label, t in (("no chain cache", no_cache), ("chain cache   ", cached)):
            ratio, cpu_ratio = t.wall / t.base_wall, t.cpu / t.base_cpu
            verdict = "ok" if ratio <= TARGET else "ABOVE TARGET"
            print(
                f"broker in-process, {label}: {t.wall * 1e3:.2f} ms, ratio {ratio:.2f} "
                f"(CPU {cpu_ratio:.2f}; target <= {TARGET}) {verdict}"
            )
        print(f"chain cache saves {(no_cache.wall - cached.wall) * 1e3:.2f} ms per attestation")
        assert durable is not None
        print(
            f"chain cache against crypto + the same SQL replayed ({durable.base_wall * 1e3:.2f} "
            f"ms): ratio {durable.wall / durable.base_wall:.2f} "
            f"(CPU {durable.cpu / durable.base_cpu:.2f}; not the issue's target, its floor)"
        )
        if args.profile:
            profile(p, directory, args.iterations)
        if args.no_http:
            return
        sqlite = f"sqlite:///{directory / 'http.db'}"
        http_bench(p, sqlite, "sqlite", directory, args.seconds, args.rounds)
        pg = os.environ.get("SEVLAUNCH_TEST_POSTGRES_URL")
        if pg:
            from tests.broker.conftest import _reset_postgres

            _reset_postgres(pg)
            http_bench(p, pg, "postgresql", directory, args.seconds, args.rounds)
        else:
            print("HTTP postgresql: skipped (SEVLAUNCH_TEST_POSTGRES_URL not set)")


if __name__ == "__main__":
    main()
