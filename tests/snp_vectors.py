"""The real SNP reports of ../shared/vectors/snp with their certificates and what each one
needs to verify (the time pinned inside the VCEK's validity; provisional firmware where the
report's CURRENT_TCB is ahead of COMMITTED_TCB)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SnpVector:
    name: str
    report: str
    vcek: str
    ca: str
    at: datetime.datetime
    product: str
    provisional: bool = False
    hex_text: bool = False

    def report_bytes(self, vectors: Path) -> bytes:
        raw = (vectors / "snp" / self.report).read_bytes()
        return bytes.fromhex(raw.decode().strip()) if self.hex_text else raw

    def vcek_bytes(self, vectors: Path) -> bytes:
        return (vectors / "snp" / self.vcek).read_bytes()

    def ca_bytes(self, vectors: Path) -> bytes:
        return (vectors / "snp" / self.ca).read_bytes()


def _utc(year: int, month: int, day: int) -> datetime.datetime:
    return datetime.datetime(year, month, day, tzinfo=datetime.UTC)


MILAN_CA = "go-sev-guest/trust/ask_ark_milan.pem"
SIGNED = (
    SnpVector(
        "virtee-milan-v2",
        "virtee-sev/tests/report_milan.hex",
        "virtee-sev/tests/vcek_milan.der",
        "virtee-sev/tests/cert_chain_milan",
        _utc(2024, 1, 1),
        "Milan",
        hex_text=True,
    ),
    SnpVector(
        "go-milan-v2",
        "go-sev-guest/testdata/attestation.bin",
        "go-sev-guest/testdata/vcek.testcer",
        MILAN_CA,
        _utc(2024, 1, 1),
        "Milan",
    ),
    SnpVector(
        "trustee-milan-v2-idblock",
        "trustee/test_data/snp/test-report.bin",
        "trustee/test_data/snp/test-vcek.der",
        MILAN_CA,
        _utc(2024, 1, 1),
        "Milan",
        provisional=True,
    ),
    SnpVector(
        "routex-milan-v3",
        "routex-client-lua/derived/milan_v3_report.bin",
        "routex-client-lua/tests-data/vcek-chain-milan.pem",
        "routex-client-lua/tests-data/vcek-chain-milan.pem",
        _utc(2025, 8, 1),
        "Milan",
    ),
    SnpVector(
        "routex-genoa-v3",
        "routex-client-lua/derived/genoa_v3_report.bin",
        "routex-client-lua/tests-data/vcek-chain-genoa.pem",
        "routex-client-lua/tests-data/vcek-chain-genoa.pem",
        _utc(2025, 8, 1),
        "Genoa",
    ),
)
PARSE_ONLY = ("routex-client-lua/derived/genoa_v2_report_parse_only.bin",)
