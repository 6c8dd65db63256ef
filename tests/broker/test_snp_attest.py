"""SNP post-attestation against a real ``sevlaunch broker serve`` process that fetches VCEKs,
cert_chains and CRLs from the emulated key server: reports made by the emulated SNP firmware,
presented as the VMM's guest model presents them. The guest opens what a good report gets;
a replayed nonce, another guest's report, other report data, a wrong digest or policy, an old
TCB and a revoked VCEK get nothing, and each decision is audited with every check's verdict."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sevlaunch.broker.client import BrokerClient
from sevlaunch.errors import LaunchRefusedError
from sevlaunch.formats.secret import LUKS_KEY_GUID
from sevlaunch.owner.snp.verdicts import CHECKS
from sevlaunch.protocol.snp import GuestAttestationConfig, SnpEvidence
from sevlaunch.vmm.attest_agent import BrokerAgent
from tests.broker.conftest import DIGEST, LAUNCHER_TOKEN, OWNER_TOKEN, POLICY, SECRET
from tests.broker.fakeplatform import FakePlatform
from tests.broker.servers import broker_process, write_files
from tests.broker.snp_lab import Guest, SnpLab, snp_lab

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def lab() -> Iterator[SnpLab]:
    with snp_lab() as made:
        yield made


@pytest.fixture(scope="module")
def broker(lab: SnpLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One broker process for the module; each test registers its own workload."""
    directory = tmp_path_factory.mktemp("snpbroker")
    files = write_files(directory)
    sock = Path(f"/tmp/sevsnp-{uuid.uuid4().hex[:8]}.sock")
    extra = ["--kds-url", lab.kds.url, "--kds-cache-dir", str(directory / "kds")]
    extra += ["--snp-crl-ttl", "0"]  # every attestation fetches the CRL: revocations show at once
    try:
        with broker_process(f"sqlite:///{directory / 'b.db'}", files, sock, "snp-a", *extra):
            address = f"unix:{sock}"
            with BrokerClient(address, OWNER_TOKEN) as owner:
                owner.add_snp_root(lab.cert_chain, "lab")
            yield address
    finally:
        sock.unlink(missing_ok=True)


def workload(broker: str, lab: SnpLab, **body: Any) -> str:
    """A fresh SNP workload expecting the lab guests' measurement, with one LUKS key."""
    name = f"w-{uuid.uuid4().hex[:10]}"
    digest = lab.guest().measurement.hex()
    with BrokerClient(broker, OWNER_TOKEN) as owner:
        owner.add_snp_workload({"name": name, "digests": [digest], **body}, {"luks-key": SECRET})
    return name


def attest(broker: str, evidence: SnpEvidence) -> Any:
    config = GuestAttestationConfig(broker, evidence.workload)
    return asyncio.run(BrokerAgent(timeout=30).attest(config, evidence))


def challenge(broker: str, name: str) -> bytes:
    config = GuestAttestationConfig(broker, name)
    return asyncio.run(BrokerAgent(timeout=30).challenge(config)).nonce


def evidence_of(guest: Guest, name: str, nonce: bytes) -> SnpEvidence:
    return SnpEvidence(name, nonce, guest.report(nonce), guest.public)


def refused(broker: str, evidence: SnpEvidence) -> str:
    with pytest.raises(LaunchRefusedError) as info:
        attest(broker, evidence)
    return info.value.reason


def audit(broker: str, name: str) -> list[dict[str, Any]]:
    with BrokerClient(broker, OWNER_TOKEN) as owner:
        return [e.to_wire() for e in owner.audit(workload=name) if e.action == "snp.attest"]


def test_the_guest_model_opens_the_released_secret(broker: str, lab: SnpLab) -> None:
    name = workload(broker, lab, policies=[0x30000])
    guest = lab.guest()
    console: list[str] = []
    model = guest.os(console)
    vmpck = guest.launch.secrets().vmpck0
    table = asyncio.run(model._attest(vmpck, GuestAttestationConfig(broker, name)))
    assert [(e.guid, e.data) for e in table.entries] == [(LUKS_KEY_GUID, SECRET)]
    (entry,) = audit(broker, name)
    assert (entry["outcome"], entry["reason"]) == ("released", None)
    checks = entry["detail"]["checks"]
    assert [c["name"] for c in checks] == list(CHECKS)
    assert {c["verdict"] for c in checks} <= {"pass", "skip"}
    assert next(c for c in checks if c["name"] == "crl")["verdict"] == "pass"
    assert entry["detail"]["measurement"] == guest.measurement.hex()
    assert any(entry["detail"]["attestation"] in line for line in console)


def test_a_spent_nonce_is_refused_as_a_replay(broker: str, lab: SnpLab) -> None:
    name = workload(broker, lab)
    guest = lab.guest()
    evidence = evidence_of(guest, name, challenge(broker, name))
    attest(broker, evidence)
    assert refused(broker, evidence) == "replay"
    outcomes = [(e["outcome"], e["reason"]) for e in audit(broker, name)]
    assert outcomes == [("released", None), ("refused", "replay")]


def test_another_guests_report_gets_nothing(broker: str, lab: SnpLab) -> None:
    """The attacker holds a good report of guest A (bound to A's nonce and key) and presents
    it with its own fresh nonce, or with A's nonce and its own key: either way the report data
    binds something else."""
    name = workload(broker, lab)
    victim, thief = lab.guest(), lab.guest()
    theirs = challenge(broker, name)
    stolen = victim.report(theirs)
    mine = challenge(broker, name)
    assert refused(broker, SnpEvidence(name, mine, stolen, victim.public)) == "report-data-mismatch"
    assert (
        refused(broker, SnpEvidence(name, theirs, stolen, thief.public)) == "report-data-mismatch"
    )
    # the victim's own nonce was spent by the failed attempt: it must ask again
    assert refused(broker, SnpEvidence(name, theirs, stolen, victim.public)) == "replay"
    entries = audit(broker, name)
    failed = entries[0]["detail"]["failed"]
    assert failed == ["report_data"]


def test_other_report_data_gets_nothing(broker: str, lab: SnpLab) -> None:
    name = workload(broker, lab)
    guest = lab.guest()
    nonce = challenge(broker, name)
    report = guest.launch.report_bytes(bytes(64))  # what a guest gets asking without binding
    assert refused(broker, SnpEvidence(name, nonce, report, guest.public)) == "report-data-mismatch"


def test_a_wrong_digest_is_refused(broker: str, lab: SnpLab) -> None:
    name = f"w-{uuid.uuid4().hex[:10]}"
    with BrokerClient(broker, OWNER_TOKEN) as owner:
        owner.add_snp_workload({"name": name, "digests": ["ab" * 48]}, {"luks-key": SECRET})
    guest = lab.guest()
    reason = refused(broker, evidence_of(guest, name, challenge(broker, name)))
    assert reason == "measurement-mismatch"
    (entry,) = audit(broker, name)
    assert entry["detail"]["failed"] == ["measurement"]
    assert guest.measurement.hex() in entry["detail"]["message"]


def test_a_policy_not_allowed_is_refused(broker: str, lab: SnpLab) -> None:
    name = workload(broker, lab, policies=[0x30000 | 1 << 20])  # single socket required
    guest = lab.guest()
    reason = refused(broker, evidence_of(guest, name, challenge(broker, name)))
    assert reason == "policy-mismatch"


def test_an_old_tcb_is_refused(broker: str, lab: SnpLab) -> None:
    now = lab.current_tcb()
    name = workload(broker, lab, minTcb={"snp": now.snp, "microcode": now.microcode})
    old = lab.guest(lab.firmware(lab.older_tcb(1)))  # its VCEK is the older TCB's, valid
    reason = refused(broker, evidence_of(old, name, challenge(broker, name)))
    assert reason == "tcb-too-old"
    (entry,) = audit(broker, name)
    verdicts = {c["name"]: c["verdict"] for c in entry["detail"]["checks"]}
    assert (verdicts["signature"], verdicts["chain"], verdicts["tcb_minimum"]) == (
        "pass",
        "pass",
        "fail",
    )


def test_a_revoked_vcek_is_refused(broker: str, lab: SnpLab) -> None:
    tcb = lab.older_tcb(2)
    name = workload(broker, lab)
    guest = lab.guest(lab.firmware(tcb))
    attest(broker, evidence_of(guest, name, challenge(broker, name)))  # good until revoked
    lab.kds.snp.revoke(tcb.to_int())
    reason = refused(broker, evidence_of(guest, name, challenge(broker, name)))
    assert reason == "revoked"
    entry = audit(broker, name)[-1]
    crl = next(c for c in entry["detail"]["checks"] if c["name"] == "crl")
    assert crl["verdict"] == "fail"
    assert "revoked: SEV-VCEK" in crl["detail"]


def test_nonces_are_bound_to_their_workload_and_to_this_broker(broker: str, lab: SnpLab) -> None:
    one, other = workload(broker, lab), workload(broker, lab)
    guest = lab.guest()
    nonce = challenge(broker, one)
    assert refused(broker, evidence_of(guest, other, nonce)) == "wrong-workload"
    assert refused(broker, evidence_of(guest, one, b"\x01" * 32)) == "unknown-nonce"
    attest(broker, evidence_of(guest, one, nonce))  # the wrong-workload attempt spent nothing


def test_a_guest_needs_no_token_but_the_owner_routes_do(broker: str, lab: SnpLab) -> None:
    name = workload(broker, lab)
    transport = httpx.HTTPTransport(uds=broker.removeprefix("unix:"))
    with httpx.Client(transport=transport, base_url="http://broker") as plain:
        r = plain.post("/v1/snp/challenge", json={"workload": name})
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["nonce"])
        assert plain.get("/v1/snp/workloads").status_code == 401
        body = {"name": "x", "digests": ["00" * 48]}
        assert plain.post("/v1/snp/workloads", json=body).status_code == 401
        r = plain.post("/v1/snp/challenge", json={"workload": "no-such"})
        assert (r.status_code, r.json()["error"]) == (404, "no-such-workload")
        big = {"workload": name, "nonce": "", "report": "A" * (2 << 20), "tee-pubkey": ""}
        r = plain.post("/v1/snp/attest", json=big)
        assert (r.status_code, r.json()["error"]) == (413, "payload-too-large")
        r = plain.post("/v1/snp/attest", json={**big, "report": "A" * 4096})
        assert r.status_code in (400, 422)  # refused by the field's cap, not parsed


def test_two_instances_serve_sev_and_snp_and_a_nonce_crosses_them(
    lab: SnpLab, tmp_path: Path, db_url: str, platform: FakePlatform
) -> None:
    """Two broker processes on one database (SQLite, PostgreSQL): a nonce issued by one is
    spent on the other, and its replay on the first is refused; an SEV launch started on one
    finishes on the other beside it."""
    files = write_files(tmp_path)
    a_sock = Path(f"/tmp/sevsnp-{uuid.uuid4().hex[:8]}.sock")
    b_sock = Path(f"/tmp/sevsnp-{uuid.uuid4().hex[:8]}.sock")
    kds = ["--kds-url", lab.kds.url, "--kds-cache-dir", str(tmp_path / "kds")]
    a, b = f"unix:{a_sock}", f"unix:{b_sock}"
    try:
        with (
            broker_process(db_url, files, a_sock, "snp-a", *kds),
            broker_process(db_url, files, b_sock, "snp-b", *kds),
        ):
            with BrokerClient(a, OWNER_TOKEN) as owner:
                owner.add_snp_root(lab.cert_chain, "lab")
                owner.add_root(platform.ca_file, "sev-lab")
                owner.add_workload("web", [POLICY], [DIGEST], secrets={"luks-key": SECRET})
            name = workload(a, lab)
            guest = lab.guest()
            evidence = evidence_of(guest, name, challenge(a, name))
            with BrokerClient(a, LAUNCHER_TOKEN) as launcher:
                launch = launcher.start_launch("web", platform.node)
            released = attest(b, evidence)
            assert refused(a, evidence) == "replay"
            keys = platform.launch_start(launch.dh_cert_b64, launch.session_b64, POLICY)
            measurement = platform.launch_measure(keys, DIGEST, POLICY)
            with BrokerClient(b, LAUNCHER_TOKEN) as launcher:
                launcher.finish_launch(launch.launch_id, platform.launch_info(measurement, POLICY))
            with BrokerClient(a, OWNER_TOKEN) as owner:
                rows = owner.audit(workload=name)
                sev = owner.audit(launch=launch.launch_id)
        decisions = [(r.instance, r.action, r.outcome) for r in rows[1:]]
        assert decisions == [
            ("snp-a", "snp.challenge", "ok"),
            ("snp-b", "snp.attest", "released"),
            ("snp-a", "snp.attest", "refused"),
        ]
        assert (rows[2].detail or {})["attestation"] == released.attestation
        assert [(r.instance, r.outcome) for r in sev] == [
            ("snp-a", "ok"),
            ("snp-b", "released"),
        ]
    finally:
        a_sock.unlink(missing_ok=True)
        b_sock.unlink(missing_ok=True)
