"""``sevlaunch owner snp``: digest (sev-snp-measure's known answers, its options), id-block
(known digests), report show, verify (exit codes, every failure listed, JSON), fetch (from a
local stand-in KDS into the cache) and validate (diagnosis of a mismatch)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sevlaunch.cli import cli
from sevlaunch.formats.snp import AttestationReport, Generation, TcbLayout
from sevlaunch.kds.snp import vcek_path
from tests.kds.fake import FakeKds, running_kds
from tests.snp_vectors import SIGNED

CMDLINE = "console=ttyS0 loglevel=7"
KAT_0x21 = "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"
KAT_0x1 = "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["owner", "snp", *args])
    return result.exit_code, result.output


def snp(vectors: Path, rel: str) -> str:
    return str(vectors / "snp" / rel)


def digest_args(vectors: Path, features: str = "0x21") -> list[str]:
    ovmf = snp(vectors, "sev-snp-measure/fixtures/ovmf_AmdSev_suffix.bin")
    return [
        "--ovmf",
        ovmf,
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--guest-features",
        features,
        "--kernel",
        "/dev/null",
        "--initrd",
        "/dev/null",
        "--append",
        CMDLINE,
    ]


def test_digest_known_answers(vectors: Path) -> None:
    assert run("digest", *digest_args(vectors)) == (0, KAT_0x21 + "\n")
    code, out = run("digest", *digest_args(vectors, "0x1"), "--output-format", "base64")
    assert code == 0
    assert base64.b64decode(out).hex() == KAT_0x1
    code, out = run("digest", *digest_args(vectors), "--json")
    assert json.loads(out)["measurement"] == KAT_0x21
    sig = digest_args(vectors)
    sig[sig.index("--vcpu-type") : sig.index("--vcpu-type") + 2] = ["--vcpu-sig", "0x800f12"]
    assert run("digest", *sig)[1].strip() == KAT_0x21


def test_digest_usage_errors(vectors: Path) -> None:
    ovmf = snp(vectors, "sev-snp-measure/fixtures/ovmf_OvmfX64_suffix.bin")
    code, out = run(
        "digest", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--kernel", "/dev/null"
    )
    assert code == 1
    assert "SNP_KERNEL_HASHES" in out
    code, out = run("digest", "--ovmf", ovmf, "--vcpus", "1")
    assert code == 2
    assert "vCPU type" in out
    code, out = run(
        "digest", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "EPYC", "--append", "x"
    )
    assert code == 2
    assert "need --kernel" in out


def test_id_block(vectors: Path) -> None:
    facts = json.loads(Path(snp(vectors, "sev-snp-measure/expected_id_block.json")).read_text())
    code, out = run(
        "id-block",
        "--measurement",
        facts["launch_digest_b64"],
        "--idkey",
        snp(vectors, "sev-snp-measure/keyfile/id_key_test.pem"),
        "--authorkey",
        snp(vectors, "sev-snp-measure/keyfile/author_key_test.pem"),
        "--json",
    )
    assert code == 0, out
    got = json.loads(out)
    assert got["id_block"] == facts["id_block_b64"]
    assert bytes.fromhex(got["id_key_digest"]) == base64.b64decode(facts["id_key_digest_b64"])
    assert bytes.fromhex(got["author_key_digest"]) == base64.b64decode(
        facts["author_key_digest_b64"]
    )
    code, out = run(
        "id-block",
        "--measurement",
        "00",
        "--idkey",
        snp(vectors, "sev-snp-measure/keyfile/id_key_test.pem"),
    )
    assert code == 2


def test_report_show(vectors: Path) -> None:
    code, out = run("report", "show", snp(vectors, "virtee-sev/tests/report_milan.hex"))
    assert code == 0
    assert "7a1e5c26" in out
    assert "bootloader=3 tee=0 snp=8 ucode=0x73" in out
    code, out = run(
        "report", "show", snp(vectors, "routex-client-lua/derived/genoa_v3_report.bin"), "--json"
    )
    assert json.loads(out)["generation"] == "Genoa"
    code, out = run("report", "show", snp(vectors, "virtee-sev/tests/vcek_milan.der"))
    assert code == 2
    assert "1184 bytes" in out


def verify_args(vectors: Path, index: int = 2) -> list[str]:
    v = SIGNED[index]
    return [
        snp(vectors, v.report),
        "--vcek",
        snp(vectors, v.vcek),
        "--ca",
        snp(vectors, v.ca),
        "--at",
        v.at.isoformat(),
    ]


def test_verify_passes_with_expectations(vectors: Path, tmp_path: Path) -> None:
    report = AttestationReport.from_bytes(SIGNED[2].report_bytes(vectors))
    args = [
        *verify_args(vectors),
        "--no-crl",
        "--allow-provisional",
        "--expected-digest",
        report.measurement.hex(),
        "--report-data",
        report.report_data.hex(),
    ]
    code, out = run("verify", *args)
    assert code == 0, out
    assert "OK: every check passed" in out
    code, out = run("verify", *args, "--json")
    assert json.loads(out)["ok"] is True
    stored = tmp_path / "exp.json"
    stored.write_text(
        json.dumps(
            {
                "require_crl": False,
                "allow_provisional_firmware": True,
                "measurements": [report.measurement.hex()],
                "report_data": report.report_data.hex(),
            }
        )
    )
    assert run("verify", *verify_args(vectors), "--expectations", str(stored))[0] == 0


def test_verify_lists_every_failure(vectors: Path) -> None:
    code, out = run("verify", *verify_args(vectors), "--vmpl", "1", "--expected-digest", "00" * 48)
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last == "FAILED: crl, tcb_order, vmpl, measurement, report_data"
    bad = verify_args(vectors)
    bad[2] = snp(vectors, "trustee/test_data/snp/test-vcek-invalid-new.der")
    code, out = run("verify", *bad, "--json")
    assert code == 1
    failed = {c["check"] for c in json.loads(out)["checks"] if c["outcome"] == "fail"}
    assert {"chain", "chip_id"} <= failed
    assert run("verify", *verify_args(vectors), "--crl", "x", "--no-crl")[0] == 2


@pytest.fixture
def kds_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKds]:
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("SEVLAUNCH_CACHE_DIR", str(tmp_path / "cache"))
    with running_kds() as fake:
        monkeypatch.setenv("SEVLAUNCH_KDS_URL", fake.url)
        yield fake


def test_fetch_then_verify_from_cache(vectors: Path, kds_env: FakeKds, tmp_path: Path) -> None:
    v = SIGNED[0]
    report = AttestationReport.from_bytes(v.report_bytes(vectors))
    tcb = report.tcb("reported_tcb", TcbLayout.MILAN)
    kds_env.serve("/vcek/v1/Milan/cert_chain", v.ca_bytes(vectors))
    kds_env.serve(vcek_path(Generation.MILAN, report.chip_id, tcb), v.vcek_bytes(vectors))
    raw = tmp_path / "report.bin"
    raw.write_bytes(report.to_bytes())
    code, out = run("fetch", "vcek", str(raw), "--product", "milan", "--json")
    assert code == 0, out
    assert Path(json.loads(out)["path"]).exists()
    code, out = run("fetch", "ca", "--product", "Milan")
    assert code == 0, out
    assert out.strip().endswith("cert_chain.pem")
    code, out = run(
        "verify",
        str(raw),
        "--product",
        "Milan",
        "--no-crl",
        "--any-measurement",
        "--any-report-data",
    )
    assert code == 0, out  # the VCEK and chain came from the cache; no network
    code, out = run("fetch", "crl", "--product", "Milan")
    assert code == 1
    assert "HTTP 404" in out


def test_validate(vectors: Path) -> None:
    args = digest_args(vectors, "0x1")
    code, out = run("validate", *args, "--measurement", KAT_0x1)
    assert code == 0, out
    code, out = run("validate", *args, "--measurement", KAT_0x21)
    assert code == 1
    assert "guest features were 0x21, not 0x1 (DebugSwap on" in out
    code, out = run("validate", *args, "--measurement", KAT_0x21, "--json")
    assert json.loads(out)["diagnosis"]["explanations"][0][0]["mistake"] == "guest-features"
    code, out = run("validate", *args)
    assert code == 2


def test_validate_from_report_no_explanation(vectors: Path) -> None:
    args = digest_args(vectors)
    code, out = run("validate", *args, "--report", snp(vectors, SIGNED[1].report))
    assert code == 1
    assert "None of the usual mistakes explains" in out
