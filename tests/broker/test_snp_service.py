"""SNP post-attestation in one broker with the clock in the test's hands (the emulated key
server still answers over HTTP): nonces expire and the sweeper erases them, a workload's
outstanding nonces and a client's rate are limited, a key server that does not answer decides
nothing, a nonce is spent once under concurrency, and one broker serves an SEV launch and an
SNP attestation side by side on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sevlaunch.broker.schema import snp_nonces
from sevlaunch.broker.service import SnpSettings
from sevlaunch.errors import LaunchRefusedError
from sevlaunch.formats.snp.certtable import VLEK_GUID, CertTable, CertTableEntry
from sevlaunch.owner.snp.decision import SnpReason
from sevlaunch.protocol.snp import SnpEvidence
from tests.broker.conftest import (
    DIGEST,
    LAUNCHER,
    OWNER,
    POLICY,
    SECRET,
    Instance,
    setup_owner,
    start,
)
from tests.broker.fakeplatform import FakePlatform
from tests.broker.snp_lab import Guest, SnpLab, snp_lab

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CSP = "CN=cloud.example"
NOW = time.time()  # the emulated key server dates its CRLs by the real clock


@pytest.fixture(scope="module")
def lab() -> Iterator[SnpLab]:
    with snp_lab() as made:
        yield made


@pytest.fixture
def snp_instance(
    make_instance: Callable[..., Instance], lab: SnpLab, tmp_path: Path
) -> Callable[..., Instance]:
    def make(url: str, **snp: Any) -> Instance:
        settings = SnpSettings(kds_url=snp.pop("kds_url", lab.kds.url), cache_dir=tmp_path, **snp)
        made = make_instance(url, snp=settings)
        made.clock.now = NOW
        r = made.client.post(
            "/v1/snp/trust-roots",
            headers=OWNER,
            json={"certificate": base64.b64encode(lab.cert_chain).decode(), "name": "lab"},
        )
        assert r.status_code == 201, r.text
        r = made.client.post(
            "/v1/snp/workloads",
            headers=OWNER,
            json={
                "name": "app",
                "digests": [lab.guest().measurement.hex()],
                "secrets": {"luks-key": base64.b64encode(SECRET).decode()},
            },
        )
        assert r.status_code == 201, r.text
        return made

    return make


def _challenge(made: Instance, workload: str = "app") -> bytes:
    r = made.client.post("/v1/snp/challenge", json={"workload": workload})
    assert r.status_code == 200, r.text
    return base64.b64decode(r.json()["nonce"])


def _attest(made: Instance, evidence: SnpEvidence) -> Any:
    return made.client.post("/v1/snp/attest", json=evidence.to_wire())


def _evidence(guest: Guest, nonce: bytes) -> SnpEvidence:
    return SnpEvidence("app", nonce, guest.report(nonce), guest.public)


def test_a_nonce_expires_and_the_sweeper_erases_it(
    snp_instance: Callable[..., Instance], sqlite_url: str, lab: SnpLab
) -> None:
    made = snp_instance(sqlite_url, nonce_ttl=60.0)
    guest = lab.guest()
    late = _challenge(made)
    evidence = _evidence(guest, late)
    made.clock.now += 61
    r = _attest(made, evidence)
    assert (r.status_code, r.json()["error"]) == (403, "expired")
    assert made.broker.sweep() == 1
    with made.broker.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(snp_nonces)).scalar() == 0
    r = _attest(made, evidence)
    assert (r.status_code, r.json()["error"]) == (403, "unknown-nonce")
    assert made.broker.sweep() == 0
    assert _attest(made, _evidence(guest, _challenge(made))).status_code == 200


def test_outstanding_nonces_and_a_clients_rate_are_limited(
    snp_instance: Callable[..., Instance], sqlite_url: str
) -> None:
    made = snp_instance(sqlite_url, max_open_nonces=2, peer_rate=60.0, peer_burst=4)
    _challenge(made)
    _challenge(made)
    for _ in range(2):
        r = made.client.post("/v1/snp/challenge", json={"workload": "app"})
        assert (r.status_code, r.json()["error"]) == (429, "too-many-nonces")
        assert int(r.headers["Retry-After"]) >= 1
    r = made.client.post("/v1/snp/challenge", json={"workload": "app"})
    assert (r.status_code, r.json()["error"]) == (429, "rate-limited")  # the 5th call
    assert r.headers["Retry-After"] == "1"
    made.clock.now += 1  # one call a second refills
    r = made.client.post("/v1/snp/challenge", json={"workload": "app"})
    assert r.json()["error"] == "too-many-nonces"


def test_an_unreachable_key_server_decides_nothing(
    snp_instance: Callable[..., Instance], sqlite_url: str, lab: SnpLab
) -> None:
    made = snp_instance(sqlite_url, kds_url="http://127.0.0.1:9")
    guest = lab.guest()
    nonce = _challenge(made)
    r = _attest(made, _evidence(guest, nonce))
    assert (r.status_code, r.json()["error"]) == (503, "kds-unavailable")
    assert "Retry-After" in r.headers
    with made.broker.engine.connect() as conn:
        assert conn.execute(sa.select(snp_nonces.c.used_at)).scalar_one() is None
    actions = [e.action for e in made.broker.audit()]
    assert "snp.attest" not in actions


def test_one_nonce_is_spent_once_under_concurrency(
    snp_instance: Callable[..., Instance], db_url: str, lab: SnpLab
) -> None:
    made = snp_instance(db_url)
    guest = lab.guest()
    evidence = _evidence(guest, _challenge(made))
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def present() -> None:
        barrier.wait()
        try:
            made.broker.snp_attest(evidence)
        except LaunchRefusedError as exc:
            outcomes.append(exc.reason)
        else:
            outcomes.append("released")

    threads = [threading.Thread(target=present) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["released", "replay", "replay", "replay"]
    entries = [e for e in made.broker.audit() if e.action == "snp.attest"]
    assert sorted(e.outcome for e in entries) == ["refused"] * 3 + ["released"]


def test_sev_and_snp_side_by_side_in_one_broker(
    snp_instance: Callable[..., Instance], db_url: str, lab: SnpLab, platform: FakePlatform
) -> None:
    made = snp_instance(db_url)
    setup_owner(made.client, platform)
    launch = start(made.client, platform)
    guest = lab.guest()
    released = _attest(made, _evidence(guest, _challenge(made)))
    assert released.status_code == 200, released.text
    keys = platform.launch_start(str(launch["dhCert"]), str(launch["session"]), POLICY)
    measurement = platform.launch_measure(keys, DIGEST, POLICY)
    r = made.client.post(
        f"/v1/launches/{launch['id']}/measurement",
        headers=LAUNCHER,
        json=platform.info(measurement, POLICY),
    )
    assert r.status_code == 200, r.text
    assert r.json()["sev-secret"]
    actions = [(e.action, e.outcome) for e in made.broker.audit()]
    assert ("snp.attest", "released") in actions
    assert ("launch.measure", "released") in actions


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"digests": ["ab" * 32]}, "48 bytes"),  # a SHA-256: SEV's, not SNP's
        ({"digests": []}, "needs expected launch digests"),
        ({"digests": ["ab" * 48], "hostData": "!!"}, "base64"),
    ],
)
def test_a_workload_that_could_never_be_checked_is_refused(
    snp_instance: Callable[..., Instance], sqlite_url: str, body: dict[str, Any], error: str
) -> None:
    made = snp_instance(sqlite_url)
    r = made.client.post("/v1/snp/workloads", headers=OWNER, json={"name": "bad", **body})
    assert r.status_code == 400, r.text
    assert error in r.json()["detail"]


def test_only_a_self_signed_non_amd_ark_is_pinned(
    snp_instance: Callable[..., Instance], sqlite_url: str, lab: SnpLab
) -> None:
    made = snp_instance(sqlite_url)
    ask_only = lab.cert_chain[: lab.cert_chain.index(b"-----BEGIN", 1)]
    r = made.client.post(
        "/v1/snp/trust-roots",
        headers=OWNER,
        json={"certificate": base64.b64encode(ask_only).decode()},
    )
    assert r.status_code == 400
    assert "self-signed ARK" in r.json()["detail"]
    r = made.client.post(
        "/v1/snp/trust-roots",
        headers=OWNER,
        json={"certificate": base64.b64encode(lab.cert_chain).decode(), "name": "again"},
    )
    assert (r.status_code, r.json()["error"]) == (409, "root-exists")


def test_a_vlek_signed_report_verifies_from_its_certificate_table(
    snp_instance: Callable[..., Instance], sqlite_url: str, lab: SnpLab
) -> None:
    """KDS never serves a VLEK: it comes in the host's certificate table, unauthenticated, and
    verifies to the pinned ARK through KDS's VLEK cert_chain; only a named cloud's is taken."""
    made = snp_instance(sqlite_url)
    fw = lab.firmware()
    tcb = fw.snp.info()["reported_tcb"]
    fw.snp.vlek_load(fw.snp.host("vlek_hashstick", csp_id=CSP, tcb=tcb))
    guest = lab.guest(fw)
    table = CertTable((CertTableEntry(VLEK_GUID, fw.snp.host("vlek_cert", csp_id=CSP, tcb=tcb)),))
    nonce = _challenge(made)
    wire = {**_evidence(guest, nonce).to_wire(), "cert-table": _b64(table.to_bytes())}
    r = made.client.post("/v1/snp/attest", json=wire)
    assert (r.status_code, r.json()["error"]) == (403, "untrusted-signer")  # no cloud named
    r = made.client.post(
        "/v1/snp/workloads",
        headers=OWNER,
        json={
            "name": "cloud",
            "digests": [guest.measurement.hex()],
            "vlekCspIds": [CSP],
            "secrets": {"luks-key": _b64(SECRET)},
        },
    )
    assert r.status_code == 201, r.text
    nonce = _challenge(made, "cloud")
    evidence = SnpEvidence("cloud", nonce, guest.report(nonce), guest.public, table.to_bytes())
    r = _attest(made, evidence)
    assert r.status_code == 200, r.text
    entry = [e for e in made.broker.audit() if e.action == "snp.attest"][-1]
    assert entry.detail is not None
    assert entry.detail["signer"] == "VLEK"


def test_a_workload_without_secrets_releases_nothing_and_says_so(
    snp_instance: Callable[..., Instance], sqlite_url: str, lab: SnpLab
) -> None:
    made = snp_instance(sqlite_url)
    guest = lab.guest()
    r = made.client.post(
        "/v1/snp/workloads",
        headers=OWNER,
        json={"name": "empty", "digests": [guest.measurement.hex()]},
    )
    assert r.status_code == 201, r.text
    nonce = _challenge(made, "empty")
    r = _attest(made, SnpEvidence("empty", nonce, guest.report(nonce), guest.public))
    assert (r.status_code, r.json()["error"]) == (403, "no-secrets")
    entry = [e for e in made.broker.audit() if e.action == "snp.attest"][-1]
    assert (entry.outcome, entry.reason) == ("refused", "no-secrets")


@given(data=st.data())
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_mutated_report_gets_a_secret(
    fuzz_instance: tuple[Instance, Guest], data: st.DataObject
) -> None:
    """Any one byte of a good report changed, anywhere in its 1184 bytes: refused with a
    reason code (never released, never a server error), and the refusal audited."""
    made, guest = fuzz_instance
    nonce = _challenge(made)
    report = bytearray(guest.report(nonce))
    at = data.draw(st.integers(0, len(report) - 1), label="offset")
    report[at] ^= data.draw(st.integers(1, 255), label="xor")
    r = _attest(made, SnpEvidence("app", nonce, bytes(report), guest.public))
    assert r.status_code == 403, r.text
    assert r.json()["error"] in {str(reason) for reason in SnpReason}


@pytest.fixture(scope="module")
def fuzz_instance(lab: SnpLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from sevlaunch.broker import db
    from sevlaunch.broker.service import Broker, Settings
    from tests.broker.conftest import KEK, LAUNCHER_TOKEN, OWNER_TOKEN, Clock

    directory = tmp_path_factory.mktemp("snpfuzz")
    engine = db.create_engine(f"sqlite:///{directory / 'b.db'}")
    db.upgrade(engine)
    clock = Clock()
    clock.now = NOW
    snp = SnpSettings(kds_url=lab.kds.url, cache_dir=directory, peer_burst=1000)
    broker = Broker(engine, KEK, Settings(snp=snp), clock=clock)
    from fastapi.testclient import TestClient

    from sevlaunch.broker.api import create_app

    made = Instance(broker, TestClient(create_app(broker, OWNER_TOKEN, LAUNCHER_TOKEN)), clock)
    guest = lab.guest()
    made.client.post(
        "/v1/snp/trust-roots", headers=OWNER, json={"certificate": _b64(lab.cert_chain)}
    )
    r = made.client.post(
        "/v1/snp/workloads",
        headers=OWNER,
        json={
            "name": "app",
            "digests": [guest.measurement.hex()],
            "requireCrl": False,
            "secrets": {"luks-key": _b64(SECRET)},
        },
    )
    assert r.status_code == 201, r.text
    nonce = _challenge(made)
    assert _attest(made, _evidence(guest, nonce)).status_code == 200  # unmutated: released
    yield made, guest
    engine.dispose()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
