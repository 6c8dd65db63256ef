"""SNP: one full report verification against the same pyca operations called directly, and
``owner snp digest`` against sev-snp-measure (a bench-only optional install).

1. Verification: ``check_report`` on the real Milan report and VCEK of ../shared/vectors/snp
   (every check; CRL waived, since no real CRL is in the vectors) against a baseline that does
   the same cryptography straight on pyca: load the VCEK (DER) and the ASK+ARK bundle (PEM),
   SHA-256 of the ARK, the ARK's self-signature and the ASK's and VCEK's RSA-PSS SHA-384
   signatures, the VCEK's extensions, and the report's ECDSA P-384 signature. Runs alternate;
   ratio = ours / baseline, target at most 1.15.
2. Digest: a 4 MiB OVMF (random bytes ending in the AmdSev fixture's 4 KiB, so the metadata is
   real), a 16 MiB kernel and a 64 MiB initrd, 4 vCPUs EPYC-v4; in-process
   ``snp_launch_digest`` against ``sevsnpmeasure.guest.snp_calc_launch_digest``, and both CLIs
   as whole processes, alternated; ratio = theirs / ours (above 1: we are faster).

Usage: ``.venv/bin/python bench/snp_verify.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

from sevlaunch.formats.vmsa import CpuSignature
from sevlaunch.owner.launch_digest import measure_direct_boot
from sevlaunch.owner.snp.expectations import SnpExpectations
from sevlaunch.owner.snp.launch_digest import snp_launch_digest
from sevlaunch.owner.snp.verifier import SnpEvidence, check_report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.digest import interleaved, run_cli, write_random  # noqa: E402 - after sys.path

SNP = Path(os.environ.get("SEVLAUNCH_SHARED", ROOT.parent / "shared")) / "vectors" / "snp"
BIN = Path(sys.executable).parent
MIB = 1 << 20
VERIFY_TARGET = 1.15
AT = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
CMDLINE = "console=ttyS0 root=/dev/vda1 quiet"
EPYC_V4 = 0x800F12


def inputs() -> tuple[bytes, bytes, bytes]:
    report = bytes.fromhex((SNP / "virtee-sev/tests/report_milan.hex").read_text().strip())
    return (
        report,
        (SNP / "virtee-sev/tests/vcek_milan.der").read_bytes(),
        (SNP / "virtee-sev/tests/cert_chain_milan").read_bytes(),
    )


def ours(report: bytes, vcek: bytes, ca: bytes, exp: SnpExpectations) -> None:
    verdicts = check_report(SnpEvidence(report, vcek, ca), exp, at=AT)
    assert verdicts.ok, verdicts.failed


def baseline(report: bytes, vcek: bytes, ca: bytes) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        leaf = x509.load_der_x509_certificate(vcek)
        _ = leaf.serial_number
    ask, ark = x509.load_pem_x509_certificates(ca)
    hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
    for issuer, subject in ((ark, ark), (ark, ask), (ask, leaf)):
        rsa_key = issuer.public_key()
        assert isinstance(rsa_key, rsa.RSAPublicKey)
        rsa_key.verify(subject.signature, subject.tbs_certificate_bytes, PSS, hashes.SHA384())
    _ = [e.value for e in leaf.extensions]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    r = int.from_bytes(report[0x2A0:0x2E8], "little")
    s = int.from_bytes(report[0x2E8:0x330], "little")
    key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))


def bench_verify(rounds: int) -> None:
    report, vcek, ca = inputs()
    from sevlaunch.formats.snp import AttestationReport

    parsed = AttestationReport.from_bytes(report)
    exp = SnpExpectations(
        measurements=(parsed.measurement,), report_data=parsed.report_data, require_crl=False
    )
    ours(report, vcek, ca, exp)
    baseline(report, vcek, ca)
    n = 50

    def many_ours() -> None:
        for _ in range(n):
            ours(report, vcek, ca, exp)

    def many_baseline() -> None:
        for _ in range(n):
            baseline(report, vcek, ca)

    mine, base = interleaved(rounds * 4, many_ours, many_baseline)
    ratio = mine / base
    print(f"verify  sevlaunch check_report:   {mine / n * 1e6:8.0f} µs per report")
    print(f"verify  pyca operations directly: {base / n * 1e6:8.0f} µs per report")
    print(
        f"ratio ours/baseline {ratio:5.3f} (target <= {VERIFY_TARGET}) "
        f"{'OK' if ratio <= VERIFY_TARGET else 'MISSED'}"
    )


def make_digest_inputs(folder: Path) -> tuple[Path, Path, Path]:
    suffix = (SNP / "sev-snp-measure/fixtures/ovmf_AmdSev_suffix.bin").read_bytes()
    ovmf, kernel, initrd = folder / "OVMF.amdsev.fd", folder / "vmlinuz", folder / "initrd.img"
    ovmf.write_bytes(os.urandom(4 * MIB - len(suffix)) + suffix)
    write_random(kernel, 16 * MIB)
    write_random(initrd, 64 * MIB)
    return ovmf, kernel, initrd


def our_digest(ovmf: Path, kernel: Path, initrd: Path) -> bytes:
    with kernel.open("rb") as k, initrd.open("rb") as r:
        boot = measure_direct_boot(k, r, CMDLINE)
    return snp_launch_digest(
        ovmf.read_bytes(), vcpus=4, cpu=CpuSignature.from_int(EPYC_V4), hashes=boot.hashes()
    )


def bench_digest(rounds: int) -> None:
    if importlib.util.find_spec("sevsnpmeasure") is None:
        print("sev-snp-measure: not installed (.venv/bin/pip install sev-snp-measure to compare)")
        return
    from sevsnpmeasure.guest import snp_calc_launch_digest

    with tempfile.TemporaryDirectory(prefix="sevlaunch-bench-") as tmp:
        ovmf, kernel, initrd = make_digest_inputs(Path(tmp))

        def theirs() -> bytes:
            return snp_calc_launch_digest(  # type: ignore[no-any-return]
                4, EPYC_V4, str(ovmf), str(kernel), str(initrd), CMDLINE, 0x1, ""
            )

        assert theirs() == our_digest(ovmf, kernel, initrd), "sev-snp-measure disagrees"
        mine_s, theirs_s = interleaved(rounds, lambda: our_digest(ovmf, kernel, initrd), theirs)
        print(
            f"digest in-process  sevlaunch {mine_s * 1e3:7.1f} ms, sev-snp-measure "
            f"{theirs_s * 1e3:7.1f} ms   ratio theirs/ours {theirs_s / mine_s:5.2f}"
        )
        common = [
            "--ovmf",
            str(ovmf),
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-v4",
            "--kernel",
            str(kernel),
            "--initrd",
            str(initrd),
            "--append",
            CMDLINE,
            "--guest-features",
            "0x1",
        ]
        mine_cli = [str(BIN / "sevlaunch"), "owner", "snp", "digest", *common]
        other_cli = [
            str(BIN / "sev-snp-measure"),
            "--mode",
            "snp",
            *common,
            "--output-format",
            "hex",
        ]
        assert run_cli(mine_cli) == run_cli(other_cli), "the CLIs disagree"
        a, b = interleaved(max(rounds, 10), lambda: run_cli(mine_cli), lambda: run_cli(other_cli))
        print(
            f"digest whole CLI   sevlaunch {a * 1e3:7.1f} ms, sev-snp-measure "
            f"{b * 1e3:7.1f} ms   ratio theirs/ours {b / a:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bench_verify(args.rounds)
    bench_digest(args.rounds)


if __name__ == "__main__":
    main()
