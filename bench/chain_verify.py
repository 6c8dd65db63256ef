"""Cost of a full Rome chain verification against the pyca/cryptography work it cannot avoid.

Measured: ``verify_platform`` on the parsed Rome chain with AMD's Rome CA (ARK self-signature,
ASK, CEK, OCA, PEK twice, PDH, plus the ARK pin). Baseline, in the same run: the primitive calls
alone — 3 RSA-4096 PSS/SHA-384 verifies (ARK, ASK, CEK), 4 ECDSA P-384/SHA-256 verifies — with
the 2 RSA public key objects built from numbers inside the timed loop, as the real code builds
them for every verification, and the 3 P-384 ones built once, as the real code caches them
(``sevlaunch.crypto.ecc.to_public_key``); signatures and signed bytes prepared beforehand.
Verification and baseline alternate in short rounds. The ratio is verification over baseline;
the target is at most 1.15.

Usage: ``.venv/bin/python bench/chain_verify.py [VECTORS_DIR] [--iterations N] [--profile]``
(VECTORS_DIR defaults to ../shared/vectors beside the checkout, or $SEVLAUNCH_SHARED/vectors).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sevlaunch.crypto import TrustStore, verify_platform
from sevlaunch.formats import CaChain, EccPublicKey, PlatformChain, SevCert, Signature

TARGET = 1.15
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VECTORS = Path(os.environ.get("SEVLAUNCH_SHARED", ROOT.parent / "shared")) / "vectors"


def load(vectors: Path) -> tuple[PlatformChain, CaChain]:
    folder = vectors / "platforms" / "rome"
    chain = PlatformChain.from_bytes(
        b"".join((folder / f"{n}.cert").read_bytes() for n in ("pdh", "pek", "oca", "cek"))
    )
    amd = vectors / "amd"
    ca = CaChain.from_bytes(
        (amd / "rome_ask.cert").read_bytes() + (amd / "rome_ark.cert").read_bytes()
    )
    return chain, ca


def primitives(chain: PlatformChain, ca: CaChain) -> Callable[[], None]:
    """The baseline: the seven verify calls, each RSA key built per call and the P-384 keys
    built once (the real code's P-384 keys come from a cache)."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=padding.PSS.DIGEST_LENGTH)
    sha384, ecdsa = hashes.SHA384(), ec.ECDSA(hashes.SHA256())

    def rsa_sig(value: int) -> bytes:
        return value.to_bytes(512, "big")

    def der(sig: Signature) -> bytes:
        return encode_dss_signature(*sig.ecdsa_rs)

    def point(cert: SevCert) -> tuple[int, int]:
        key = cert.public_key
        assert isinstance(key, EccPublicKey)
        return key.qx, key.qy

    assert ca.ark.signature is not None
    assert ca.ask.signature is not None
    ark_n, ask_n = (ca.ark.pub_exp, ca.ark.modulus), (ca.ask.pub_exp, ca.ask.modulus)
    rsa_jobs = (
        (ca.ark.signature, ca.ark.signed_bytes()),
        (ca.ask.signature, ca.ask.signed_bytes()),
        (chain.cek.sig1.rsa_s, chain.cek.signed_bytes()),
    )
    rsa_sigs = [(rsa_sig(s), data) for s, data in rsa_jobs]
    oca_xy, cek_xy, pek_xy = point(chain.oca), point(chain.cek), point(chain.pek)
    ecc_jobs = (  # (signer index, DER signature, signed bytes)
        (0, der(chain.oca.sig1), chain.oca.signed_bytes()),
        (0, der(chain.pek.sig1), chain.pek.signed_bytes()),
        (1, der(chain.pek.sig2), chain.pek.signed_bytes()),
        (2, der(chain.pdh.sig1), chain.pdh.signed_bytes()),
    )
    curve = ec.SECP384R1()
    ecc_keys = [ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
                for x, y in (oca_xy, cek_xy, pek_xy)]  # fmt: skip

    def run() -> None:
        ark_key = rsa.RSAPublicNumbers(*ark_n).public_key()
        ask_key = rsa.RSAPublicNumbers(*ask_n).public_key()
        for key, (sig, data) in zip((ark_key, ark_key, ask_key), rsa_sigs, strict=True):
            key.verify(sig, data, pss, sha384)
        for index, sig, data in ecc_jobs:
            ecc_keys[index].verify(sig, data, ecdsa)

    return run


def per_call(fn: Callable[[], None], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vectors", nargs="?", type=Path, default=DEFAULT_VECTORS)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--profile", action="store_true", help="cProfile the verification")
    args = parser.parse_args(argv)
    if not (args.vectors / "platforms" / "rome").is_dir():
        print(f"no Rome vectors under {args.vectors}: pass the vectors directory", file=sys.stderr)
        return 2
    chain, ca = load(args.vectors)
    trust = TrustStore()

    def full() -> None:
        verify_platform(chain, trust, ca=ca)

    baseline = primitives(chain, ca)
    full()  # warm up; both must succeed
    baseline()
    # Short rounds, alternating, so load from other processes hits both sides alike. The
    # headline is the median of the per-round ratios; best-of times are shown as a check.
    ours, base = [], []
    for _ in range(args.rounds):
        ours.append(per_call(full, args.iterations))
        base.append(per_call(baseline, args.iterations))
    ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
    print(f"Rome chain, {args.rounds} alternating rounds x {args.iterations} calls")
    print(f"{'':28}{'median':>10}{'best':>10}")
    for name, times in (("verify_platform", ours), ("pyca primitives + keys", base)):
        print(f"  {name:26}{statistics.median(times) * 1e6:8.1f}us{min(times) * 1e6:8.1f}us")
    print(f"  ratio (median of rounds)  {ratio:8.3f}    best/best {min(ours) / min(base):.3f}")
    print(f"  target                    {TARGET:8.3f}")
    if args.profile or ratio > TARGET:
        profile = cProfile.Profile()
        profile.runcall(per_call, full, 200)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
