"""SNP post-attestation in the broker against the cryptography it cannot avoid.

Measured: ``Broker.snp_attest`` in process on SQLite (the nonce read, the pinned roots, the
certificates from the process's memory copies of what the emulated key server served, the
full verifier, the nonce spent and the decision audited in one transaction, the secret
unsealed and sealed to the guest's key). Baseline, in the same run, on the same report: the
same verifier call (``check_report`` with the same certificates, CRL and expectations), the
same secret unsealed, the OVMF table built and sealed with ``seal_to``. Each iteration gets a
fresh nonce from ``snp_challenge`` and a fresh report from the emulated firmware, neither
timed; broker and baseline alternate per iteration. Ratio = broker / baseline; target at most
1.25 (the SEV attestation's in-process goal, issue 16).

Usage: ``.venv/bin/python bench/snp_attest.py [--iterations N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.broker.conftest import KEK  # noqa: E402
from tests.broker.snp_lab import SnpLab, snp_lab  # noqa: E402

from sevlaunch.broker import db  # noqa: E402
from sevlaunch.broker.service import Broker, NewSnpWorkload, Settings, SnpSettings  # noqa: E402
from sevlaunch.broker.snp_admin import snp_secret_context  # noqa: E402
from sevlaunch.crypto.snp import release  # noqa: E402
from sevlaunch.crypto.snp.certs import load_certs  # noqa: E402
from sevlaunch.crypto.snp.chain import AMD_ARKS  # noqa: E402
from sevlaunch.formats.snp.report import AttestationReport  # noqa: E402
from sevlaunch.formats.snp.tcb import Generation  # noqa: E402
from sevlaunch.owner import secret as owner_secret  # noqa: E402
from sevlaunch.owner.snp.expectations import SnpExpectations  # noqa: E402
from sevlaunch.owner.snp.verifier import SnpEvidence as VerifierEvidence  # noqa: E402
from sevlaunch.owner.snp.verifier import check_report  # noqa: E402
from sevlaunch.protocol.snp import SnpEvidence  # noqa: E402

TARGET = 1.25
SECRET = b"correct horse battery staple"


def _broker(lab: SnpLab, directory: Path) -> Broker:
    engine = db.create_engine(f"sqlite:///{directory / 'broker.db'}")
    db.upgrade(engine)
    snp = SnpSettings(
        kds_url=lab.kds.url, cache_dir=directory, crl_ttl=1e9, peer_burst=1 << 30, peer_rate=1e9
    )
    broker = Broker(engine, KEK, Settings(snp=snp, sweep_interval=0))
    broker.add_snp_root(lab.cert_chain, "lab")
    return broker


def run(iterations: int) -> None:
    with snp_lab() as lab, tempfile.TemporaryDirectory() as tmp:
        broker = _broker(lab, Path(tmp))
        guest = lab.guest()
        exp = SnpExpectations(measurements=(guest.measurement,))
        broker.add_snp_workload(NewSnpWorkload("app", exp, {"luks-key": SECRET}))
        sealed = broker.sealer.seal(SECRET, snp_secret_context("app", str(uuid.uuid4())))
        trusted = {**AMD_ARKS, load_certs(lab.cert_chain)[1].fingerprint: Generation.MILAN}

        def evidence() -> SnpEvidence:
            nonce = broker.snp_challenge("app").nonce
            return SnpEvidence("app", nonce, guest.report(nonce), guest.public)

        broker.snp_attest(evidence())  # warm: certificates fetched once, then in memory
        report = AttestationReport.from_bytes(evidence().report)
        certs = broker.snp_certs.for_report(report, trusted, has_table=False)
        context = snp_secret_context("app", str(uuid.uuid4()))
        sealed = broker.sealer.seal(SECRET, context)

        def baseline(given: SnpEvidence) -> None:
            bound = dataclasses.replace(
                exp, report_data=release.report_data(given.nonce, given.tee_pubkey)
            )
            at = datetime.datetime.fromtimestamp(time.time(), datetime.UTC)
            ours = VerifierEvidence(given.report, certs.leaf, certs.ca, certs.crl)
            verdicts = check_report(ours, bound, at=at, trusted_arks=trusted)
            assert verdicts.ok, verdicts.failed
            plain = broker.sealer.open(sealed, context)
            table = owner_secret.secret_table([("luks-key", plain)]).to_bytes()
            release.seal_to(given.tee_pubkey, table, broker.random)

        ours_t: list[float] = []
        base_t: list[float] = []
        for i in range(iterations):
            for side in (0, 1) if i % 2 else (1, 0):
                given = evidence()
                start = time.perf_counter()
                if side:
                    broker.snp_attest(given)
                else:
                    baseline(given)
                (ours_t if side else base_t).append(time.perf_counter() - start)
        ours_ms = statistics.median(ours_t) * 1e3
        base_ms = statistics.median(base_t) * 1e3
        ratio = ours_ms / base_ms
        verdict = "ok" if ratio <= TARGET else "ABOVE TARGET"
        print(f"SNP attestation in process (SQLite), {iterations} alternated iterations:")
        print(f"  broker snp_attest  {ours_ms:7.2f} ms (median)")
        print(f"  crypto floor       {base_ms:7.2f} ms (same verifier, unseal, seal_to)")
        print(f"  ratio {ratio:.2f} (target <= {TARGET}) {verdict}")
        broker.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--iterations", type=int, default=200)
    run(parser.parse_args().iterations)


if __name__ == "__main__":
    main()
