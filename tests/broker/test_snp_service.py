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

from sevlaunch.broker.schema import snp_nonces
from sevlaunch.broker.service import SnpSettings
from sevlaunch.errors import LaunchRefusedError
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
    snp_instance: Callable[..., Instance], sqlite_url: str, lab: SnpLab
) -> None:
    made = snp_instance(sqlite_url)
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
